/**
 * The seeded virtio-blk request fuzzer (test/fixtures/blk-fuzz.ts) against the real BlockDevice
 * on a real temporary image: hostile request streams, each completion checked against the
 * protocol's rules and a shadow model of the image, and the device's idle state after each case.
 * A short fixed slice runs here; run it longer by hand:
 *
 *   VSHM_BLK_FUZZ_CASES=5000 VSHM_BLK_FUZZ_SEED=1 npx mocha --import tsx packages/backend-blk/test/blk-fuzz.test.ts
 *
 * A failure names its seed; VSHM_BLK_FUZZ_SEED=<seed> VSHM_BLK_FUZZ_CASES=1 replays that case
 * (the requests are the same; the order in which a burst's requests complete is not replayed).
 */
import { expect } from 'chai';
import { BlkFuzzer } from './fixtures/blk-fuzz.js';
import { runSeeded, seededRun } from '../../transport/test/fixtures/seeded-run.js';

const RUN = seededRun('VSHM_BLK_FUZZ', 30);

describe('virtio-blk device under seeded hostile request streams (fuzz)', function () {
  this.timeout(0); // each burst has its own failure bound

  it(`${RUN.cases} cases from seed ${RUN.first}: statuses, used lengths, the image model and idle state hold`, async () => {
    expect(await runSeeded(new BlkFuzzer(), RUN)).to.equal('');
  });
});
