/**
 * `vshm-server` (spec §1.9): the ivshmem2-server command line over `IvshmemServer`.
 *
 * Exit status: 0 after `-h` or a clean SIGINT/SIGTERM/SIGHUP shutdown (§1.7; SIGHUP — its
 * terminal closing — is a request to stop like SIGTERM, not a fatal default); 2 for an argument error
 * (exactly one stderr line, nothing created); 1 for a runtime failure. Once listening it prints one
 * stderr line, "vshm-server: listening on PATH (…)", which scripts and tests wait for.
 *
 * `run()` is the command (the bin's entry): a terminal on stdout or stderr is written
 * asynchronously (`asyncTerminalOutput`), so one that stalls holds its lines, not the server —
 * every peer is still accepted and served; the exit waits for the queued output for as long as it
 * moves (`exitAfterOutput`: 2 s without progress ends it). `main()` is the same without either,
 * for running in-process.
 */
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { asyncTerminalOutput, describeIoError, exitAfterOutput, exitOnUncaughtException, parseOrUsage, printable } from '../cli-kit.js';
import { createLogger } from '../log.js';
import { IvshmemServer } from './server.js';
import { optionWarnings, type ServerOptions } from './options.js';
import { parseServerArgs, SERVER_USAGE } from './cli-args.js';
import { WarningLimiter } from './warning-limiter.js';

export interface CliIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

const PROG = 'vshm-server';
const debug = createLogger('vshm:server');

/** `s` as one line of a diagnostic: newlines folded, control characters escaped (it may quote a path). */
function oneLine(s: string): string {
  return printable(s.replace(/\s*\n\s*/g, ' ').trim());
}

/** The ready line (printed to stderr once the socket listens). */
export function listeningLine(o: ServerOptions, memorySize: number): string {
  return `${PROG}: listening on ${printable(o.socketPath)} (${memorySize} bytes, ${o.maxPeers} peers, ${o.vectors} vectors, protocol 0x${o.protocol.toString(16)})`;
}

/**
 * The one line for a failed start(): an errno error names what failed and its path (the addon
 * only knows the syscall: `bind failed: ENOENT`), a vshm error already names its path.
 */
export function startFailure(err: unknown, o: ServerOptions): string {
  const e = err as { syscall?: unknown; path?: unknown };
  // node:fs errors carry their path: only the pid file is written through node:fs.
  if (typeof e?.path === 'string') return describeIoError(e.path === o.pidFile ? 'write pid file' : 'access', e.path, err);
  switch (e?.syscall) {
    case 'socket':
    case 'bind':
    case 'listen':
    case 'fchmod':
      return describeIoError('bind', o.socketPath, err);
  }
  const m = o.memory;
  if (m.kind === 'shm') return describeIoError('create shared memory object', m.name, err);
  if (m.kind === 'tmpfile') return describeIoError('create memory in', m.dir, err);
  return describeIoError('create memory', `(memfd of ${o.memorySize} bytes)`, err);
}

/**
 * Run the server until SIGINT/SIGTERM/SIGHUP. Resolves with the exit status; does not call
 * process.exit nor change how stdout and stderr write (run() does both).
 */
export async function main(argv: readonly string[] = process.argv.slice(2), io: CliIo = process): Promise<number> {
  const parsed = parseOrUsage(PROG, SERVER_USAGE, () => parseServerArgs(argv), io);
  if (typeof parsed === 'number') return parsed;
  const o = parsed.options;
  for (const w of optionWarnings(o)) io.stderr.write(`${PROG}: warning: ${oneLine(w)}\n`);

  const server = new IvshmemServer({ ...o });
  if (o.verbose) {
    server.on('peer-connected', (id: number) => io.stderr.write(`${PROG}: peer ${id} connected\n`));
    server.on('peer-gone', (id: number, reason: string) => io.stderr.write(`${PROG}: peer ${id} gone (${reason})\n`));
  }
  // Without -v the server's log is rate limited per warning code: a flood of broken clients
  // costs a few lines and one count, not one line each.
  const limiter = new WarningLimiter((line) => io.stderr.write(`${PROG}: warning: ${line}\n`), o.verbose ? { burst: Infinity } : {});
  server.on('warning', (err: Error) => limiter.warn((err as { code?: string }).code ?? 'other', oneLine(err.message)));
  // A refusal closes the newcomer without a message (§1.4), so the client sees only EOF: the
  // operator gets the reason here, with or without -v, rate limited like the other warnings.
  server.on('peer-refused', () => limiter.warn('refused-connection', `connection refused: all ${o.maxPeers} peer ids in use (-n ${o.maxPeers})`));

  // Handlers go in before start() so a signal during startup is not the default (fatal) action.
  let stopRequested: (() => void) | undefined;
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    // A hung-up terminal fails writes with EIO: an unhandled stderr 'error' must not skip cleanup.
    if (sig === 'SIGHUP' && io === process) process.stderr.on('error', () => {});
    if (o.verbose) io.stderr.write(`${PROG}: ${sig}, shutting down\n`);
    signalled = true;
    stopRequested?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  try {
    try {
      await server.start();
    } catch (err) {
      io.stderr.write(`${PROG}: ${oneLine(startFailure(err, o))}\n`);
      return 1;
    }
    io.stderr.write(listeningLine(o, server.memorySize) + '\n');
    if (!signalled) await new Promise<void>((resolve) => (stopRequested = resolve));
    await server.stop();
    limiter.flush();
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}

/**
 * The command (bin/vshm-server.js): main() with asynchronous terminal output, then exit with its
 * status once stdout and stderr have taken their output (for as long as it moves; 2 s without
 * progress ends the wait: a stalled terminal does not keep a stopped server).
 */
export async function run(): Promise<never> {
  // An internal error: its stack (bounded wait for it), exit 1; a recurrence is not reprinted.
  exitOnUncaughtException(PROG);
  asyncTerminalOutput(PROG, { log: debug });
  let code: number;
  try {
    code = await main();
  } catch (err) {
    process.stderr.write(`${PROG}: ${oneLine(String((err as Error)?.stack ?? err))}\n`);
    code = 1;
  }
  return exitAfterOutput(code);
}

// Direct execution (`node --import tsx src/server/cli.ts …` or `node dist/server/cli.js …`).
function isDirect(): boolean {
  if (!process.argv[1]) return false;
  try {
    return pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url;
  } catch {
    return false;
  }
}
if (isDirect()) void run();
