/**
 * The seeded hostile driver against ConsoleDevice's control path (fixtures/hostile-driver.ts)
 * over a small fixed budget. Run longer by hand:
 *   VSHM_CONSOLE_FUZZ_BUDGET=50000 VSHM_CONSOLE_FUZZ_SEED=1 npx mocha --import tsx packages/backend-console/test/control-fuzz.test.ts
 * A failure names its seed; replay it with runHostileDriverConsoleCase(seed).
 */
import { expect } from 'chai';
import { HostileDriverCaseError, runHostileDriverConsoleCase } from './fixtures/hostile-driver.js';

const BUDGET = Number(process.env.VSHM_CONSOLE_FUZZ_BUDGET ?? 100);
const FIRST_SEED = Number(process.env.VSHM_CONSOLE_FUZZ_SEED ?? 1);

describe('ConsoleDevice under a seeded hostile driver (control path)', () => {
  it(`${BUDGET} cases: no exception, answers as §7.3 says, bounded state, a good driver afterwards gets every byte`, function () {
    this.timeout(Math.max(20_000, BUDGET * 50));
    let sent = 0;
    let sessions = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + BUDGET; seed++) {
      const r = runHostileDriverConsoleCase(seed);
      sent += r.sent;
      sessions += r.sessions;
    }
    // The generator must do something: plenty of control messages and re-negotiations.
    expect(sent).to.be.above(BUDGET * 10);
    expect(sessions).to.be.above(BUDGET * 2);
  });

  it('names the seed and step of a broken invariant', () => {
    const e = new HostileDriverCaseError(7, 3, 'boom');
    expect(e.message).to.equal('console hostile-driver seed 7, step 3: boom');
  });
});
