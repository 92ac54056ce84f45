/**
 * The seeded hostile-device fuzzer of the BlockDriver (test/fixtures/blk-driver-fuzz.ts): hostile
 * configs and completions against the real driver on the loopback pair, each case checked for
 * settled calls, codes, data integrity, flush order, bounded state and a good device after. A
 * short fixed slice runs here; run it longer by hand:
 *
 *   VSHM_BLK_DRIVER_FUZZ_CASES=20000 VSHM_BLK_DRIVER_FUZZ_SEED=1 npx mocha --import tsx packages/frontend-blk/test/driver-fuzz.test.ts
 *
 * A failure names its seed; VSHM_BLK_DRIVER_FUZZ_SEED=<seed> VSHM_BLK_DRIVER_FUZZ_CASES=1 replays it.
 */
import { expect } from 'chai';
import { BlkDriverFuzzer } from './fixtures/blk-driver-fuzz.js';
import { runSeeded, seededRun } from '../../transport/test/fixtures/seeded-run.js';

const RUN = seededRun('VSHM_BLK_DRIVER_FUZZ', 20);

describe('BlockDriver under seeded hostile devices (fuzz)', function () {
  this.timeout(0); // each case has its own bound

  it(`${RUN.cases} cases from seed ${RUN.first}: settling, codes, data, flush order and idle state hold`, async () => {
    expect(await runSeeded(new BlkDriverFuzzer(), RUN)).to.equal('');
  });
});
