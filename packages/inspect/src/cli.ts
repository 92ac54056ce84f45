/**
 * `vshm-inspect`: attach read-only to a live vshm session and print what is inside (CLI voice:
 * usage errors one line and exit 2, runtime errors one line and exit 1).
 */
import type { Binding } from '@vshm/addon';
import { asyncTerminalOutput, describeIoError, exitAfterOutput, onTerminationSignal, parseCommandLine, parseOrUsage, printable, printDiagnostic, UsageError } from '@vshm/transport/cli';
import { attachPid, attachShm, InspectError, validShmName, type Attachment, type LayoutOverride } from './attach.js';
import { formatSnapshot } from './format.js';
import { takeSnapshot } from './snapshot.js';

const PROG = 'vshm-inspect';
/** --watch without a value refreshes every second. */
const DEFAULT_WATCH_MS = 1000;

/** The `--help` text. */
export const USAGE = `Usage: ${PROG} (--pid PID | -M NAME) [options]

Attach READ-ONLY to a live vshm session and show the state table, the virtio header and every
queue (size, avail/used indices, in-flight count, event-idx values, vectors, ring addresses and
the section they lie in). Nothing is written to the shared memory.

  -p, --pid PID          a vshm process (vshm-server, a back-end or a front-end) of your uid
  -M, --shm NAME         the POSIX shared-memory object of 'vshm-server -M NAME'
  -j, --json             one JSON object (with --watch: one per line)
  -w, --watch [MS]       refresh every MS milliseconds (default ${DEFAULT_WATCH_MS}) until interrupted
  -n, --max-peers N      override the number of peers (default: from the status file, else 2)
  -o, --output-section SIZE
                         override the output section size (K/M/G suffix; default: from the
                         status file or the mappings, else 0)
  -h, --help             this text

Queue sizes, vectors and ring addresses come from the status files the vshm daemons publish
($VSHM_STATUS_DIR, else $XDG_RUNTIME_DIR/vshm, else /tmp/vshm-UID); the indices are read live.
Exit status: 0 ok, 1 cannot attach or cannot write stdout, 2 usage error.
`;

const OPTIONS = {
  pid: { type: 'string', short: 'p' },
  shm: { type: 'string', short: 'M' },
  json: { type: 'boolean', short: 'j' },
  watch: { type: 'string', short: 'w' },
  'max-peers': { type: 'string', short: 'n' },
  'output-section': { type: 'string', short: 'o' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** What a command line asks for. */
export interface InspectArgs {
  help: boolean;
  pid?: number;
  shm?: string;
  json: boolean;
  /** Refresh period, or undefined for one snapshot. */
  watchMs?: number;
  layout: LayoutOverride;
}

function parseUint(text: string, what: string, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) > max) throw new UsageError(`bad ${what} '${text}'`);
  return Number(text);
}

