/**
 * One driver session of the console device: from DRIVER_OK (`activate`) to `deactivate`
 * (spec §7.3). Moves bytes between the ports' host sides and the queues, runs the MULTIPORT
 * control protocol, and decides when input may be delivered.
 *
 * Input gating (§7.3, Linux guest behaviour): a Linux FE discards receive data completed before
 * it registered its console port. So, without MULTIPORT, port 0 takes input only after the
 * driver showed life (its first transmit buffer) or `settleMs` after DRIVER_OK; with MULTIPORT a
 * port takes input only while the driver has it open (PORT_OPEN(id, 1)).
 */
import { createLogger } from '@vshm/transport';
import type { DeviceChain, DeviceQueueHandle, DeviceSession } from '@vshm/transport';
import {
  ConsoleControlEvent,
  ConsoleFeature,
  consoleReceiveQueue,
  consoleTransmitQueue,
  CONSOLE_CONFIG_COLS,
  CONSOLE_CONFIG_ROWS,
  CONSOLE_CONTROL_RECEIVEQ,
  CONSOLE_CONTROL_TRANSMITQ,
  encodeConsoleControl,
  encodeConsolePortName,
  encodeConsoleResize,
  hasFeature,
  type ConsoleControlMessage,
  type ConsoleResizeOrder,
} from 'virtio-spec-types';
import { ControlChannel } from './control.js';
import type { ConsolePort } from './port.js';

const debug = createLogger('vshm:console-be');

export interface ConsoleSize {
  readonly cols: number;
  readonly rows: number;
}

/** What a session needs from its device. */
export interface SessionContext {
  readonly ports: readonly ConsolePort[];
  readonly maxNrPorts: number;
  readonly settleMs: number;
  /** The order of the two values in RESIZE messages. */
  readonly resizeOrder: ConsoleResizeOrder;
  /** Current terminal size, or null when unknown. */
  currentSize(): ConsoleSize | null;
}

/** Runtime state of one port inside a session. */
interface PortLink {
  readonly port: ConsolePort;
  readonly rxq: DeviceQueueHandle | undefined;
  readonly txq: DeviceQueueHandle | undefined;
  /** Input may be delivered (driver showed life / opened the port). */
  ready: boolean;
  /** MULTIPORT: the driver sent PORT_READY(id, 1). */
  announced: boolean;
  readonly listeners: Array<[string, () => void]>;
}

export class ConsoleSession {
  readonly multiport: boolean;
  readonly sizeNegotiated: boolean;
  private readonly ctx: SessionContext;
  private readonly session: DeviceSession;
  private readonly links: PortLink[] = [];
  private control: ControlChannel | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private closed = false;

  /** @internal Sessions are made by the `ConsoleDevice`, never by users. */
  constructor(ctx: SessionContext, session: DeviceSession) {
    this.ctx = ctx;
    this.session = session;
    this.multiport = hasFeature(session.features, ConsoleFeature.MULTIPORT);
    this.sizeNegotiated = hasFeature(session.features, ConsoleFeature.SIZE);
    const served = this.multiport ? ctx.ports : ctx.ports.slice(0, 1);
    for (const port of served) {
      const link: PortLink = {
        port,
        rxq: session.queues[consoleReceiveQueue(port.id)],
        txq: session.queues[consoleTransmitQueue(port.id)],
        ready: false,
        announced: false,
        listeners: [],
      };
      this.links.push(link);
    }
  }

