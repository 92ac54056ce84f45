/**
 * `@vshm/transport/cli`, the CLI kit: the one voice shared by every vshm command (`vshm-server`,
 * the console CLIs, every device daemon). node:util `parseArgs` with its errors rephrased into one
 * short line, a `UsageError` the commands print as `NAME: what is wrong (try --help)` with exit
 * status 2, the wording of I/O errors (`cannot bind PATH: ENOENT (no such file or directory)`),
 * `printable` for text a user, peer or client chose, the fd-limit warning of a listener
 * (`acceptWarner`), `--print-capabilities` (`deviceCapabilities`), the signal that ends a
 * daemon (`onTerminationSignal`), and terminal output that never blocks a command
 * (`asyncTerminalOutput`, `exitAfterOutput`, `exitOnUncaughtException`).
 *
 * Why wrap parseArgs rather than pick an argument library: parseArgs is in Node, strict, and
 * already gives a stable error `code` per kind; only its messages are unfit for users (several
 * lines, hints meant for programmers, "positional argument" jargon).
 *
 * @module cli
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { isatty } from 'node:tty';
import { getSystemErrorMap, getSystemErrorName, parseArgs, type ParseArgsConfig } from 'node:util';
import { VirtioFeature, VirtioFeatureMask } from 'virtio-spec-types';
import { ArgumentError, ProtocolError } from './errors.js';
import type { Logger } from './log.js';
import { boundQueuedOutput, dropNoticeOwed } from './output-bound.js';
import type { VirtioDeviceOps } from './virtio/device-api.js';

/**
 * A bad command line: the command prints `NAME: <message> (try --help)` and exits 2. The message
 * quotes what the user typed, so the line goes through {@link printable}: an argument that holds
 * control characters (a pasted escape sequence, a file name with a newline) shows escaped.
 */
export class UsageError extends ArgumentError {
  /** The line to print (without newline) for program `prog`. */
  lineFor(prog: string): string {
    return `${prog}: ${printable(this.message)} (try --help)`;
  }
}

/**
 * `text` as it may go to a terminal: every C0 control character, DEL and C1 control
 * (U+0080–U+009F) becomes `\xHH`, every Unicode bidi control `\uHHHH`. For lines that carry
 * text a peer or a client chose — a console back-end's port name (PORT_NAME), an NBD client's
 * export name — or the user typed (an argument, a path): raw, ESC and CSI would let it retitle,
 * clear or rewrite the user's terminal, CR or LF forge lines, and a bidi control show the text
 * reordered. Text already escaped passes unchanged (a backslash is not escaped).
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * Write one diagnostic line, `PROG: line`, to `stream` (stderr). The line may quote what a user,
 * peer or client chose (an argument, a path, a port name, an error text that does): it goes
 * through {@link printable}, so control characters show escaped and the line stays one line.
 */
export function printDiagnostic(prog: string, line: string, stream: { write(s: string): unknown } = process.stderr): void {
  stream.write(`${prog}: ${printable(line)}\n`);
}

/** At most one 'cannot accept' line per listener per this many ms (the listener retries every 100 ms). */
const ACCEPT_WARNING_MS = 10_000;

/**
 * A descriptor held in reserve (/dev/null) while any accept warner is open, so that the limit can
 * still be read when it is reached: reading /proc/self/limits takes a descriptor too. -1 when
 * none is held; `reserveUsers` counts the open warners.
 */
let reserveFd = -1;
let reserveUsers = 0;

function holdReserveFd(): void {
  if (reserveFd >= 0 || reserveUsers === 0) return;
  try {
    reserveFd = openSync('/dev/null', 'r');
  } catch {
    reserveFd = -1;
  }
}

function releaseReserveFd(): void {
  if (reserveFd >= 0) closeSync(reserveFd);
  reserveFd = -1;
}

/** The soft open-file limit of this process (`Max open files` in /proc/self/limits), or '?'. */
function currentFdLimit(): string {
  releaseReserveFd();
  let limit = '?';
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    limit = line?.split(/\s{2,}/)[1] ?? '?';
  } catch {
    // at the limit without a reserve: the line says '?'
  }
  holdReserveFd();
  return limit;
}

