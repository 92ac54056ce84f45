/**
 * `vshm-server` argument table, in-process (parseServerArgs is pure): the long aliases of the one
 * CLI voice, one-line usage errors, and the "too small" memory message. The child-process side
 * (exit 2, "(try --help)", nothing created) is in conformance/11 and server-cli.test.ts.
 */
import { expect } from 'chai';
import { ArgumentError } from '../src/errors.js';
import { parseServerArgs } from '../src/cli/server-args.js';

function fails(argv: string[]): string {
  try {
    parseServerArgs(argv);
  } catch (err) {
    expect(err).to.be.instanceOf(ArgumentError);
    expect((err as Error).message).to.not.include('\n');
    return (err as Error).message;
  }
  throw new Error(`parseServerArgs(${JSON.stringify(argv)}) did not fail`);
}

describe('vshm-server arguments (one CLI voice)', () => {
  it('--help and -h give help; --help after other options too', () => {
    expect(parseServerArgs(['--help'])).to.deep.equal({ help: true });
    expect(parseServerArgs(['-h'])).to.deep.equal({ help: true });
    expect(parseServerArgs(['-l', '64K', '--help'])).to.deep.equal({ help: true });
  });

  it('--server PATH, --server=PATH and -S PATH set the socket; --verbose is -v', () => {
    for (const argv of [['--server', '/tmp/a.sock'], ['--server=/tmp/a.sock'], ['-S', '/tmp/a.sock'], ['-S/tmp/a.sock']]) {
      const r = parseServerArgs(argv);
      expect(r.help).to.equal(false);
      if (!r.help) expect(r.options.socketPath).to.equal('/tmp/a.sock');
    }
    const r = parseServerArgs(['--verbose']);
    if (!r.help) expect(r.options.verbose).to.equal(true);
  });

  const table: [string[], string][] = [
    [['--bogus'], "unknown option '--bogus'"],
    [['-x'], "unknown option '-x'"],
    [['--server'], "option '--server' needs a value"],
    [['--help=1'], "option '--help' takes no value"],
    [['-l'], "option '-l' needs a value"],
    [['-S', ''], "option '-S' needs a non-empty value"],
    [['stray'], "unexpected argument 'stray'"],
  ];
  for (const [argv, message] of table) {
    it(`${argv.join(' ') || "''"} → ${message}`, () => {
      expect(fails(argv)).to.equal(message);
    });
  }

  it('-l 3 says the size is too small and names the minimum', () => {
    expect(fails(['-l', '3'])).to.equal('memory size (-l) 3 (rounded up to 4) is too small: the minimum is 4096 bytes (4096-byte state table)');
    expect(fails(['-l', '8K', '-o', '4K', '-n', '2'])).to.match(/^memory size \(-l\) 8192 is too small: the minimum is 16384 bytes \(4096-byte state table \+ 2 output sections of 4096\)$/);
    expect(() => parseServerArgs(['-l', '4K'])).to.not.throw();
  });
});
