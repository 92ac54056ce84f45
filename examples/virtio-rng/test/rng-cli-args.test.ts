/**
 * The rng CLIs' arguments in-process (parseRngArgs is pure): the one CLI voice's -S/--server,
 * the deprecated --socket, exact one-line usage errors.
 */
import { expect } from 'chai';
import { UsageError } from '@vshm/transport/cli';
import { parseRngArgs } from '../src/cli.js';

describe('rng CLI arguments', () => {
  it('defaults; -S and --server; -n/-c on the front-end', () => {
    expect(parseRngArgs([], false)).to.include({ server: '/tmp/ivshmem_socket', quiet: false, printCapabilities: false, help: false });
    expect(parseRngArgs(['--server', '/a'], false).server).to.equal('/a');
    expect(parseRngArgs(['-S', '/a', '-n', '64', '--count', '3', '-q'], true)).to.include({ server: '/a', bytes: 64, count: 3, quiet: true });
    expect(parseRngArgs(['--print-capabilities'], false).printCapabilities).to.equal(true);
  });

  it('--socket still works, with one deprecation warning', () => {
    const o = parseRngArgs(['--socket', '/b'], false);
    expect(o.server).to.equal('/b');
    expect(o.warnings).to.deep.equal(['--socket is deprecated: use -S/--server PATH (same meaning)']);
  });

  const table: [string[], boolean, string][] = [
    [['--bogus'], false, "unknown option '--bogus'"],
    [['-n', '8'], false, "unknown option '-n'"],
    [['--print-capabilities'], true, "unknown option '--print-capabilities'"],
    [['-S'], true, "option '--server' needs a value"],
    [['-n', '0'], true, "--bytes (-n) must be an integer 1-1048576, got '0'"],
    [['stray'], true, "unexpected argument 'stray'"],
  ];
  for (const [argv, fe, want] of table) {
    it(`${fe ? 'front' : 'back'}-end ${argv.join(' ')} → ${want}`, () => {
      expect(() => parseRngArgs(argv, fe)).to.throw(UsageError, want);
    });
  }
});
