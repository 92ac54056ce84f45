/**
 * `vshm-console-backend`: the virtio-console device on this terminal (spec §7). See USAGE.
 *
 * Exit: 0 after Ctrl-] q or SIGINT/SIGTERM/SIGHUP (terminal restored, State := RESET then
 * disconnect, embedded server stopped); 1 on runtime failures; 2 on bad arguments. Every
 * failure is one stderr line. The back-end survives its front-end going away: the transport
 * re-initialises and the device keeps undelivered input for the next front-end.
 *
 * A terminal on stdout or stderr is written asynchronously (`asyncTerminalOutput`): one that
 * stalls pushes back like a pipe (so `--drop-blocked-output` applies to it) instead of holding the
 * whole process — its input, the quit key, the other ports, the link. Every exit waits for the
 * queued output, for as long as it moves (`exitAfterOutput`: 2 s without progress ends it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsoleFeature } from 'virtio-spec-types';
import { createLogger, IvshmemServer, DEFAULT_SOCKET_PATH } from '@vshm/transport';
import type { SessionEndReason } from '@vshm/transport';
import { asyncTerminalOutput, describeIoError, deviceCapabilities, exitAfterOutput, exitOnUncaughtException, parseOrUsage, printable, printDiagnostic } from '@vshm/transport/cli';
import { attachCommand, attachSocket, unixSocketListening, type Attached } from './attach.js';
import { LONG_OPTIONS, parseCliArgs, PROG, USAGE, type BackendCliOptions } from './cli-args.js';
import { ConsoleDevice } from './device.js';
import { EscapeScanner } from './escape.js';
import { connectBackend, type BackendLink } from './link.js';
import { linuxVectorWarning } from './linux-vectors.js';
import { TerminalGuard } from './terminal.js';

const debug = createLogger('vshm:console-be');

/** One stderr line (the kit's printDiagnostic: it may quote a path or a port name, escaped). */
function say(line: string): void {
  printDiagnostic(PROG, line);
}

/** Why the front-end left, in words (SessionEndReason → the link-state line). */
const LEFT: Record<SessionEndReason, string> = {
  'driver-gone': 'its State left READY',
  'driver-reset': 'device reset by the driver',
  'needs-reset': 'device needs reset',
  shutdown: 'back-end shutting down',
};

/** Reconnect backoff after a server loss: 50 ms doubling to 2 s (issue 9 item 6). */
const RECONNECT_BACKOFF_MIN_MS = 50;
const RECONNECT_BACKOFF_MAX_MS = 2000;
/**
 * A role refusal while reconnecting: the restarted server gave us peer 1 because the front-end
 * connected first; it lets peer 0 go within a moment (it retries slower than this), so retry fast.
 */
const ROLE_RETRY_MS = 20;
/** LinkError codes of a connect attempt that a restarted server may answer differently. */
const RECONNECTABLE = new Set(['VSHM_ERR_NO_SERVER', 'VSHM_ERR_SOCKET', 'VSHM_ERR_ROLE', 'VSHM_ERR_SERVER_EOF', 'VSHM_ERR_CONNECT', 'VSHM_ERR_CONNECT_TIMEOUT']);

/**
 * Terminal input held for port 0 beyond its input buffer, at most. The terminal is read all the
 * time, so that Ctrl-] q quits even while no front-end takes input (pausing the terminal would
 * hide the quit key behind a paste); past this backlog typed bytes are dropped, with a line.
 */
export const TERMINAL_BACKLOG_LIMIT = 1 << 20;

/** The reference configuration of §7.1: -l 64K -n 2 -V 3 -P 0x8003. */
export const EMBEDDED_SERVER = { memorySize: 64 * 1024, maxPeers: 2, vectors: 3, protocol: 0x8003 } as const;

class Runtime {
  readonly opts: BackendCliOptions;
  readonly guard = new TerminalGuard(process.stdin);
  server: IvshmemServer | null = null;
  serverDir: string | null = null;
  link: BackendLink | null = null;
  socketPath = '';
  device: ConsoleDevice | null = null;
  readonly attached: Attached[] = [];
  private exiting = false;
  /** Terminal input waiting in front of port 0's buffer (bytes). */
  private terminalHeld: () => number = () => 0;
  /** Terminal input dropped because too much was waiting (bytes). */
  private terminalDropped = 0;