  /** DRIVER_OK: wire queues and ports, raise the config event, process what is already posted. */
  start(): void {
    for (const link of this.links) {
      if (link.rxq !== undefined) link.rxq.onAvailable = () => this.deliver(link);
      if (link.txq !== undefined) link.txq.onAvailable = () => this.transmit(link);
      this.listen(link, 'input', () => this.deliver(link));
      this.listen(link, 'writable', () => this.transmit(link));
      this.listen(link, 'host-open', () => this.hostChanged(link, true));
      this.listen(link, 'host-close', () => this.hostChanged(link, false));
    }
    // §7.3: a config event on DRIVER_OK (Jailhouse does it; Linux then reads cols/rows). The
    // header was initialised when the BE became READY; a resize since then is written now (with
    // MULTIPORT too: SIZE negotiated means cols/rows are valid, VIRTIO 1.2 §5.3.3).
    const size = this.ctx.currentSize();
    if (this.sizeNegotiated && size !== null) this.writeSize(size);
    else this.session.notifyConfig();
    if (this.multiport) {
      this.control = new ControlChannel(
        this.session.queues[CONSOLE_CONTROL_RECEIVEQ],
        this.session.queues[CONSOLE_CONTROL_TRANSMITQ],
        (msg) => this.handleControl(msg),
      );
      this.control.start();
    } else if (this.ctx.settleMs === 0) {
      this.markReady(this.links[0]);
    } else {
      this.settleTimer = setTimeout(() => {
        this.settleTimer = null;
        debug('port 0: settle time over, input enabled');
        this.markReady(this.links[0]);
      }, this.ctx.settleMs);
      this.settleTimer.unref();
    }
    for (const link of this.links) this.transmit(link);
  }

  /** Stop touching queues and chains now; buffered input stays in the ports. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.settleTimer !== null) clearTimeout(this.settleTimer);
    this.settleTimer = null;
    this.control?.close();
    for (const link of this.links) {
      if (link.rxq !== undefined) link.rxq.onAvailable = null;
      if (link.txq !== undefined) link.txq.onAvailable = null;
      for (const [ev, fn] of link.listeners) link.port.off(ev, fn);
      link.listeners.length = 0;
    }
  }

  /** Whether port `id` currently takes input (for tests and logs). */
  isReady(id: number): boolean {
    return this.links.find((l) => l.port.id === id)?.ready ?? false;
  }

  /**
   * The terminal size changed (§7.3): a config update when SIZE was negotiated, and RESIZE with
   * MULTIPORT. Both with both: cols/rows stay valid for a driver that reads them (VIRTIO 1.2
   * §5.3.6), while Linux reads them only without MULTIPORT and follows RESIZE with it.
   */
  resize(size: ConsoleSize): void {
    if (this.closed) return;
    if (this.sizeNegotiated) this.writeSize(size);
    if (this.multiport && this.links[0]?.announced) this.control?.send(encodeConsoleResize(0, size.cols, size.rows, this.ctx.resizeOrder));
  }

  /** cols/rows by the generation rule, then a config event (§4.8). */
  private writeSize(size: ConsoleSize): void {
    this.session.updateConfig((c) => {
      c.write(CONSOLE_CONFIG_COLS, 2, size.cols);
      c.write(CONSOLE_CONFIG_ROWS, 2, size.rows);
    });
  }

  private listen(link: PortLink, ev: string, fn: () => void): void {
    link.port.on(ev, fn);
    link.listeners.push([ev, fn]);
  }

  private markReady(link: PortLink | undefined): void {
    if (link === undefined || link.ready || this.closed) return;
    link.ready = true;
    this.deliver(link);
  }

  /** receiveq: fill the writable part of the next chain; used only with ≥ 1 byte written. */
  private deliver(link: PortLink): void {
    const q = link.rxq;
    const buf = link.port.buffer;
    if (this.closed || !link.ready || q === undefined) return;
    let pushed = false;
    while (buf.length > 0) {
      const chain = q.pop();
      if (chain === null) break;
      const n = chain.writableLength === 0 ? 0 : chain.write(buf.peek(chain.writableLength));
      // A receive chain without writable space can never take a byte: return it empty rather
      // than hold it forever (a driver bug, not something to stall on).
      buf.consume(n);
      q.push(chain, n);
      pushed = true;
    }
    if (pushed) q.flush();
    link.port.drained();
  }

