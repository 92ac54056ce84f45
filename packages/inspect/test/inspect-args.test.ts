/** vshm-inspect's command line: the optional value of --watch, and operands after `--`. */
import { expect } from 'chai';
import { parseInspectArgs } from '../src/cli.js';

function message(argv: string[]): string {
  try {
    parseInspectArgs(argv);
  } catch (e) {
    return (e as Error).message;
  }
  return 'parsed';
}

describe('vshm-inspect arguments', () => {
  it('--watch without a number takes the default period; with one, that period', () => {
    expect(parseInspectArgs(['-M', 'x', '--watch']).watchMs).to.equal(1000);
    expect(parseInspectArgs(['-M', 'x', '-w', '--json']).watchMs).to.equal(1000);
    expect(parseInspectArgs(['-M', 'x', '-w', '20']).watchMs).to.equal(20);
  });

  it('a --watch after `--` is an operand, refused as written (was quoted as --watch=1000)', () => {
    expect(message(['-M', 'x', '--', '--watch'])).to.equal("unexpected argument '--watch'");
    expect(message(['-M', 'x', '--', '-w', 'y'])).to.equal("unexpected argument '-w'");
  });
});
