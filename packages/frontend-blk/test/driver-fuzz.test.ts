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

const CASES = Number(process.env.VSHM_BLK_DRIVER_FUZZ_CASES ?? 20);
const FIRST = Number(process.env.VSHM_BLK_DRIVER_FUZZ_SEED ?? 1);
/** Failures reported before the run stops (a long run goes on past the first). */
const MAX_FAILURES = Number(process.env.VSHM_BLK_DRIVER_FUZZ_MAX_FAILURES ?? 1);

describe('BlockDriver under seeded hostile devices (fuzz)', function () {
  this.timeout(0); // each case has its own bound

  it(`${CASES} cases from seed ${FIRST}: settling, codes, data, flush order and idle state hold`, async () => {
    const errors: string[] = [];
    let seed = FIRST;
    const uncaught = (err: unknown): void => {
      errors.push(`seed ${seed}: uncaught ${err instanceof Error ? err.stack : String(err)}`);
    };
    process.on('uncaughtException', uncaught);
    process.on('unhandledRejection', uncaught);
    const fuzzer = new BlkDriverFuzzer();
    const failures: string[] = [];
    const t0 = performance.now();
    try {
      for (; seed < FIRST + CASES && failures.length < MAX_FAILURES; seed++) {
        try {
          await fuzzer.runCase(seed);
        } catch (err) {
          failures.push(err instanceof Error ? err.message : String(err));
          if (CASES >= 1000) process.stdout.write(`      ${failures[failures.length - 1]}\n`);
        }
        if (errors.length > 0) break;
        if (CASES >= 1000 && (seed - FIRST + 1) % 500 === 0) {
          const secs = (performance.now() - t0) / 1000;
          process.stdout.write(`      … ${seed - FIRST + 1} cases in ${secs.toFixed(0)} s, ${failures.length} failed, rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB\n`);
        }
      }
    } finally {
      process.off('uncaughtException', uncaught);
      process.off('unhandledRejection', uncaught);
    }
    if (process.env.VSHM_BLK_DRIVER_FUZZ_STATS !== undefined) {
      for (const [k, n] of [...fuzzer.stats].sort()) process.stdout.write(`      ${String(n).padStart(7)}  ${k}\n`);
    }
    expect([...errors, ...failures].join('\n\n')).to.equal('');
  });
});
