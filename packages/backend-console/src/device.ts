/**
 * The virtio-console device (back-end) as a VirtioDeviceOps table (spec §7.2, §7.3).
 *
 * Defaults are Jailhouse-compatible: SIZE offered only when cols/rows are known, two queues,
 * `max_nr_ports` and `emerg_wr` 0, a config event on DRIVER_OK. The queue size follows the shared
 * memory (`queueSize: 'auto'`, queue-size.ts): 8 on the reference 64 KiB, as Jailhouse offers,
 * more where a Linux guest has room for it. MULTIPORT (named ports) and EMERG_WRITE are opt-in
 * vshm extensions. The device owns its ports (their host sides and buffered input), which outlive
 * driver sessions.
 *
 * Events: 'activate' (features: bigint), 'deactivate' (reason: SessionEndReason).
 */
import { EventEmitter } from 'node:events';
import { createLogger, ArgumentError } from '@vshm/transport';
import {
  ConsoleFeature,
  consoleQueueCount,
  CONSOLE_CONFIG_COLS,
  CONSOLE_CONFIG_EMERG_WR,
  CONSOLE_CONFIG_MAX_NR_PORTS,
  CONSOLE_CONFIG_ROWS,
  CONSOLE_CONFIG_SIZE,
  featureBit,
  hasFeature,
  VirtioDeviceId,
  type ConsoleResizeOrder,
} from 'virtio-spec-types';
import { ConsolePort } from './port.js';
import type { ConfigField, ConfigSpace, DeviceMemory, DeviceSession, SessionEndReason, VirtioDeviceOps } from '@vshm/transport';
import { AUTO_QUEUE_MIN, AUTO_QUEUE_MIN_MULTIPORT, autoQueueSize, linuxReceiveQueues } from './queue-size.js';
import { ConsoleSession, type ConsoleSize } from './session.js';

export type { ConsoleSize } from './session.js';

const debug = createLogger('vshm:console-be');

export interface ConsoleDeviceOptions {
  /** Known terminal size; SIZE is offered iff given (§7.3). Default none. */
  size?: ConsoleSize | null;
  /** Names of ports 1…n. Non-empty enables MULTIPORT; port 0 stays the console port. */
  ports?: readonly string[];
  /** Offer MULTIPORT even without named ports. Default: ports.length > 0. */
  multiport?: boolean;
  /** `max_nr_ports` with MULTIPORT, ≥ 1 + ports.length, ≤ 64. Default 1 + ports.length. */
  maxNrPorts?: number;
  /** Offer EMERG_WRITE. Default false. */
  emergWrite?: boolean;
  /**
   * Maximum size offered for every queue: a power of two 1…32768, or `'auto'` (the default): the
   * largest power of two up to 256 whose page-sized receive buffers — on every receive queue a
   * Linux guest keeps full — take at most about a quarter of the R/W section (queue-size.ts):
   * at least 8 without MULTIPORT (8 at the reference -l 64K), down to 1 with it.
   */
  queueSize?: number | 'auto';
  /** Without MULTIPORT, deliver input this long after DRIVER_OK at the latest. Default 200 ms. */
  settleMs?: number;
  /** Per-port input buffered before the source is paused. Default 65536 bytes. */
  bufferLimit?: number;
  /**
   * Discard the driver's output on a port whose host side has pushed back for this many ms
   * (0…3600000), until it drains again ('output-dropping' / 'output-resumed' on the port). Default
   * null: never — the device stops taking transmit buffers and nothing is lost. A Linux guest's
   * hvc console busy-waits with interrupts off while its output is not taken (docs/guest.md), so
   * for a guest whose host side may stop reading, a bound keeps it alive (QEMU drops console
   * output at once).
   */
  dropBlockedOutputMs?: number | null;
  /**
   * The order of `cols` and `rows` in MULTIPORT RESIZE messages. Default `'cols-rows'`, VIRTIO
   * 1.2's. `'rows-cols'` for a Linux guest whose virtio_console predates the 2025 fix (upstream
   * 5326ab737a47, later backported to the stable series): it reads rows first and would see the
   * size swapped. A device cannot tell the two kernels apart (docs/guest.md).
   */
  resizeOrder?: ConsoleResizeOrder;
}

/**
 * Largest port name: a PORT_NAME message (8-byte header and the name) stays within 128 bytes,
 * well inside the control receive buffers a driver posts (256 bytes in vshm-console-frontend).
 */
export const MAX_PORT_NAME_BYTES = 120;

/**
 * Characters a port name may not hold: C0 controls (NUL, TAB, CR, LF, ESC …), DEL, C1 controls
 * (U+0080–U+009F, which UTF-8 terminals may act on), the Unicode bidi controls (they show a name
 * reordered) and U+FFFD (what Node makes of bytes in argv that are not UTF-8, so the name sent
 * would not be the one given). Linux's virtio_console takes any bytes as a name and shows them
 * in sysfs and, through udev, as /dev/virtio-ports/NAME; a front-end prints them. The same set
 * the front-end escapes (vshm-console-frontend's printable()) plus U+FFFD.
 */
