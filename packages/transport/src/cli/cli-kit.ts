/**
 * The one CLI voice shared by every vshm command (`vshm-server`, the console CLIs, every device
 * daemon): node:util `parseArgs` with its errors rephrased into one short line, a `UsageError`
 * the commands print as `NAME: what is wrong (try --help)` with exit status 2, and the wording of
 * I/O errors (`cannot bind PATH: ENOENT (no such file or directory)`).
 *
 * Why wrap parseArgs rather than pick an argument library: parseArgs is in Node, strict, and
 * already gives a stable error `code` per kind; only its messages are unfit for users (several
 * lines, hints meant for programmers, "positional argument" jargon).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ArgumentError } from '../errors.js';

/** A bad command line: the command prints `NAME: <message> (try --help)` and exits 2. */
export class UsageError extends ArgumentError {
  /** The line to print (without newline) for program `prog`. */
  lineFor(prog: string): string {
    return `${prog}: ${this.message} (try --help)`;
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** The long name (`--server`) of an option as parseArgs quotes it (`'-S, --server <value>'`). */
function optionName(quoted: string): string {
  return /--[^\s',<]+/.exec(quoted)?.[0] ?? /-[^\s',<]+/.exec(quoted)?.[0] ?? quoted;
}

/** Rephrase one node:util parseArgs error as a one-line UsageError message. */
function rephrase(err: Error & { code?: string }): string {
  const first = err.message.split('\n')[0];
  const quoted = /'([^']*)'/.exec(first)?.[1] ?? '';
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option '${quoted}'`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument '${quoted}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const name = optionName(quoted);
      if (/does not take an argument/.test(first)) return `option '${name}' takes no value`;
      if (/ambiguous/.test(first)) {
        // `--settle-ms -5`: the next word starts with '-', so it is not taken as the value.
        return `option '${name}' needs a value (for a value starting with '-', write ${name}=VALUE)`;
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
    // Operands are always allowed by parseArgs here, then refused by us: its own message for them
    // depends on the Node version.
    const r = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
    if (!allowPositionals && r.positionals.length > 0) throw new UsageError(`unexpected argument '${r.positionals[0]}'`);
    return r;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(rephrase(err as Error & { code?: string }));
  }
}

/** strerror says "No such file"; inside a sentence it reads "no such file". */
function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/** `ENOENT (no such file or directory)` for an errno error (addon or node:fs), else the message. */
function errnoText(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  const msg = typeof e?.message === 'string' ? e.message.split('\n')[0] : String(err);
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code === undefined || !/^E[A-Z0-9]+$/.test(code)) return msg;
  // Addon: "bind failed: ENOENT (no such file or directory)".
  const addon = new RegExp(`${code} \\(([^)]*)\\)`).exec(msg);
  if (addon) return `${code} (${lowerFirst(addon[1])})`;
  // node:fs: "ENOENT: no such file or directory, open '/x'".
  const fs = new RegExp(`^${code}: ([^,]*)`).exec(msg);
  if (fs) return `${code} (${lowerFirst(fs[1])})`;
  return code;
}

/** Whether `err` carries an errno code (`ENOENT`, …) as addon and node:fs errors do. */
function hasErrno(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code);
}

/**
 * One runtime-error line (without the program name) that names the path and the errno:
 * `describeIoError('bind', '/x/y.sock', err)` → `cannot bind /x/y.sock: ENOENT (no such file or
 * directory)`. An error without an errno code (a vshm error, which names its path itself) is
 * returned as its first message line.
 */
export function describeIoError(action: string, path: string, err: unknown): string {
  if (!hasErrno(err)) return errnoText(err);
  return `cannot ${action} ${path}: ${errnoText(err)}`;
}
