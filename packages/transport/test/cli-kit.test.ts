/**
 * The shared CLI kit: parseArgs errors rephrased into one line, UsageError's printed line, and
 * I/O errors that name the path and the errno.
 */
import { expect } from 'chai';
import { openSync } from 'node:fs';
import { describeIoError, parseCommandLine, UsageError } from '../src/index.js';
import { ArgumentError } from '../src/errors.js';

const OPTIONS = {
  server: { type: 'string', short: 'S' },
  'settle-ms': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

function message(argv: string[], allowPositionals = false): string {
  try {
    parseCommandLine(argv, OPTIONS, allowPositionals);
  } catch (err) {
    expect(err).to.be.instanceOf(UsageError).and.instanceOf(ArgumentError);
    expect((err as UsageError).code).to.equal('VSHM_ERR_ARGUMENT');
    return (err as Error).message;
  }
  throw new Error(`${JSON.stringify(argv)} parsed`);
}

describe('cli-kit: parseCommandLine', () => {
  it('parses values, short and long, and operands when allowed', () => {
    const r = parseCommandLine(['-S', '/a', '--settle-ms=5', '-q', 'x'], OPTIONS, true);
    expect(r.values).to.deep.equal({ server: '/a', 'settle-ms': '5', quiet: true });
    expect(r.positionals).to.deep.equal(['x']);
  });

  const table: [string[], string][] = [
    [['--bogus'], "unknown option '--bogus'"],
    [['-x'], "unknown option '-x'"],
    [['--settle-ms'], "option '--settle-ms' needs a value"],
    [['-S'], "option '--server' needs a value"],
    [['--settle-ms', '-5'], "option '--settle-ms' needs a value; for one starting with '-', write --settle-ms=VALUE"],
    [['--quiet=1'], "option '--quiet' takes no value"],
    [['stray'], "unexpected argument 'stray'"],
  ];
  for (const [argv, want] of table) {
    it(`${argv.join(' ')} → ${want}`, () => {
      const got = message(argv);
      expect(got).to.equal(want);
      expect(got).to.not.match(/\n|positional|Did you forget/);
    });
  }

  it('UsageError.lineFor gives NAME: message (try --help)', () => {
    expect(new UsageError("unknown option '--bogus'").lineFor('vshm-x')).to.equal("vshm-x: unknown option '--bogus' (try --help)");
  });
});

describe('cli-kit: describeIoError', () => {
  it('addon errors: the syscall text becomes the path', () => {
    const err = Object.assign(new Error('bind failed: ENOENT (No such file or directory)'), { code: 'ENOENT', errno: 2, syscall: 'bind' });
    expect(describeIoError('bind', '/x/y.sock', err)).to.equal('cannot bind /x/y.sock: ENOENT (no such file or directory)');
  });

  it('node:fs errors', () => {
    let err: unknown;
    try {
      openSync('/nonexistent-vshm-dir/f', 'r');
    } catch (e) {
      err = e;
    }
    expect(describeIoError('open', '/nonexistent-vshm-dir/f', err)).to.equal('cannot open /nonexistent-vshm-dir/f: ENOENT (no such file or directory)');
  });

  it('errors without an errno keep their message (they name their path themselves)', () => {
    const err = Object.assign(new Error('/x is in use by a live server'), { code: 'VSHM_ERR_SOCKET_IN_USE' });
    expect(describeIoError('bind', '/x', err)).to.equal('/x is in use by a live server');
  });
});