// eslint-disable-next-line no-control-regex
const PORT_NAME_REFUSED = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufffd]/;

/**
 * A UTF-16 surrogate without its pair (an API caller's string; argv never holds one): it has no
 * UTF-8, Buffer.from() sends U+FFFD for it, so the name sent would not be the one given — and two
 * different names could reach the driver as the same one. (With /u, a pair is one code point and
 * does not match.)
 */
const LONE_SURROGATE = /[\ud800-\udfff]/u;

/**
 * Why `name` cannot be a port name, or undefined when it can: non-empty, at most
 * MAX_PORT_NAME_BYTES bytes of UTF-8, printable (none of PORT_NAME_REFUSED) and well-formed
 * UTF-16 (no LONE_SURROGATE).
 */
export function portNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'empty port name';
  if (Buffer.byteLength(name) > MAX_PORT_NAME_BYTES) return `port name longer than ${MAX_PORT_NAME_BYTES} bytes`;
  const bad = PORT_NAME_REFUSED.exec(name);
  if (bad !== null) {
    const c = bad[0].charCodeAt(0);
    const what = c === 0xfffd ? 'U+FFFD (bytes that are not UTF-8?)' : c < 0x100 ? `control character \\x${c.toString(16).padStart(2, '0')}` : `bidi control U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
    return `port name contains ${what} at character ${bad.index + 1} (names are printable text)`;
  }
  const lone = LONE_SURROGATE.exec(name);
  if (lone !== null) {
    const c = lone[0].charCodeAt(0);
    return `port name contains a lone surrogate U+${c.toString(16).toUpperCase()} at character ${lone.index + 1} (it has no UTF-8: U+FFFD would be sent)`;
  }
  return undefined;
}
const MAX_PORTS = 64;

function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new ArgumentError(`${name} must be an integer ${min}…${max}, got ${String(v)}`);
  }
  return v;
}

function checkQueueSize(v: unknown): number | 'auto' {
  if (v === 'auto') return v;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 32768 || (v & (v - 1)) !== 0) {
    throw new ArgumentError(`queueSize must be 'auto' or a power of two 1…32768, got ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`);
  }
  return v;
}

function checkSize(size: ConsoleSize): ConsoleSize {
  checkInt('size.cols', size.cols, 1, 0xffff);
  checkInt('size.rows', size.rows, 1, 0xffff);
  return { cols: size.cols, rows: size.rows };
}

function checkNames(names: readonly string[]): string[] {
  const seen = new Set<string>();
  for (const n of names) {
    if (typeof n !== 'string' || n.length === 0) throw new ArgumentError('port names must be non-empty strings');
    const problem = portNameProblem(n);
    if (problem !== undefined) throw new ArgumentError(`${JSON.stringify(n)}: ${problem}`);
    if (seen.has(n)) throw new ArgumentError(`duplicate port name ${JSON.stringify(n)}`);
    seen.add(n);
  }
  return [...names];
}

export class ConsoleDevice extends EventEmitter implements VirtioDeviceOps {
  readonly deviceId = VirtioDeviceId.CONSOLE;
  readonly features: bigint;
  readonly configSize = CONSOLE_CONFIG_SIZE;
  readonly configFields: readonly ConfigField[];
  /** Port 0 (console) then the named ports. */
  readonly ports: readonly ConsolePort[];
  readonly multiport: boolean;
  readonly maxNrPorts: number;
  readonly emergWrite: boolean;
  /** As configured: a fixed size or `'auto'` (resolved per region by `queueMaxSize`). */
  readonly queueSize: number | 'auto';
  readonly settleMs: number;
  readonly resizeOrder: ConsoleResizeOrder;

  private size: ConsoleSize | null;
  private session: ConsoleSession | null = null;

  constructor(options: ConsoleDeviceOptions = {}) {
    super();
    if (options === null || typeof options !== 'object') throw new ArgumentError('options must be an object');
    const names = checkNames(options.ports ?? []);
    this.size = options.size == null ? null : checkSize(options.size);
    this.multiport = options.multiport ?? names.length > 0;
    if (!this.multiport && names.length > 0) throw new ArgumentError('named ports need MULTIPORT');
    this.maxNrPorts = this.multiport ? checkInt('maxNrPorts', options.maxNrPorts ?? 1 + names.length, 1 + names.length, MAX_PORTS) : 0;
    this.emergWrite = options.emergWrite ?? false;
    this.queueSize = checkQueueSize(options.queueSize ?? 'auto');
    this.settleMs = checkInt('settleMs', options.settleMs ?? 200, 0, 60_000);
    const bufferLimit = checkInt('bufferLimit', options.bufferLimit ?? 65536, 1, 1 << 30);
    const order = options.resizeOrder ?? 'cols-rows';
    if (order !== 'cols-rows' && order !== 'rows-cols') throw new ArgumentError(`resizeOrder must be 'cols-rows' or 'rows-cols', got ${String(order)}`);
    this.resizeOrder = order;
    const dropMs = options.dropBlockedOutputMs == null ? null : checkInt('dropBlockedOutputMs', options.dropBlockedOutputMs, 0, 3_600_000);

    let f = 0n;
    if (this.size !== null) f |= featureBit(ConsoleFeature.SIZE);
    if (this.multiport) f |= featureBit(ConsoleFeature.MULTIPORT);
    if (this.emergWrite) f |= featureBit(ConsoleFeature.EMERG_WRITE);
    this.features = f;
    this.configFields = [
      { name: 'cols', offset: CONSOLE_CONFIG_COLS, width: 2 },
      { name: 'rows', offset: CONSOLE_CONFIG_ROWS, width: 2 },
      { name: 'max_nr_ports', offset: CONSOLE_CONFIG_MAX_NR_PORTS, width: 4 },
      { name: 'emerg_wr', offset: CONSOLE_CONFIG_EMERG_WR, width: 4, driverWritable: this.emergWrite },
    ];
    this.ports = [null, ...names].map((n, i) => new ConsolePort(i, n, bufferLimit, dropMs));
  }

  /** Port `id` (0 = console). Throws for an unknown id. */
  port(id: number): ConsolePort {
    const p = this.ports[id];
    if (p === undefined) throw new ArgumentError(`no port ${String(id)} (have ${this.ports.length})`);
    return p;
  }

  /** Current terminal size, or null when unknown. */
  currentSize(): ConsoleSize | null {
    return this.size;
  }

  /** Whether a driver session is live (DRIVER_OK seen, not yet deactivated). */
  get active(): boolean {
    return this.session !== null;
  }

  /** The live session (tests, diagnostics), or null. */
  get currentSession(): ConsoleSession | null {
    return this.session;
  }

  /**
   * The host terminal changed size (§7.3). Remembered for the next header initialisation and
   * propagated to a live session (config update, or RESIZE with MULTIPORT).
   */
  resize(cols: number, rows: number): void {
    const size = checkSize({ cols, rows });
    if (this.size !== null && this.size.cols === size.cols && this.size.rows === size.rows) return;
    this.size = size;
    debug('resize %dx%d', size.cols, size.rows);
    this.session?.resize(size);
  }

  // ---- VirtioDeviceOps --------------------------------------------------------------------

  queueCount(features: bigint): number {
    return consoleQueueCount(hasFeature(features, ConsoleFeature.MULTIPORT), this.maxNrPorts);
  }

  /**
   * The size offered on a region with `memory`. Without `memory` (a direct call, not the
   * transport's), `'auto'` answers AUTO_QUEUE_MIN, what the console offered before its size
   * followed the memory.
   */
  queueMaxSize(index: number, memory?: DeviceMemory): number {
    if (this.queueSize !== 'auto') return this.queueSize;
    if (memory === undefined) return AUTO_QUEUE_MIN;
    const n = autoQueueSize(memory, linuxReceiveQueues(this.multiport, this.maxNrPorts), this.multiport ? AUTO_QUEUE_MIN_MULTIPORT : AUTO_QUEUE_MIN);
    if (index === 0) debug('queue size %d (auto: R/W section of %d bytes)', n, memory.rwSize);
    return n;
  }

  initConfig(config: ConfigSpace): void {
    // SIZE not offered → cols/rows stay 0 (§7.3).
    if (this.size !== null && hasFeature(this.features, ConsoleFeature.SIZE)) {
      config.write(CONSOLE_CONFIG_COLS, 2, this.size.cols);
      config.write(CONSOLE_CONFIG_ROWS, 2, this.size.rows);
    }
    config.write(CONSOLE_CONFIG_MAX_NR_PORTS, 4, this.maxNrPorts);
    config.write(CONSOLE_CONFIG_EMERG_WR, 4, 0);
  }

  configWritten(field: ConfigField, value: number): void {
    // §7.3 EMERG_WRITE: the low byte goes out on port 0, in any status.
    if (field.offset === CONSOLE_CONFIG_EMERG_WR && this.emergWrite) {
      this.ports[0].write(Uint8Array.of(value & 0xff));
    }
  }

  activate(session: DeviceSession): void {
    this.session?.close();
    const s = new ConsoleSession(this, session);
    this.session = s;
    debug('activate: features 0x%s, multiport %s', session.features.toString(16), s.multiport);
    s.start();
    this.emit('activate', session.features);
  }

  deactivate(reason: SessionEndReason): void {
    if (this.session === null) return;
    this.session.close();
    this.session = null;
    debug('deactivate: %s', reason);
    this.emit('deactivate', reason);
  }
}