  /**
   * transmitq: every readable byte goes out in order; used len 0.
   *
   * One copy per chain, straight from the shared segments (DeviceChain.readableSegments) into
   * private memory that is then handed to the port's Writable. The copy stays on purpose: the
   * shared buffer is the driver's again once we push the chain — and the driver may change it at
   * any time (§6.2). Where the output lets the port reuse its buffers (a socket, pipe, TTY or
   * file, port.ts), the chains of one wake-up are gathered into reused 64 KiB buffers, one
   * write per full buffer; otherwise each chain gets fresh Buffers of at most FRESH_PIECE bytes
   * that the Writable may keep.
   */
  private transmit(link: PortLink): void {
    const q = link.txq;
    if (this.closed || q === undefined) return;
    const port = link.port;
    let pushed = false;
    // Acknowledge (publish the used entries) BEFORE the bytes leave for the host side: a back-end
    // killed in between loses what it acknowledged but never sends anything twice, while the
    // other order would let the front-end re-send bytes already written out (docs/protocol.md
    // §4.10, delivery; the chaos test proves it). One batch = what the port takes before it
    // reports back-pressure; its bytes are gathered into reused output buffers where the output
    // allows it (one write per full buffer), else one fresh copy per chain.
    const reuse = port.reusesOutputBuffers;
    for (let more = true; more && !port.outputBlocked; ) {
      more = false;
      const room = port.outputRoom;
      const bufs: Buffer[] = [];
      const lens: number[] = []; // bytes of bufs[i] to write; -1: the whole fresh copy
      let out: Buffer | null = null;
      let filled = 0;
      let taken = 0;
      let batch = false;
      for (;;) {
        const chain = q.pop();
        if (chain === null) break;
        const len = chain.readableLength;
        batch = true;
        if (len > 0 && reuse) {
          if (out !== null && filled + len > out.length) {
            bufs.push(out);
            lens.push(filled);
            out = null;
          }
          if (out === null) {
            out = port.outputBuffer(len);
            filled = 0;
          }
          filled = copySegments(chain, out, filled);
        } else if (len > 0) {
          freshCopies(chain, bufs, lens);
        }
        q.push(chain, 0);
        taken += len;
        // The writes come after the batch: stop where the host output would push back, and go
        // on with another batch if it did not (a synchronous pipe drains at once).
        if (taken >= room) {
          more = true;
          break;
        }
      }
      if (out !== null) {
        bufs.push(out);
        lens.push(filled);
      }
      if (!batch) break;
      pushed = true;
      q.flush();
      for (let i = 0; i < bufs.length; i++) {
        if (lens[i] < 0) port.write(bufs[i]);
        else port.writeOutput(bufs[i], lens[i]);
      }
    }
    if (pushed) {
      // §7.3: the first transmit buffer is the driver's sign of life on a non-MULTIPORT port.
      if (!this.multiport && !link.ready) {
        debug('port %d: driver showed life, input enabled', link.port.id);
        if (this.settleTimer !== null) clearTimeout(this.settleTimer);
        this.settleTimer = null;
        this.markReady(link);
      }
    }
  }

  private hostChanged(link: PortLink, open: boolean): void {
    if (this.multiport && link.announced) {
      this.control?.send(encodeConsoleControl(link.port.id, ConsoleControlEvent.PORT_OPEN, open ? 1 : 0));
    }
    if (open) this.deliver(link);
  }

