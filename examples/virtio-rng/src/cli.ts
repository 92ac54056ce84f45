/**
 * Command lines of the example: `vshm-rng-backend` and `vshm-rng-frontend`, in the one vshm CLI
 * voice (the shared kit of @vshm/transport): `-S, --server PATH`, `-h, --help`, `-q, --quiet`;
 * a bad flag prints `NAME: what is wrong (try --help)` and exits 2; runtime failures print one
 * line naming the path and the errno and exit 1. The back-end, a daemon, writes a terminal
 * asynchronously (the kit's `asyncTerminalOutput`): one that stalls holds its lines, not the
 * device; its exits wait for them for as long as they move (`exitAfterOutput`: 2 s without
 * progress ends the wait).
 */
import { createLogger, DEFAULT_SOCKET_PATH } from '@vshm/transport';
import type { SessionEndReason, DeviceSession } from '@vshm/transport';
import { asyncTerminalOutput, deviceCapabilities, describeIoError, exitAfterOutput, exitOnUncaughtException, onTerminationSignal, parseCommandLine, parseOrUsage, printDiagnostic, UsageError } from '@vshm/transport/cli';
import { openRngBackend, openRngFrontend } from './index.js';
import { RngDevice } from './device.js';

const debug = createLogger('vshm:rng');

