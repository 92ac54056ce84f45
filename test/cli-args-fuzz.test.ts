/**
 * A seeded fuzzer of command lines against every vshm command's argument parser, run the way each
 * command runs it (`parseOrUsage` with the command's name and usage text), in-process. Words are
 * drawn from the command's own options (read from its usage text: long and short, `=VALUE` or
 * a separate word, clusters) and from hostile ones: unknown options, `-`, `--`, `=` forms, empty
 * values, numbers at and past every edge and in other notations, control characters, quotes,
 * bidi controls, non-ASCII digits, very long words.
 *
 * Every command line must end in one of three ways, and nothing else:
 * - options to go on with (stderr holds only `NAME: warning: …` lines);
 * - status 0 for `--help` / `--print-capabilities`, with the output on stdout;
 * - status 2 and exactly one line `NAME: <message> (try --help)` on stderr.
 * Each line is printable (no raw control character), no parser throws anything but an
 * ArgumentError, none changes its argv, and the same argv parses the same way twice. A usage
 * message that quotes something ('…') quotes a word of the command line or of the usage text,
 * never an empty or cut one (an unknown option with a line break in it was once named '').
 *
 * VSHM_CLI_FUZZ_CASES / VSHM_CLI_FUZZ_SEED run it longer or elsewhere.
 */
import { expect } from 'chai';
import * as srcKit from '../packages/transport/src/cli-kit.js';
import * as distKit from '@vshm/transport/cli';
import { Prng } from '@vshm/transport/testing';
import { parseServerArgs, SERVER_USAGE } from '../packages/transport/src/server/cli-args.js';
import * as consoleBe from '../packages/backend-console/src/cli-args.js';
import * as consoleFe from '../packages/frontend-console/src/cli-args.js';
import * as blkBe from '../packages/backend-blk/src/cli-args.js';
import * as blkFe from '../packages/frontend-blk/src/cli-args.js';
import { BACKEND_USAGE, FRONTEND_USAGE, parseRngArgs } from '../examples/virtio-rng/src/cli.js';
import { parseInspectArgs, USAGE as INSPECT_USAGE } from '../packages/inspect/src/cli.js';

type ParseOrUsage = typeof distKit.parseOrUsage;

const CASES = Number(process.env.VSHM_CLI_FUZZ_CASES ?? 400);
const SEED = Number(process.env.VSHM_CLI_FUZZ_SEED ?? 1);

interface Target {
  prog: string;
  /**
   * The CLI kit the parser's errors come from: the packages import the built one
   * (`@vshm/transport/cli`), the server's parser, inside the transport, the source one; each
   * kit's parseOrUsage knows its own ArgumentError.
   */
  parseOrUsage: ParseOrUsage;
  usage: string;
  parse: (argv: readonly string[]) => { help: boolean; warnings?: readonly string[]; printCapabilities?: boolean };
}

/** parseServerArgs answers `{ help, options }`: the shape parseOrUsage expects, as the server's main() does. */
const TARGETS: Target[] = [
  { prog: 'vshm-server', parseOrUsage: srcKit.parseOrUsage, usage: SERVER_USAGE, parse: (a) => parseServerArgs(a) },
  { prog: consoleBe.PROG, parseOrUsage: distKit.parseOrUsage, usage: consoleBe.USAGE, parse: (a) => consoleBe.parseCliArgs(a) },
  { prog: consoleFe.PROGRAM, parseOrUsage: distKit.parseOrUsage, usage: consoleFe.USAGE, parse: (a) => consoleFe.parseCli(a) },
  { prog: blkBe.PROG, parseOrUsage: distKit.parseOrUsage, usage: blkBe.USAGE, parse: (a) => blkBe.parseCliArgs(a) },
  { prog: blkFe.PROGRAM, parseOrUsage: distKit.parseOrUsage, usage: blkFe.USAGE, parse: (a) => blkFe.parseCli(a) },
  { prog: 'vshm-rng-backend', parseOrUsage: distKit.parseOrUsage, usage: BACKEND_USAGE, parse: (a) => parseRngArgs(a, false) },
  { prog: 'vshm-rng-frontend', parseOrUsage: distKit.parseOrUsage, usage: FRONTEND_USAGE, parse: (a) => parseRngArgs(a, true) },
  { prog: 'vshm-inspect', parseOrUsage: distKit.parseOrUsage, usage: INSPECT_USAGE, parse: (a) => parseInspectArgs(a) },
];