/** What `acceptWarner` returns: feed it the listener's events; close it with the listener. */
export interface AcceptWarner {
  /** A failed accept (`listenOwnerOnly`'s `onAcceptError`): maybe one line. */
  failed(err: NodeJS.ErrnoException): void;
  /** A connection was accepted: the next failure starts a new episode. */
  accepted(): void;
  /** Release the reserve descriptor (once per warner; idempotent). */
  close(): void;
}

/**
 * Warnings for a listener whose accept() fails — at the open-file limit (EMFILE) its clients wait
 * in the backlog, unanswered, while the listener retries every 100 ms, and the operator hears why:
 * `print` gets one line (no program name, no newline) when accepting starts failing — not again
 * until a connection was accepted since, and at most one per 10 s — e.g. `warning: cannot accept
 * a client on /x.sock: EMFILE (too many open files); the open-file limit here is 64 (ulimit -n):
 * clients wait and are served once descriptors are free`. `client` names what is accepted ('a
 * client', 'an NBD client'). While any warner is open a descriptor (/dev/null) is held in reserve
 * so that the limit can be read at the limit.
 */
export function acceptWarner(print: (line: string) => void, client: string, path: string): AcceptWarner {
  let last = -Infinity;
  let failing = false;
  let open = true;
  reserveUsers++;
  holdReserveFd();
  return {
    failed(err) {
      const now = Date.now();
      const quiet = failing || now - last < ACCEPT_WARNING_MS;
      failing = true;
      if (quiet) return;
      last = now;
      const limit = err.code === 'EMFILE' ? `; the open-file limit here is ${currentFdLimit()} (ulimit -n)` : '';
      print(`warning: ${describeIoError(`accept ${client} on`, path, err)}${limit}: clients wait and are served once descriptors are free`);
    },
    accepted() {
      failing = false;
    },
    close() {
      if (!open) return;
      open = false;
      if (--reserveUsers === 0) releaseReserveFd();
    },
  };
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** The long name (`--server`) of an option as parseArgs quotes it (`'-S, --server <value>'`). */
function optionName(quoted: string): string {
  return /--[^\s',<]+/.exec(quoted)?.[0] ?? /-[^\s',<]+/.exec(quoted)?.[0] ?? quoted;
}

/** Rephrase one node:util parseArgs error as a one-line UsageError message. */
function rephrase(err: Error & { code?: string }): string {
  const first = err.message.split('\n')[0];
  const quoted = quotedIn(first);
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument '${quoted}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const name = optionName(quoted);
      if (/does not take an argument/.test(first)) return `option '${name}' takes no value`;
      if (/ambiguous/.test(first)) {
        // `--settle-ms -5`: the next word starts with '-', so it is not taken as the value.
        return `option '${name}' needs a value; for one starting with '-', write ${name}=VALUE`;
      }
      return `option '${name}' needs a value`;
    }
    default:
      return first.replace(/\.$/, '');
  }
}

/**
 * Parse `argv` strictly against `options` (node:util parseArgs syntax). Every parse error becomes
 * a UsageError with one line: `unknown option '--bogus'`, `option '--foo' needs a value`,
 * `option '--quiet' takes no value`, `unexpected argument 'x'`. Operands are refused unless
 * `allowPositionals`.
 */