  constructor(opts: BackendCliOptions) {
    this.opts = opts;
  }

  info(line: string): void {
    if (!this.opts.quiet) say(line);
  }

  /** Tear everything down in order, then exit with `code` (after printing `message`, if any). */
  async shutdown(code: number, message?: string): Promise<never> {
    if (this.exiting) return new Promise<never>(() => {});
    this.exiting = true;
    debug('shutdown (%d)', code);
    // The terminal first: whatever the teardown below does, the user's terminal is never left raw.
    this.guard.restore();
    for (const p of this.device?.ports ?? []) p.detach();
    try {
      await this.link?.close(); // State := RESET, then disconnect (§4.10)
    } catch (err) {
      debug('close: %s', (err as Error).message);
    }
    await Promise.allSettled(this.attached.map((a) => a.close()));
    // Input read from the host that no front-end took dies with this process: say how much,
    // -q or not (a loss is no link-state chatter).
    for (const p of this.device?.ports ?? []) {
      const n = p.buffer.length + (p.id === 0 ? this.terminalHeld() : 0);
      if (n > 0) say(`${n} bytes of ${p.id === 0 ? 'console' : `port ${String(p.name)}`} input were never delivered (no front-end took them)`);
    }
    if (this.server !== null) await this.server.stop().catch(() => {});
    if (this.serverDir !== null) rmSync(this.serverDir, { recursive: true, force: true });
    if (this.terminalDropped > 0) say(`${this.terminalDropped} bytes of terminal input were dropped (the front-end was not taking them)`);
    if (message !== undefined) say(message);
    return exitAfterOutput(code);
  }

  /**
   * Port 0's input on a terminal: stdin without the quit sequence. stdin is never paused, so the
   * quit key is seen whatever the port's back-pressure; what the port does not take yet waits
   * here, up to TERMINAL_BACKLOG_LIMIT, and beyond that is dropped (one line when it starts, the
   * count at exit).
   */
  private terminalInput(): PassThrough {
    const scanner = new EscapeScanner();
    const keys = new PassThrough();
    const held = (): number => keys.writableLength + keys.readableLength;
    this.terminalHeld = held;
    let dropping = false;
    process.stdin.on('data', (chunk: Buffer) => {
      const { data, quit } = scanner.scan(chunk);
      if (data.length > 0 && !this.exiting) {
        if (held() < TERMINAL_BACKLOG_LIMIT) {
          dropping = false;
          keys.write(data);
        } else {
          this.terminalDropped += data.length;
          if (!dropping) {
            dropping = true;
            process.stderr.write(`${PROG}: terminal input dropped: the front-end is not taking it (${TERMINAL_BACKLOG_LIMIT >> 10} KiB waiting); Ctrl-] q still quits\r\n`);
          }
        }
      }
      if (quit) void this.shutdown(0);
    });
    return keys;
  }

  /** Wire the events of one link (one server lifetime). */
  private bindLink(link: BackendLink): void {
    const device = this.device as ConsoleDevice;
    const vectorWarning = linuxVectorWarning(device.multiport, device.maxNrPorts, link.vectors);
    // A warning, not a link-state line: printed whatever -q says.
    if (vectorWarning !== null) say(`warning: ${vectorWarning}`);
    link.once('server-gone', () => {
      // Our own embedded server cannot be restarted by anyone else: its loss is the end.
      if (!this.opts.reconnect || this.server !== null) void this.shutdown(1, `server at ${this.socketPath} went away`);
      else void this.followRestart(link);
    });
    link.on('error', (err: Error) => void this.shutdown(1, err.message));
    // A device bug is worth its stack, -q or not (the transport resets the device and goes on).
    link.on('device-exception', (err: Error, callback: string) => {
      process.stderr.write(`${PROG}: device ${callback}() threw: ${err.stack ?? err.message}\n`);
    });
  }