function parseSize(text: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text);
  if (m === null) throw new UsageError(`bad size '${text}' (a number with an optional K, M or G suffix)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const v = Number(m[1]) * unit;
  if (!Number.isSafeInteger(v)) throw new UsageError(`size '${text}' is too large`);
  return v;
}

/** Parse argv (without node and the script). Throws UsageError. */
export function parseInspectArgs(argv: readonly string[]): InspectArgs {
  // `--watch` takes an optional value, which parseArgs cannot express: a bare --watch/-w (end of
  // the line, or followed by another option) gets the default. Words after `--` are operands,
  // refused as written.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    if ((a === '--watch' || a === '-w') && (i + 1 >= argv.length || !/^\d+$/.test(argv[i + 1]))) args.push(`--watch=${DEFAULT_WATCH_MS}`);
    else args.push(a);
  }
  const { values: v } = parseCommandLine(args, OPTIONS);
  if (v.help === true) return { help: true, json: false, layout: {} };
  if ((v.pid === undefined) === (v.shm === undefined)) throw new UsageError('give exactly one of --pid PID and -M NAME');
  const out: InspectArgs = { help: false, json: v.json === true, layout: {} };
  if (v.pid !== undefined) {
    out.pid = parseUint(v.pid, 'pid', 0x3fffffff);
    if (out.pid === 0) throw new UsageError(`bad pid '${v.pid}'`);
  }
  if (v.shm !== undefined) {
    if (!validShmName(v.shm.replace(/^\/+/, ''))) throw new UsageError(`bad shared-memory object name '${v.shm}'`);
    out.shm = v.shm;
  }
  if (v.watch !== undefined) {
    out.watchMs = parseUint(v.watch, 'watch period', 86_400_000);
    if (out.watchMs < 10) throw new UsageError(`watch period ${out.watchMs} ms is below 10 ms`);
  }
  if (v['max-peers'] !== undefined) {
    out.layout.maxPeers = parseUint(v['max-peers'], 'peer count', 1024);
    if (out.layout.maxPeers < 1) throw new UsageError('the peer count must be 1…1024');
  }
  if (v['output-section'] !== undefined) {
    out.layout.outputSectionSize = parseSize(v['output-section']);
    // vshm-server refuses any other (§1.9 -o): such a layout would place every section wrongly.
    if (out.layout.outputSectionSize % 4096 !== 0) throw new UsageError(`output section size ${out.layout.outputSectionSize} is not a multiple of 4096`);
  }
  return out;
}

function render(att: Attachment, json: boolean, watching: boolean): string {
  const s = takeSnapshot(att);
  return json ? JSON.stringify(s, null, watching ? undefined : 2) : formatSnapshot(s);
}

/** Run the command; resolves with the exit status (also used by the tests in-process). */
export async function main(argv: readonly string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const a = parseOrUsage(PROG, USAGE, () => parseInspectArgs(argv), { stdout: out, stderr: err });
  if (typeof a === 'number') return a;
  let att: Attachment;
  try {
    const binding: Binding = (await import('@vshm/addon')).default;
    att = a.pid !== undefined ? attachPid(binding, a.pid, a.layout) : attachShm(binding, a.shm!, a.layout);
  } catch (e) {
    if (e instanceof InspectError) {
      // It may quote the --shm name or a path as given: control characters go escaped.
      err.write(`${PROG}: ${printable(e.message)}\n`);
      return 1;
    }
    throw e;
  }
  try {
    if (a.watchMs === undefined) {
      // A failed write (ENOSPC on a full file; EPIPE, the reader gone) is known once write()
      // returns, but Node emits it as 'error' later, which would end the process with a stack.
      const stream = out as NodeJS.WritableStream & { errored?: Error | null };
      stream.once('error', () => {});
      out.write(render(att, a.json, false) + '\n');
      const failed = stream.errored ?? null;
      if (failed === null) return 0;
      if ((failed as NodeJS.ErrnoException).code !== 'EPIPE') err.write(`${PROG}: ${describeIoError('write to', 'stdout', failed)}\n`);
      return 1;
    }
    return await watch(att, a, out, err);
  } finally {
    att.close();
  }
}

/** Refresh until SIGINT/SIGTERM/SIGHUP or the inspected process exits. */
function watch(att: Attachment, a: InspectArgs, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const clear = !a.json && (out as { isTTY?: boolean }).isTTY === true;
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    // SIGHUP too (the terminal closed), as the vshm daemons do: the watch ends with status 0.
    const signals = onTerminationSignal();
    const stop = (code: number): void => {
      done = true;
      if (timer !== null) clearTimeout(timer);
      signals.dispose();
      resolve(code);
    };
    void signals.signalled.then(() => stop(0));
    // `vshm-inspect --watch | head`: the reader left (EPIPE), which ends the watch like Ctrl-C.
    // Any other failure (ENOSPC on a full file, EIO) is an error, reported as without --watch.
    const failed = (e: Error): void => {
      if (done) return;
      done = true;
      if ((e as NodeJS.ErrnoException).code === 'EPIPE') return stop(0);
      err.write(`${PROG}: ${describeIoError('write to', 'stdout', e)}\n`);
      stop(1);
    };
    out.on('error', failed);
    const tick = (): void => {
      if (att.pid !== undefined && !processAliveSafe(att.pid)) {
        err.write(`${PROG}: process ${att.pid} has exited\n`);
        stop(0);
        return;
      }
      // A terminal written asynchronously (run()) that has not taken the last snapshot yet (Ctrl-S,
      // a stalled ssh session) gets none now: snapshots do not pile up in memory, and the first
      // period after it takes the queued one shows the state of then, not a backlog.
      if (((out as { writableLength?: number }).writableLength ?? 0) === 0) {
        att.refreshStatus();
        // Text snapshots: the screen is redrawn on a terminal, else separated by a blank line.
        out.write((clear ? '\x1b[H\x1b[2J' : '') + render(att, a.json, true) + (a.json || clear ? '\n' : '\n\n'));
      }
      // A synchronous stdout (a file, a pipe on Linux) knows of a failed write already; its
      // 'error' event comes later, after another period would have been scheduled.
      const errored = (out as { errored?: Error | null }).errored ?? null;
      if (errored !== null) return failed(errored);
      if (done) return;
      timer = setTimeout(tick, a.watchMs);
    };
    tick();
  });
}

function processAliveSafe(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}

/**
 * The bin entry: run and exit with the status. A terminal is written asynchronously, as by the
 * daemons: one that stops taking output must not hold --watch in write(2), where a Ctrl-C cannot
 * reach it. The exit then waits for what is queued while it moves (2 s without progress ends it).
 */
export function run(argv: readonly string[] = process.argv.slice(2)): void {
  asyncTerminalOutput(PROG);
  main(argv).then(
    (code) => exitAfterOutput(code),
    (e: unknown) => {
      printDiagnostic(PROG, (e as Error).message ?? String(e));
      exitAfterOutput(1);
    },
  );
}