  private handleControl(msg: ConsoleControlMessage): void {
    if (this.closed || this.control === null) return;
    const E = ConsoleControlEvent;
    if (msg.event === E.DEVICE_READY) {
      // Linux sends DEVICE_READY with id VIRTIO_CONSOLE_BAD_ID: the id is not checked here.
      if (msg.value !== 1) {
        debug('driver reported device failure (DEVICE_READY value %d)', msg.value);
        return;
      }
      for (const link of this.links) this.control.send(encodeConsoleControl(link.port.id, E.DEVICE_ADD, 1));
      return;
    }
    if (msg.id >= this.ctx.maxNrPorts) return; // §7.3: ignored
    const link = this.links.find((l) => l.port.id === msg.id);
    if (link === undefined) return; // a port we never added
    switch (msg.event) {
      case E.PORT_READY:
        if (msg.value !== 1) {
          debug('driver failed to add port %d', msg.id);
          return;
        }
        this.portReady(link);
        return;
      case E.PORT_OPEN:
        link.ready = msg.value === 1;
        debug('port %d: driver side %s', msg.id, link.ready ? 'open' : 'closed');
        if (link.ready) this.deliver(link);
        return;
      default:
        return; // unknown or device → driver events from the driver: ignored (§7.3)
    }
  }

  private portReady(link: PortLink): void {
    const control = this.control as ControlChannel;
    const id = link.port.id;
    link.announced = true;
    if (id === 0) {
      control.send(encodeConsoleControl(0, ConsoleControlEvent.CONSOLE_PORT, 1));
      // The driver ignores config cols/rows under MULTIPORT: give it the size by message.
      const size = this.ctx.currentSize();
      if (size !== null) control.send(encodeConsoleResize(0, size.cols, size.rows, this.ctx.resizeOrder));
    }
    if (link.port.name !== null) control.send(encodeConsolePortName(id, link.port.name));
    if (link.port.hostOpen) control.send(encodeConsoleControl(id, ConsoleControlEvent.PORT_OPEN, 1));
  }
}

/**
 * Largest fresh Buffer a transmit chain is copied into for an output that may keep its chunks
 * (perf). Fresh memory each time, so its cost is how often its pages fault in: glibc hands the
 * heap back to the kernel when blocks of ≥ 64 KiB are freed (its trim check runs on such frees),
 * and V8 frees a whole collection's worth at once, so 64 KiB copies faulted 10–270 K times per
 * 2 GiB of `console_stream` (~16 µs a fault on this VM); 16 KiB pieces 12–20 K. A 64 KiB chain is
 * four writes instead of one, which costs far less (docs/decisions.md, branch `cons`). Gathering
 * into larger buffers instead (1 MiB) was worse still: every one faulted all its pages.
 */
export const FRESH_PIECE = 16384;

/**
 * The chain's readable bytes in new Buffers of at most FRESH_PIECE bytes each, appended to `bufs`
 * (with -1 in `lens`: write the whole Buffer). Every byte of each is overwritten, so unzeroed
 * memory is safe (allocUnsafe + set: one copy, no zeroing first).
 */
function freshCopies(chain: DeviceChain, bufs: Buffer[], lens: number[]): void {
  const segs = chain.readableSegments();
  if (segs.length === 1 && segs[0].length <= FRESH_PIECE) {
    const one = Buffer.allocUnsafe(segs[0].length);
    one.set(segs[0]);
    bufs.push(one);
    lens.push(-1);
    return;
  }
  let left = chain.readableLength;
  let piece = Buffer.allocUnsafe(Math.min(FRESH_PIECE, left));
  let filled = 0;
  for (const seg of segs) {
    for (let at = 0; at < seg.length; ) {
      const n = Math.min(piece.length - filled, seg.length - at);
      piece.set(n === seg.length ? seg : seg.subarray(at, at + n), filled);
      filled += n;
      at += n;
      left -= n;
      if (filled === piece.length) {
        bufs.push(piece);
        lens.push(-1);
        if (left > 0) piece = Buffer.allocUnsafe(Math.min(FRESH_PIECE, left));
        filled = 0;
      }
    }
  }
}

/** Copy the chain's readable bytes into `dst` at `at` (room checked by the caller); the new end. */
function copySegments(chain: DeviceChain, dst: Buffer, at: number): number {
  for (const seg of chain.readableSegments()) {
    dst.set(seg, at);
    at += seg.length;
  }
  return at;
}