/** An ArgumentError (UsageError included) of either kit: its class, by name, up the prototype chain. */
function isArgumentError(e: unknown): boolean {
  for (let p = e === null || typeof e !== 'object' ? null : Object.getPrototypeOf(e); p !== null; p = Object.getPrototypeOf(p)) {
    if ((p as { constructor?: { name?: string } }).constructor?.name === 'ArgumentError') return true;
  }
  return false;
}

/** What may not reach a terminal raw: C0 controls, DEL, C1 controls, bidi controls. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** The options a usage text names: `-S`, `--server`, …, in order of appearance. */
function optionsOf(usage: string): string[] {
  const found = new Set<string>();
  for (const m of usage.matchAll(/(?:^|[\s,[(])(--?[A-Za-z][A-Za-z0-9-]*)/g)) found.add(m[1]);
  return [...found];
}

const NUMBERS = [
  '0', '1', '2', '3', '4', '7', '8', '16', '20', '64', '100', '128', '255', '256', '512', '1000', '1023', '1024', '1025',
  '4095', '4096', '32768', '32769', '65535', '65536', '65537', '86400', '86401', '1048576', '1048577', '3600000',
  '4294967295', '4294967296', '9007199254740991', '9007199254740993', '99999999999999999999999',
  '-1', '-0', '+5', ' 5', '5 ', '1e3', '1.5', '0x10', '0X1f', '0x', '010', '08', '0o7', '0b1', 'Infinity', 'NaN',
  '64K', '4M', '1G', '16m', '3k', '1T', '0K', '1KiB', '\u0663', '\uff11', '\u0661\u0662',
];
const WORDS = [
  '', '-', '--', '---', '=', '-=', '--=', '=x', 'auto', 'any', 'none', 'writeback', 'writethrough', 'unsafe',
  '80x24', '0x0', '1x1', '65535x65535', '65536x1', '1,2', ',', '0,', 'a,b', '/tmp/x', '/tmp/x.sock', '.', '/', 'a b',
  'name', 'con', 'vshm', '/vshm', 'x/y', '\u00e9t\u00e9', '\ud83d\ude00', 'a'.repeat(300), '/'.repeat(5000),
  '\x1b[31m', 'a\nb', 'a\r\nb', '\x00', '\x7f', '\x9b', '\u202e', "it's", '"q"', '\\', '$HOME', '%s', '-q', '-h',
];
const UNKNOWN = ['--nope', '--Help', '--help2', '-Z', '-?', '--\x1b[2J', '--a\nb', "--it's", '--=x', '-\u00e9', '--server-', '--no-pty=1'];

function value(r: Prng): string {
  const pick = r.int(10);
  if (pick < 5) return r.pick(NUMBERS);
  if (pick < 9) return r.pick(WORDS);
  return r.pick(NUMBERS) + r.pick(WORDS);
}

/** One command line for `options`: mostly the command's own, some hostile words. */
function commandLine(r: Prng, options: readonly string[]): string[] {
  const argv: string[] = [];
  const n = r.int(8);
  for (let i = 0; i < n; i++) {
    const k = r.int(20);
    const opt = r.pick(options);
    if (k < 7) argv.push(opt, value(r)); // option and a value word (or a flag and an operand)
    else if (k < 10) argv.push(opt);
    else if (k < 12) argv.push(opt.startsWith('--') ? `${opt}=${value(r)}` : `${opt}${value(r)}`);
    else if (k < 13) {
      // a cluster of short options
      const shorts = options.filter((o) => /^-[A-Za-z]$/.test(o));
      if (shorts.length > 0) argv.push('-' + Array.from({ length: 2 + r.int(2) }, () => r.pick(shorts).slice(1)).join(''));
    } else if (k < 15) argv.push(r.pick(UNKNOWN));
    else if (k < 17) argv.push(value(r));
    else if (k < 18) argv.push('--', ...Array.from({ length: r.int(3) }, () => value(r)));
    else argv.push(opt, opt); // twice
  }
  return argv;
}

/** The quoted parts of a message: `'…'`. */
function quotedParts(message: string): string[] {
  return [...message.matchAll(/'([^']*)'/g)].map((m) => m[1]);
}

interface Finding {
  prog: string;
  argv: string[];
  what: string;
}

function check(t: Target, argv: string[], options: readonly string[]): Finding | null {
  const finding = (what: string): Finding => ({ prog: t.prog, argv, what });
  const before = [...argv];
  // The parser alone: an ArgumentError or a result, and the same result again.
  let first: unknown;
  let firstErr: unknown = null;
  try {
    first = t.parse(argv);
  } catch (e) {
    firstErr = e;
  }
  if (firstErr !== null && !isArgumentError(firstErr)) return finding(`threw ${String((firstErr as Error)?.stack ?? firstErr)}`);
  if (JSON.stringify(argv) !== JSON.stringify(before)) return finding('changed its argv');
  let again: unknown;
  let againErr: unknown = null;
  try {
    again = t.parse(argv);
  } catch (e) {
    againErr = e;
  }
  const same = firstErr === null ? againErr === null && JSON.stringify(again) === JSON.stringify(first) : isArgumentError(againErr) && (againErr as Error).message === (firstErr as Error).message;
  if (!same) return finding('parsed differently the second time');

  // As the command runs it.
  const out: string[] = [];
  const err: string[] = [];
  const io = { stdout: { write: (s: string) => out.push(s) > 0 }, stderr: { write: (s: string) => err.push(s) > 0 } };
  const r = t.parseOrUsage(t.prog, t.usage, () => t.parse(argv), io, () => ({ type: 't', deviceId: 0, features: [], queues: 1, options: [] }));
  const text = err.join('');
  if (RAW_CONTROL.test(text.replace(/\n/g, ''))) return finding(`a raw control character on stderr: ${JSON.stringify(text)}`);
  if (typeof r === 'number') {
    if (r === 0) {
      if (out.length !== 1 || err.length !== 0) return finding(`status 0 but stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`);
      return null;
    }
    if (r !== 2) return finding(`status ${r}`);
    if (err.length !== 1 || !new RegExp(`^${t.prog}: .+ \\(try --help\\)\\n$`, 's').test(err[0]) || err[0].indexOf('\n') !== err[0].length - 1) {
      return finding(`a usage error that is not one line: ${JSON.stringify(err)}`);
    }
    // What the message quotes comes from the command line or the usage text, whole.
    if (argv.some((w) => w.includes("'")) || !(firstErr instanceof Error)) return null;
    const words = [...argv, ...argv.flatMap((w) => w.split('=')), t.usage, ...options];
    for (const q of quotedParts(firstErr.message)) {
      if (q.length === 0 && !argv.includes('')) return finding(`the message quotes nothing: ${JSON.stringify(firstErr.message)}`);
      // `-qx`: parseArgs names the letter of the cluster it does not know, `-x`.
      const clusterLetter = /^-.$/su.test(q) && argv.some((w) => /^-[^-]/.test(w) && w.includes(q.slice(1)));
      if (!words.some((w) => w.includes(q)) && !clusterLetter && !/VALUE/.test(q)) return finding(`the message quotes ${JSON.stringify(q)}, which is nowhere in the command line: ${JSON.stringify(firstErr.message)}`);
    }
    return null;
  }
  for (const line of err) {
    if (!line.startsWith(`${t.prog}: warning: `) || line.indexOf('\n') !== line.length - 1) return finding(`stderr besides warnings: ${JSON.stringify(err)}`);
  }
  if (out.length !== 0) return finding(`stdout written: ${JSON.stringify(out)}`);
  return null;
}

describe('command lines, fuzzed, against every command (one clear line or options)', function () {
  this.timeout(120_000);
  for (const t of TARGETS) {
    it(`${t.prog}: ${CASES} command lines from seed ${SEED}`, () => {
      const options = optionsOf(t.usage);
      expect(options, 'options read from the usage text').to.include('--help');
      const findings: Finding[] = [];
      for (let i = 0; i < CASES && findings.length < 5; i++) {
        const r = new Prng(SEED + i);
        const f = check(t, commandLine(r, options), options);
        if (f !== null) findings.push({ ...f, what: `seed ${SEED + i}: ${f.what}` });
      }
      expect(findings.map((f) => `${JSON.stringify(f.argv)} → ${f.what}`)).to.deep.equal([]);
    });
  }
});
