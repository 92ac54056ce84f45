/**
 * The seeded NBD session fuzzer (test/fixtures/nbd-fuzz.ts) against a real NbdServer on the
 * loopback rig: hostile handshakes, options and transmissions — with the server closed under
 * load, the signal path's exit, handshake timeouts, the device lost or changed (maybe breaking as
 * it arrives), or the connection limit in one case of three, two of those at once in some; one
 * case in four on several request queues — each case checked against
 * the protocol, a shadow model of the export, and the server's idle state. A short fixed slice runs
 * here; run it longer by hand:
 *
 *   VSHM_NBD_FUZZ_CASES=20000 VSHM_NBD_FUZZ_SEED=1 npx mocha --import tsx packages/frontend-blk/test/nbd-fuzz.test.ts
 *
 * VSHM_NBD_FUZZ_ONLY=shutdown|exit|timeout|device-loss|device-change|limit|none gives every case
 * that disruption, `<kind>+<kind>` those two, `pair` two drawn at random; VSHM_NBD_FUZZ_MQ=1 puts
 * every case on a multi-queue configuration, =0 none.
 * A failure names its seed; VSHM_NBD_FUZZ_SEED=<seed> VSHM_NBD_FUZZ_CASES=1 replays that case (on a
 * fresh export: the disk contents left by the cases before it differ, the session is the same).
 */
import { expect } from 'chai';
import { NbdFuzzer } from './fixtures/nbd-fuzz.js';
import { runSeeded, seededRun } from '../../transport/test/fixtures/seeded-run.js';

const RUN = seededRun('VSHM_NBD_FUZZ', 40);

describe('NBD server under seeded hostile client sessions (fuzz)', function () {
  this.timeout(0); // each case has its own failure bound

  it(`${RUN.cases} cases from seed ${RUN.first}: protocol, data and idle state hold`, async () => {
    expect(await runSeeded(new NbdFuzzer(), RUN)).to.equal('');
  });
});