export function parseCommandLine<const T extends Options>(
  argv: readonly string[],
  options: T,
  allowPositionals = false,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: true }>> {
  try {
    refuseShortEquals(argv, options);
    // Operands are always allowed by parseArgs here, then refused by us: its own message for them
    // depends on the Node version.
    const r = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
    if (!allowPositionals && r.positionals.length > 0) throw new UsageError(`unexpected argument '${r.positionals[0]}'`);
    return r;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const e = err as Error & { code?: string };
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option '${unknownOption(argv, options) ?? quotedIn(e.message)}'`);
    throw new UsageError(rephrase(e));
  }
}

/**
 * The first option in `argv` that `options` does not know, as it was written (`--bogus`, `-x`),
 * read from parseArgs's own tokens rather than from its message: the message quotes it raw, so a
 * name holding a newline or a quote cannot be cut back out of it.
 */
function unknownOption(argv: readonly string[], options: Options): string | undefined {
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  for (const t of tokens) {
    if (t.kind === 'option' && !Object.hasOwn(options, t.name)) return t.rawName;
  }
  return undefined;
}

/** The first 'quoted' part of the first line of a parseArgs message ('' if none). */
function quotedIn(message: string): string {
  return /'([^']*)'/.exec(message.split('\n')[0])?.[1] ?? '';
}

/**
 * `-S=PATH` and `-q=1`: parseArgs reads the first as `-S` with the value "=PATH" (a path no one
 * meant) and the second as the cluster `-q -= -1` ("unknown option '-='"). Both are the long
 * form's `=` used on a short option; say so instead. Words after `--` are operands.
 */
function refuseShortEquals(argv: readonly string[], options: Options): void {
  for (const word of argv) {
    if (word === '--') return;
    const m = /^-([^-=])=/.exec(word);
    if (m === null) continue;
    const entry = Object.entries(options).find(([, o]) => o.short === m[1]);
    if (entry === undefined) continue; // an unknown short option: parseArgs names it
    const [long, o] = entry;
    throw new UsageError(
      o.type === 'boolean'
        ? `option '-${m[1]}' takes no value (in '${word}')`
        : `write '-${m[1]} VALUE' or '--${long}=VALUE', not '${word}'`,
    );
  }
}

/**
 * Write `text` and return the error the stream failed with at once, if any: ENOSPC on a full file
 * or EPIPE on a pipe whose reader left are known when write() returns (the stream is `errored`),
 * though Node emits them as 'error' only later — which would crash a command that goes on running.
 * That event is taken here; the caller reports the returned error.
 */
function writeChecked(stream: CliStreams['stdout'], text: string): Error | null {
  const s = stream as { once?: (ev: 'error', f: () => void) => unknown; errored?: Error | null };
  s.once?.('error', () => {});
  stream.write(text);
  return s.errored ?? null;
}

/** A one-shot output (`--help`, `--print-capabilities`): its exit status, 0 or 1 (see parseOrUsage). */
function printOnce(prog: string, io: CliStreams, text: string): number {
  const err = writeChecked(io.stdout, text);
  if (err === null) return 0;
  if ((err as NodeJS.ErrnoException).code !== 'EPIPE') io.stderr.write(`${prog}: ${describeIoError('write to', 'stdout', err)}\n`);
  return 1;
}

/** Where a command writes: process, or a test's capture. */
export interface CliStreams {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

/**
 * The start every vshm command shares: run `parse` (argv → options). A bad command line (any
 * ArgumentError, UsageError included) prints one line, `NAME: what is wrong (try --help)`, and
 * gives exit status 2; `--help` prints `usage` and gives 0; with `capabilities` (a device
 * daemon), `--print-capabilities` prints its JSON and gives 0; warnings the parser collected print
 * as `NAME: warning: …`. Output that cannot be written (`> /dev/full`) gives 1 and one line (none
 * for EPIPE: the reader left). From then on (on the real process) the process's warnings print in
 * that voice, and a stderr that breaks no longer ends the command. Returns the options to go on
 * with, or the exit status to end with.
 */
export function parseOrUsage<T extends { help: boolean; warnings?: readonly string[]; printCapabilities?: boolean }>(
  prog: string,
  usage: string,
  parse: () => T,
  io: CliStreams = process,
  capabilities?: (opts: Exclude<T, { help: true }>) => DeviceCapabilities,
): Exclude<T, { help: true }> | number {
  let opts: T;
  try {
    opts = parse();
  } catch (err) {
    if (!(err instanceof ArgumentError)) throw err;
    // One line either way: an ArgumentError's line breaks fold into spaces (a device library's
    // message may have them), and any other control character shows escaped.
    const line = err instanceof UsageError ? err.lineFor(prog) : `${prog}: ${printable(err.message.replace(/\s*\n\s*/g, ' ').trim())} (try --help)`;
    io.stderr.write(`${line}\n`);
    return 2;
  }
  if (opts.help) return printOnce(prog, io, usage.endsWith('\n') ? usage : `${usage}\n`);
  if (opts.printCapabilities === true && capabilities !== undefined) {
    return printOnce(prog, io, `${JSON.stringify(capabilities(opts as Exclude<T, { help: true }>))}\n`);
  }
  for (const w of opts.warnings ?? []) io.stderr.write(`${prog}: warning: ${printable(w)}\n`);
  if (io === process) {
    voiceProcessWarnings(prog);
    keepGoingWithoutStderr();
  }
  return opts as Exclude<T, { help: true }>;
}

/**
 * Diagnostics are best-effort: once stderr breaks — EPIPE after `2>&1 | head -1` has read its
 * line, EIO from a terminal that closed — each later line is lost, but the command goes on. Unheard,
 * that stream 'error' ends the process at its next line: a back-end would vanish mid-session
 * without its orderly reset, a server would leave its socket file. Idempotent.
 */
function keepGoingWithoutStderr(): void {
  if (stderrOptional) return;
  stderrOptional = true;
  process.stderr.on('error', () => {});
}

let stderrOptional = false;

/**
 * Print the process's warnings (`process.emitWarning`: the transport's VSHM_WARN_*, Node's own)
 * as `NAME: warning: …`, one line each, instead of Node's two programmer-facing lines
 * (`(node:PID) [CODE] Warning: …` and the `--trace-warnings` hint). Node's default printer is the
 * 'warning' listener it installs at start; it is replaced. Not with --no-warnings (nothing printed
 * then, as Node would). Idempotent.
 */
function voiceProcessWarnings(prog: string): void {
  const off = (process as { noProcessWarnings?: boolean }).noProcessWarnings === true
    || process.execArgv.includes('--no-warnings') || /(^|\s)--no-warnings(\s|$)/.test(process.env.NODE_OPTIONS ?? '');
  if (voiced || off) return;
  voiced = true;
  process.removeAllListeners('warning');
  process.on('warning', (w: Error) => process.stderr.write(`${prog}: warning: ${printable(w.message.replace(/\s*\n\s*/g, ' '))}\n`));
}

let voiced = false;

/** libuv's text for each errno name ("no such file or directory"), built on first use. */
let uvText: Map<string, string> | null = null;

/** `ENOENT (no such file or directory)` for an errno error (addon, node:fs, node:net), else its message. */
export function errnoText(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  const msg = typeof e?.message === 'string' ? e.message.split('\n')[0] : String(err);
  if (!hasErrno(err)) return msg;
  const code = e!.code as string;
  // One wording whichever layer failed: the addon says strerror's "No such file…", node:fs
  // "ENOENT: no such file…, open '/x'", node:net "listen ENOENT: …" — libuv's table covers all.
  uvText ??= new Map([...getSystemErrorMap().values()].map(([name, text]) => [name, text]));
  const text = uvText.get(code);
  return text === undefined ? code : `${code} (${text})`;
}

/** Whether `err` carries an errno code (`ENOENT`, …) as addon and node:fs errors do. */
function hasErrno(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code);
}

/**
 * One runtime-error line (without the program name) that names the path and the errno:
 * `describeIoError('bind', '/x/y.sock', err)` → `cannot bind /x/y.sock: ENOENT (no such file or
 * directory)`. A ProtocolError (a server message that broke §1.8) gets the path too; any other
 * error without an errno code (a vshm error, which names its path itself) is returned as its
 * first message line.
 */
export function describeIoError(action: string, path: string, err: unknown): string {
  // A protocol violation (§1.8) knows the message, not the socket it came from: name the path, and
  // where the bytes were not ivshmem at all (or none came), ask whether a vshm-server listens there.
  if (err instanceof ProtocolError) {
    const hint = NOT_IVSHMEM.has(err.code) ? ' (is a vshm-server listening there?)' : '';
    return `cannot ${action} ${path}: ${errnoText(err)}${hint}`;
  }
  if (!hasErrno(err)) return errnoText(err); // the message itself
  // Connecting a peer maps the server's memory too: a failed mmap (ENOMEM, a memory ulimit) is
  // not a failed connect, and saying so sends the reader to the socket instead of the memory.
  if ((err as { syscall?: unknown }).syscall === 'mmap') return `cannot map the shared memory of ${path}: ${errnoText(err)}`;
  return `cannot ${action} ${path}: ${errnoText(err)}`;
}

/** Codes a listener that does not speak the ivshmem protocol gives: garbage or silence (§1.8). */
const NOT_IVSHMEM: ReadonlySet<string> = new Set(['VSHM_ERR_MSG_LEN', 'VSHM_ERR_MSG_SHORT', 'VSHM_ERR_MSG_TRUNCATED', 'VSHM_ERR_BURST_TIMEOUT']);

/** The `--print-capabilities` object of a device daemon (the vhost-user back-end convention). */
export interface DeviceCapabilities {
  /** Device name, e.g. "console". */
  type: string;
  /** Virtio device id. */
  deviceId: number;
  /** Names of every feature bit the back-end offers, device bits first, transport bits after. */
  features: string[];
  /** Queues the device sets up when the driver accepts every offered feature. */
  queues: number;
  /** The daemon's long options. */
  options: string[];
}

/**
 * Build the `--print-capabilities` object of a device daemon from its ops table: the device's
 * feature bits named by `deviceFeatures` (name → bit number; unnamed bits print as `bit N`), then
 * the transport bits every vshm back-end adds (VERSION_1, ACCESS_PLATFORM, ORDER_PLATFORM, §4.4)
 * and the ring bits the device offers. Print it with `JSON.stringify` on one line.
 */
export function deviceCapabilities(
  type: string,
  ops: Pick<VirtioDeviceOps, 'deviceId' | 'features' | 'queueCount'>,
  deviceFeatures: Readonly<Record<string, number>>,
  options: readonly string[],
): DeviceCapabilities {
  const offered = ops.features | VirtioFeatureMask.VERSION_1 | VirtioFeatureMask.ACCESS_PLATFORM | VirtioFeatureMask.ORDER_PLATFORM;
  const names: string[] = [];
  const byBit = new Map<number, string>();
  for (const [name, bit] of Object.entries(deviceFeatures)) byBit.set(bit, name);
  for (const [name, bit] of Object.entries(VirtioFeature)) if (!byBit.has(bit)) byBit.set(bit, name);
  for (let bit = 0; bit < 64; bit++) {
    if ((offered & (1n << BigInt(bit))) !== 0n) names.push(byBit.get(bit) ?? `bit ${bit}`);
  }
  return { type, deviceId: ops.deviceId, features: names, queues: ops.queueCount(offered), options: [...options] };
}

/**
 * Resolves with the first SIGINT, SIGTERM or SIGHUP (closing the terminal counts like a
 * termination request); `dispose` removes the handlers again. For CLIs that race their start-up
 * or a wait against an orderly shutdown.
 */
export function onTerminationSignal(): { signalled: Promise<NodeJS.Signals>; dispose: () => void } {
  let dispose = (): void => {};
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    const handler = (sig: NodeJS.Signals): void => resolve(sig);
    for (const s of TERMINATION_SIGNALS) process.on(s, handler);
    dispose = () => {
      for (const s of TERMINATION_SIGNALS) process.off(s, handler);
    };
  });
  return { signalled, dispose };
}

const TERMINATION_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;


/** What {@link asyncTerminalOutput} takes besides the program name. */
export interface TerminalOutputOptions {
  /** The command's debug logger (`createLogger`): it gets one line for each stream that stays synchronous, and why. */
  log?: Logger;
  /**
   * The most bytes a terminal stderr made asynchronous may hold queued before further messages
   * are dropped; default 1 MiB. A process's stderr is bounded once, by the first call that
   * bounds it (a test's `--import` preload may set a smaller one for the command it runs).
   */
  maxQueuedStderr?: number;
}

/**
 * Make this process's stdout and stderr asynchronous where they are a terminal, so that a terminal
 * that stops taking output (an ssh session whose network stalled, a frozen terminal emulator, a
 * pty master nobody reads) pushes back like a pipe — `write()` returns false, 'drain' follows —
 * instead of holding the whole event loop in write(2): Node makes a terminal stream synchronous
 * (its handle's `setBlocking(true)`), this undoes that. Call it once, at the start of a command
 * that goes on running; end such a command with {@link exitAfterOutput}, which lets queued output
 * out first.
 *
 * Non-blocking mode belongs to the open file description, which a terminal's descriptor shares
 * with the shell and every other process on it. libuv opens the terminal anew (by its name) for
 * the stream, so the mode stays ours — when it can: when it cannot (a terminal this user may not
 * open, e.g. after `sudo -u`; one whose name cannot be found, in some containers) the stream keeps
 * the shared description, libuv writes it by retrying, and making it non-blocking would both
 * spin and hand EAGAIN to the other processes. Such a stream stays synchronous. Which case holds
 * is found the way libuv decides it: the terminal's name (/proc/self/fd/N, checked against the
 * descriptor) and an open of that name with the same access mode.
 *
 * Diagnostics must not fill memory while such a terminal takes nothing: on stderr, once
 * asynchronous, a message that finds `maxQueuedStderr` bytes or more queued is dropped and counted
 * — one line `PROG: N messages (B bytes) were dropped while the terminal took no output` once the
 * terminal took what was queued. Messages are kept or dropped whole, so what is queued stays
 * below the bound plus one message. stdout is never bounded: it is a
 * command's data (a console's output), which honours back-pressure and must not be lost unsaid.
 *
 * Returns, for each stream, null when its writes cannot hold the process on a stalled terminal
 * (not a terminal, or one now written asynchronously), else why it stays synchronous (`cannot
 * reopen /dev/pts/3: EACCES (permission denied)`); `log` gets the same, as `stdout stays
 * synchronous: WHY`.
 */
export function asyncTerminalOutput(prog: string, options: TerminalOutputOptions = {}): { stdout: string | null; stderr: string | null } {
  const result = { stdout: unblockTerminal(process.stdout), stderr: unblockTerminal(process.stderr) };
  if (process.stderr.isTTY && result.stderr === null) boundQueuedOutput(process.stderr, prog, options.maxQueuedStderr);
  for (const [name, why] of Object.entries(result)) if (why !== null) options.log?.('%s stays synchronous: %s', name, why);
  return result;
}

/** asyncTerminalOutput for one stream: null when done or not a terminal, else why not. */
function unblockTerminal(stream: NodeJS.WriteStream): string | null {
  if (!stream.isTTY) return null;
  const handle = (stream as unknown as { _handle?: { setBlocking?: (blocking: boolean) => number } })._handle;
  if (typeof handle?.setBlocking !== 'function') return 'the terminal stream has no handle to make non-blocking';
  const why = ownTerminalOpen((stream as unknown as { fd: number }).fd);
  if (why !== null) return why;
  const err = handle.setBlocking(false);
  return err === 0 ? null : `cannot make the terminal non-blocking: ${getSystemErrorName(err)}`;
}

/**
 * Null when libuv gave descriptor `fd` (a terminal) an open file description of its own, by
 * opening the terminal's name again: its name (what glibc's ttyname_r gives first: the
 * /proc/self/fd link, if it names this very device), not a pty master (libuv does not reopen
 * one), and an open of that name with the same access mode succeeds here. Else why not.
 */
function ownTerminalOpen(fd: number): string | null {
  let path: string;
  try {
    path = readlinkSync(`/proc/self/fd/${fd}`);
  } catch (err) {
    return `cannot name the terminal of descriptor ${fd}: ${errnoText(err)}`;
  }
  if (/(^|\/)ptmx$/.test(path)) return `${path} is a pty master`;
  try {
    const own = fstatSync(fd, { bigint: true });
    const named = statSync(path, { bigint: true });
    if (!named.isCharacterDevice() || named.rdev !== own.rdev || named.ino !== own.ino || named.dev !== own.dev) {
      return `${path} (the name of descriptor ${fd}) is another file here`;
    }
    const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    if (flags === null) return `cannot read the access mode of descriptor ${fd}`;
    // O_ACCMODE: the mode libuv reopens with. O_NONBLOCK: never wait for a modem line.
    closeSync(openSync(path, (parseInt(flags[1], 8) & 3) | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK));
  } catch (err) {
    return describeIoError('reopen', path, err);
  }
  return null;
}

/**
 * How long {@link exitAfterOutput} waits for output that does not move, by default, ms. A
 * terminal that takes output at all, however slowly (an ssh session on a slow link, a serial
 * console), moves its queue within that; a user who pressed the quit key hardly notices a stuck
 * one's wait.
 */
const EXIT_OUTPUT_WAIT_MS = 2000;

/**
 * How many times per `waitMs` {@link exitAfterOutput} looks whether its streams' output moved; it
 * gives up after this many looks in a row found none. Counted in looks rather than measured in
 * time, so that a busy machine that delays the looks delays the verdict with them: a look that
 * comes late after a stall of the whole process has not given the stream a chance to move either.
 */
const EXIT_OUTPUT_LOOKS = 4;

/**
 * `process.exit(code)` once `streams` (stdout and stderr) have taken what is queued for them, or
 * once their output has not moved for `waitMs` (default 2000): output written asynchronously (a
 * pipe, or a terminal after {@link asyncTerminalOutput}) is lost when the process exits before it
 * is out, and a stalled terminal must not keep the process for ever — nobody could read those
 * lines anyway. A reader that takes the output slowly but steadily (a 9600-baud serial console
 * takes 16 KiB in 17 s) keeps the wait going for as long as it goes on taking it: a byte taken by
 * the kernel counts, not only a whole write. A stream that fails meanwhile (EPIPE, EIO) ends its
 * part of the wait quietly, and descriptors 0–2 on a terminal that hung up are closed before the
 * exit (Node 20 would abort with a core dump restoring their settings). Restore the terminal mode
 * before calling this.
 *
 * The command is exiting from this call on: a termination signal (SIGINT, SIGTERM, SIGHUP) during
 * the wait ends it at once, and the process still exits with `code` — the command's own status,
 * not death by the signal. The command's own handlers for those signals do not run meanwhile (they
 * were for stopping it, which is done), so none starts a second shutdown — nor does one added
 * during the wait: the signal's exit comes first. A second call while one
 * waits exits with the same wait; its `code` counts only if the status so far is 0: the first
 * failure stands (an internal error during the wait for a clean exit is not reported as 0).
 */
export async function exitAfterOutput(code: number, waitMs = EXIT_OUTPUT_WAIT_MS, streams: readonly NodeJS.WritableStream[] = [process.stdout, process.stderr]): Promise<never> {
  if (exiting !== null) {
    // A failure that comes up during the wait for a success (an internal error, its stack
    // printed) is not lost: the first non-zero status stands.
    if (exiting.code === 0) exiting.code = code;
    return exiting.exited;
  }
  let timer: NodeJS.Timeout | undefined;
  let signalled = (): void => {};
  let finished = false;
  const finish = (): never => {
    if (finished) return undefined as never; // a process.exit that returned (a test's)
    finished = true;
    clearTimeout(timer);
    restoreSignals(); // for a process.exit that returns: the process as it was
    exiting = null;
    releaseHungUpTerminals();
    return process.exit(current.code);
  };
  // Gives up after EXIT_OUTPUT_LOOKS looks in a row that found no stream's output moved.
  const bound = new Promise<void>((resolve) => {
    let before = streams.map(queuedOutput);
    let still = 0;
    const look = (): void => {
      const now = streams.map(queuedOutput);
      const moved = now.some((q, i) => q.queued < before[i].queued || q.handleQueue < before[i].handleQueue);
      before = now;
      still = moved ? 0 : still + 1;
      if (still >= EXIT_OUTPUT_LOOKS) resolve();
      else timer = setTimeout(look, waitMs / EXIT_OUTPUT_LOOKS);
    };
    timer = setTimeout(look, waitMs / EXIT_OUTPUT_LOOKS);
  });
  const bySignal = new Promise<void>((resolve) => (signalled = resolve));
  // A signal exits right in its listener, the first: no listener added during the wait runs.
  const restoreSignals = takeTerminationSignals(() => {
    signalled();
    finish();
  });
  const current: { code: number; exited: Promise<never> } = { code, exited: Promise.race([Promise.all(streams.map(outputTaken)), bound, bySignal]).then(finish) };
  exiting = current;
  return current.exited;
}

/** The exit under way (exitAfterOutput), if any, and the status it will exit with. */
let exiting: { code: number; exited: Promise<never> } | null = null;

/**
 * Make `handler` the only listener of the termination signals, and the first of any added later;
 * returns what puts the previous listeners back instead. Added before the others go, so that no
 * signal finds none (its default action: death by the signal).
 */
function takeTerminationSignals(handler: () => void): () => void {
  const previous = TERMINATION_SIGNALS.map((sig) => [sig, process.rawListeners(sig) as ((...args: unknown[]) => void)[]] as const);
  for (const [sig, listeners] of previous) {
    process.prependListener(sig, handler);
    for (const l of listeners) process.removeListener(sig, l);
  }
  return () => {
    for (const [sig, listeners] of previous) {
      for (const l of listeners) process.on(sig, l);
      process.removeListener(sig, handler);
    }
  };
}

/**
 * Resolves once `stream` has written out everything queued for it (or cannot any more): what
 * was queued before now, and what was written meanwhile (a notice of {@link asyncTerminalOutput}'s
 * bound that came due, a last line).
 */
function outputTaken(stream: NodeJS.WritableStream): Promise<void> {
  const s = stream as Partial<Pick<Writable, 'destroyed' | 'writableEnded' | 'writableLength' | 'errored'>> & NodeJS.WritableStream;
  // A stream that fails while we wait (EPIPE: the reader left; EIO: the terminal hung up) has
  // nothing more to take: heard here, its 'error' must not end the process with a stack instead.
  s.on('error', ignoreError);
  // Writes complete in order: the callback of an empty one comes after all before it. A stream
  // that fails or closes first may never call it (a write still in progress holds back the
  // callbacks queued behind it): then its 'error' or 'close' ends the wait.
  const broken = (): boolean => s.destroyed === true || s.writableEnded === true || s.errored != null;
  // A notice of dropped writes still owed (asyncTerminalOutput's bound) counts as queued: its
  // marker is an empty write, which writableLength does not show.
  const idle = (): boolean => !((s.writableLength ?? 0) > 0) && !dropNoticeOwed(s);
  if (broken() || idle()) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => resolve();
    // Written meanwhile (still something queued once the probe is through): probe again.
    const probe = (): void => {
      if (broken() || idle()) done();
      else s.write('', probe);
    };
    s.once('error', done);
    s.once('close', done);
    s.write('', probe);
  });
}

function ignoreError(): void {}

/**
 * How much output `stream` still holds, in the two places it can: bytes of writes not yet
 * complete (`writableLength`; a write counts in full until its last byte is out), and bytes libuv
 * still has to hand to the kernel (the handle's write queue, a net.Socket's: a pipe's, a
 * terminal's). The second one shrinks with each partial write, so a slow reader's progress shows
 * inside one large write; a stream without such a handle reports 0 there.
 */
function queuedOutput(stream: NodeJS.WritableStream): { queued: number; handleQueue: number } {
  const s = stream as Partial<Pick<Writable, 'writableLength'>> & { _handle?: { writeQueueSize?: unknown } | null };
  const handleQueue = s._handle?.writeQueueSize;
  return { queued: s.writableLength ?? 0, handleQueue: typeof handleQueue === 'number' ? handleQueue : 0 };
}

/** Which of fds 0–2 were a terminal when this module was loaded (at a command's start). */
const STARTED_ON_TERMINAL = [0, 1, 2].map((fd) => isatty(fd));

/**
 * Close those of fds 0–2 that were a terminal at start and are not one now: a terminal that hung
 * up (its window closed, the ssh session ended). Node 20 restores the start-up terminal settings
 * of fds 0–2 at exit and aborts the process (SIGABRT, a core dump) when that fails with EIO on a
 * hung-up terminal (nodejs/node#51519, fixed in later lines); it leaves alone a descriptor that
 * is closed. Called right before process.exit: nothing writes to them after that.
 */
function releaseHungUpTerminals(): void {
  for (let fd = 0; fd <= 2; fd++) {
    if (!STARTED_ON_TERMINAL[fd] || isatty(fd)) continue;
    try {
      closeSync(fd);
    } catch {
      // already closed: nothing for Node to restore either
    }
  }
}

/**
 * Report the first uncaught exception as `PROG: internal error: STACK` and exit 1 through
 * {@link exitAfterOutput}, so that the stack reaches a terminal written asynchronously. The
 * process runs on during that wait: an exception that recurs meanwhile (a callback that keeps
 * throwing) is not reported again. `beforeExit` runs once, first (restore the terminal mode);
 * it must not throw.
 */
export function exitOnUncaughtException(prog: string, beforeExit?: () => void): void {
  let crashing = false;
  process.on('uncaughtException', (err: Error) => {
    if (crashing) return;
    crashing = true;
    beforeExit?.();
    process.stderr.write(`${prog}: internal error: ${err.stack ?? err.message}\n`);
    void exitAfterOutput(1);
  });
}