const COMMON = {
  server: { type: 'string', short: 'S' },
  socket: { type: 'string' }, // deprecated spelling of --server (the example's first CLI had it)
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const BACKEND_USAGE = `Usage: vshm-rng-backend [options]
  Serve a virtio-rng device (id 4) on a vshm-server started with -P 0x8004.
  -S, --server PATH       vshm-server socket (default ${DEFAULT_SOCKET_PATH})
  -q, --quiet             no link-state lines (front-end connected / left) on stderr
  --print-capabilities    print the device's capabilities as one JSON object and exit
  -h, --help              this help
Exit status: 0 after SIGINT/SIGTERM/SIGHUP, 1 on runtime failures, 2 on bad arguments.`;

export const FRONTEND_USAGE = `Usage: vshm-rng-frontend [options]
  Read random bytes from a vshm virtio-rng back-end; one hex line per read on stdout.
  -S, --server PATH       vshm-server socket (default ${DEFAULT_SOCKET_PATH})
  -n, --bytes N           bytes per read, 1-1048576 (default 32)
  -c, --count N           reads, 1-1048576 (default 1)
  -q, --quiet             no informational lines on stderr
  -h, --help              this help
Exit status: 0 when every read succeeded, 1 on runtime failures, 2 on bad arguments.`;

/** The backend's long options, for --print-capabilities. */
const BACKEND_OPTIONS = ['--server', '--quiet', '--print-capabilities', '--help'];

export interface RngCliOptions {
  help: boolean;
  server: string;
  quiet: boolean;
  printCapabilities: boolean;
  bytes: number;
  count: number;
  warnings: string[];
}

function intArg(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${name} must be an integer ${min}-${max}, got '${v}'`);
  return Number(v);
}

/** Parse either command line (pure; throws UsageError). `frontend` adds -n and -c. */
export function parseRngArgs(argv: readonly string[], frontend: boolean): RngCliOptions {
  const { values } = frontend
    ? parseCommandLine(argv, { ...COMMON, bytes: { type: 'string', short: 'n' }, count: { type: 'string', short: 'c' } })
    : parseCommandLine(argv, { ...COMMON, 'print-capabilities': { type: 'boolean' } });
  const v = values as Record<string, string | boolean | undefined>;
  const warnings: string[] = [];
  if (v.socket !== undefined) {
    if (v.server !== undefined) throw new UsageError('--server and --socket (its deprecated spelling) both given');
    warnings.push('--socket is deprecated: use -S/--server PATH (same meaning)');
  }
  const server = (v.server ?? v.socket) as string | undefined;
  if (server === '') throw new UsageError("option '--server' needs a non-empty value");
  return {
    help: v.help === true,
    server: server ?? DEFAULT_SOCKET_PATH,
    quiet: v.quiet === true,
    printCapabilities: v['print-capabilities'] === true,
    bytes: intArg('--bytes (-n)', v.bytes as string | undefined, 32, 1, 1 << 20),
    count: intArg('--count (-c)', v.count as string | undefined, 1, 1, 1 << 20),
    warnings,
  };
}

/** --print-capabilities of the rng back-end. */
export function rngCapabilities(): ReturnType<typeof deviceCapabilities> {
  return deviceCapabilities('rng', new RngDevice(), {}, BACKEND_OPTIONS);
}

/** The front-end's options, or its usage error / help printed and exit. */
function parseOrExit(prog: string, argv: readonly string[]): RngCliOptions {
  const o = parseOrUsage(prog, FRONTEND_USAGE, () => parseRngArgs(argv, true));
  if (typeof o === 'number') process.exit(o);
  return o;
}

/** One line for a failed connect: errno errors name the socket, vshm errors keep their words. */
function connectFailure(server: string, e: unknown): string {
  return describeIoError('connect to', server, e);
}

/** `vshm-rng-backend [-S PATH]`: serve random bytes until SIGINT/SIGTERM/SIGHUP. */
export async function runBackend(argv = process.argv.slice(2)): Promise<void> {
  const prog = 'vshm-rng-backend';
  // An internal error (a rejected close() included): its stack once, the bounded exit wait, 1.
  exitOnUncaughtException(prog);
  asyncTerminalOutput(prog, { log: debug });
  const o = parseOrUsage(prog, BACKEND_USAGE, () => parseRngArgs(argv, false), process, rngCapabilities);
  if (typeof o === 'number') return exitAfterOutput(o);
  const info = (line: string): void => {
    if (!o.quiet) printDiagnostic(prog, line);
  };
  // Installed before the connect and before the first line, as every vshm daemon does: a signal
  // that arrives while connecting, or right after "serving on", must not take its default (fatal)
  // action. SIGHUP too (the terminal went away): an orderly exit 0. Signalled while still
  // connecting, nothing is served yet and there is nothing to close.
  let be: Awaited<ReturnType<typeof openRngBackend>> | undefined;
  let stopping = false;
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    if (be === undefined) return void exitAfterOutput(code);
    const { transport, peer } = be;
    void transport.close().then(() => {
      peer.close();
      return exitAfterOutput(code);
    });
  };
  void onTerminationSignal().signalled.then(() => stop(0));
  try {
    be = await openRngBackend(o.server, { status: true });
  } catch (e) {
    printDiagnostic(prog, connectFailure(o.server, e));
    stopping = true; // a signal while the line goes out must not turn the status into 0
    return exitAfterOutput(1);
  }
  info(`serving on ${o.server} as peer ${be.peer.id}`);
  // 'session-end' also follows a session whose activate() threw (never announced): pair the lines.
  let connected = false;
  be.transport.on('session', (s: DeviceSession) => {
    connected = true;
    info(`front-end connected (features 0x${s.features.toString(16)})`);
  });
  be.transport.on('session-end', (r: SessionEndReason) => {
    if (connected && r !== 'shutdown') info(`front-end left (${r})`);
    connected = false;
  });
  // A device bug is worth its stack, -q or not.
  be.transport.on('device-exception', (err: Error, callback: string) => {
    process.stderr.write(`${prog}: device ${callback}() threw: ${err.stack ?? err.message}\n`);
  });
  be.peer.on('peer-gone', (id: number) => info(`peer ${id} gone`));
  be.peer.on('server-gone', () => {
    printDiagnostic(prog, `server at ${o.server} went away`);
    stop(1);
  });
}

/** `vshm-rng-frontend [-S PATH] [-n BYTES] [-c COUNT]`: print COUNT reads of BYTES as hex lines. */
export async function runFrontend(argv = process.argv.slice(2)): Promise<void> {
  const prog = 'vshm-rng-frontend';
  const o = parseOrExit(prog, argv);
  let fe: Awaited<ReturnType<typeof openRngFrontend>>;
  try {
    fe = await openRngFrontend(o.server, { status: true });
  } catch (e) {
    printDiagnostic(prog, connectFailure(o.server, e));
    process.exit(1);
  }
  // The back-end may die between two reads: ending that session, the transport first delivers
  // what the back-end completed (a read resolves), then removes the device, and the next read
  // would wait for another back-end. This one-shot reader does not wait: its back-end leaving
  // (or the server) fails the read, in flight or not yet posted.
  const gone = new Promise<never>((_, reject) => {
    fe.peer.on('peer-gone', (id: number) => {
      if (id !== fe.peer.id) reject(new Error(`the back-end (peer ${id}) went away`));
    });
    fe.peer.once('server-gone', () => reject(new Error(`the server at ${o.server} went away`)));
  });
  gone.catch(() => {});
  let code = 0;
  // stdout failing (ENOSPC on a full file; EPIPE, the reader gone) ends the reads with status 1:
  // one line, and none for EPIPE, rather than Node's uncaught 'error' with a stack.
  let outFailed: Error | null = null;
  process.stdout.on('error', (e: Error) => (outFailed ??= e));
  try {
    for (let i = 0; i < o.count && outFailed === null; i++) {
      const b = await Promise.race([fe.rng.read(o.bytes), gone]);
      process.stdout.write(`${b.toString('hex')}\n`);
      outFailed ??= process.stdout.errored;
    }
  } catch (e) {
    printDiagnostic(prog, (e instanceof Error ? e.message : String(e)).split('\n')[0]);
    code = 1;
  }
  if (outFailed !== null) {
    if ((outFailed as NodeJS.ErrnoException).code !== 'EPIPE') printDiagnostic(prog, describeIoError('write to', 'stdout', outFailed));
    code = 1;
  }
  await fe.transport.close();
  fe.peer.close();
  process.exitCode = code;
}