  /**
   * The server went away (issue 9 item 6): the transport already ended the session (the device
   * keeps its ports and their buffered input); drop the old memory, then connect again with
   * backoff. A new VirtioBackend on the new memory re-initialises the device for the next
   * front-end, with the same ConsoleDevice, so input waits for that session.
   */
  private async followRestart(old: BackendLink): Promise<void> {
    const limitMs = this.opts.serverTimeoutMs;
    const deadline = Date.now() + limitMs;
    this.info('server lost, reconnecting');
    this.link = null;
    await old.close().catch((err: Error) => debug('closing the old link: %s', err.message));
    let backoff = RECONNECT_BACKOFF_MIN_MS;
    let last = '';
    for (;;) {
      if (this.exiting) return;
      let wait = backoff;
      try {
        const link = await connectBackend(this.socketPath, this.device as ConsoleDevice, true); // status file for vshm-inspect
        if (this.exiting) {
          await link.close();
          return;
        }
        this.link = link;
        this.bindLink(link);
        this.info('server back');
        return;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code !== 'string' || !RECONNECTABLE.has(code)) {
          await this.shutdown(1, (err as Error).message);
          return;
        }
        // The errno of a failed connect, without the start-up hint ("start a server: …").
        const cause = (err as { cause?: { code?: unknown } }).cause;
        const errno = typeof cause?.code === 'string' && !cause.code.startsWith('VSHM_');
        last = errno ? describeIoError('connect to', this.socketPath, cause) : (err as Error).message;
        debug('reconnect: %s', last);
        // The server is back but a front-end holds peer 0 for a moment: retry soon.
        if (code === 'VSHM_ERR_ROLE') wait = ROLE_RETRY_MS;
        else backoff = Math.min(backoff * 2, RECONNECT_BACKOFF_MAX_MS);
      }
      if (Date.now() + wait > deadline) {
        await this.shutdown(1, `server at ${this.socketPath} gone for more than ${limitMs / 1000} s; giving up (last attempt: ${last})`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** -S, the default socket if a server listens there, else an embedded server. */
  async resolveSocket(): Promise<string> {
    if (this.opts.socketPath !== undefined) return this.opts.socketPath;
    if (!this.opts.embedded && unixSocketListening(DEFAULT_SOCKET_PATH)) return DEFAULT_SOCKET_PATH;
    // Errors name the path and the errno (a TMPDIR that is missing, or too long for a socket).
    try {
      this.serverDir = mkdtempSync(join(tmpdir(), 'vshm-console-'));
    } catch (err) {
      throw new Error(describeIoError("create the embedded server's directory in", tmpdir(), err), { cause: err });
    }
    const socketPath = join(this.serverDir, 'ivshmem.sock');
    this.server = new IvshmemServer({ socketPath, ...EMBEDDED_SERVER });
    this.server.on('warning', (err: Error) => debug('server warning: %s', err.message));
    try {
      await this.server.start();
    } catch (err) {
      throw new Error(describeIoError('start the embedded server on', socketPath, err), { cause: err });
    }
    return socketPath;
  }

  async run(): Promise<void> {
    const o = this.opts;
    const out = process.stdout;
    // §7.3: the size of the BE's output terminal, else configuration; neither → no SIZE.
    const size = out.isTTY ? { cols: out.columns, rows: out.rows } : (o.size ?? null);
    const device = new ConsoleDevice({
      size: size !== null && size.cols > 0 && size.rows > 0 ? size : null,
      ports: o.ports,
      emergWrite: o.emergWrite,
      queueSize: o.queueSize,
      settleMs: o.settleMs,
      dropBlockedOutputMs: o.dropBlockedOutputMs,
      resizeOrder: o.resizeOrder,
    });
    this.device = device;
    // Discarded output is a loss the operator must hear of, whatever -q says.
    for (const port of device.ports) {
      const which = port.name === null ? `port ${port.id}` : `port ${printable(port.name)}`;
      port.on('output-dropping', () => process.stderr.write(`${PROG}: ${which}: the host side has pushed back for ${o.dropBlockedOutputMs} ms; discarding the front-end's output until it has taken what waits\n`));
      port.on('output-resumed', (dropped: number, drained: boolean) => process.stderr.write(`${PROG}: ${which}: the host side ${drained ? 'has caught up' : 'went away'}; ${dropped} bytes of output were discarded\n`));
    }
    // Link-state lines (one CLI voice; -q silences them).
    device.on('activate', (features: bigint) => this.info(`front-end connected (features 0x${features.toString(16)})`));
    device.on('deactivate', (reason: SessionEndReason) => {
      if (reason !== 'shutdown') this.info(`front-end left (${LEFT[reason] ?? reason})`);
    });

    const socketPath = await this.resolveSocket();
    this.socketPath = socketPath;
    this.link = await connectBackend(socketPath, device, true); // status file for vshm-inspect
    this.bindLink(this.link);
    // Only now, with peer 0 ours: a front-end started on this line (as it says) must not take
    // peer 0 first, which would end this back-end with "start the back-end first". Not info():
    // even with -q this line is the only way to learn the private socket's path.
    if (this.server !== null) {
      say(`embedded server listening on ${socketPath}; connect with: vshm-console-frontend -S ${socketPath}`);
    }

    for (const [name, a] of o.attachments) {
      const port = device.port(o.ports.indexOf(name) + 1);
      try {
        this.attached.push(a.kind === 'socket' ? await attachSocket(port, a.path) : attachCommand(port, a.command, (how) => this.info(`port ${name}: command exited (${how}); the port stays closed on the host side`)));
      } catch (err) {
        throw new Error(a.kind === 'socket' ? describeIoError('listen on', a.path, err) : (err as Error).message, { cause: err });
      }
    }

    // Port 0 = this terminal. Raw mode: bytes (^C included) go to the front-end as they are.
    if (this.guard.isTTY) {
      const keys = this.terminalInput();
      this.guard.enterRaw();
      device.port(0).attach(keys, out);
    } else {
      device.port(0).attach(process.stdin, out);
    }
    // The port detaches itself from a stdout that fails (a reader that went away: EPIPE), and the
    // front-end's console output has nowhere to go from then on: say so once, whatever -q says.
    out.once('error', (err: Error) => say(`${describeIoError('write to', 'stdout', err)}; console output is dropped from now on`));
    if (out.isTTY) {
      out.on('resize', () => {
        if (out.columns > 0 && out.rows > 0) device.resize(out.columns, out.rows);
      });
    }
    this.info(`serving the console on ${socketPath} as peer ${this.link.id}${this.guard.isTTY ? '; quit with Ctrl-] q' : ''}`);
  }
}

/** --print-capabilities: what this command line would offer (§7; vhost-user convention). */
export function capabilities(o: BackendCliOptions): ReturnType<typeof deviceCapabilities> {
  // Every bit the daemon can offer: SIZE (from the terminal or --size) and MULTIPORT are listed
  // as offered whenever this command line can offer them.
  const device = new ConsoleDevice({
    size: { cols: 80, rows: 24 },
    ports: o.ports,
    emergWrite: o.emergWrite,
    queueSize: o.queueSize,
    settleMs: o.settleMs,
    dropBlockedOutputMs: o.dropBlockedOutputMs,
    resizeOrder: o.resizeOrder,
  });
  return deviceCapabilities('console', device, ConsoleFeature, LONG_OPTIONS);
}

export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  const synchronous = asyncTerminalOutput(PROG, { log: debug });
  const opts = parseOrUsage(PROG, USAGE, () => parseCliArgs(argv), process, capabilities);
  if (typeof opts === 'number') return exitAfterOutput(opts);
  // The option rests on the terminal pushing back, which a synchronous one never does.
  if (synchronous.stdout !== null && opts.dropBlockedOutputMs !== null) {
    say(`warning: --drop-blocked-output cannot apply to this terminal: ${synchronous.stdout}; a terminal that stalls blocks the whole back-end`);
  }
  const rt = new Runtime(opts);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => void rt.shutdown(0));
  // SIGWINCH reaches Node as stdout 'resize' (handled in run()); ignore it otherwise.
  process.on('SIGPIPE', () => {});
  // The terminal first, then the stack (bounded wait for it), exit 1; a recurrence is not reprinted.
  exitOnUncaughtException(PROG, () => rt.guard.restore());
  try {
    await rt.run();
  } catch (err) {
    await rt.shutdown(1, (err as Error).message);
  }
}
