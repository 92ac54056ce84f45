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

const CASES = Number(process.env.VSHM_BLK_FUZZ_CASES ?? 30);
const FIRST = Number(process.env.VSHM_BLK_FUZZ_SEED ?? 1);
/** Failures reported before the run stops (a long run goes on past the first). */
const MAX_FAILURES = Number(process.env.VSHM_BLK_FUZZ_MAX_FAILURES ?? 1);

describe('virtio-blk device under seeded hostile request streams (fuzz)', function () {
  this.timeout(0); // each burst has its own failure bound

  it(`${CASES} cases from seed ${FIRST}: statuses, used lengths, the image model and idle state hold`, async () => {
    const errors: string[] = [];
    let seed = FIRST;
    const uncaught = (err: unknown): void => {
      errors.push(`seed ${seed}: uncaught ${err instanceof Error ? err.stack : String(err)}`);
    };
    process.on('uncaughtException', uncaught);
    process.on('unhandledRejection', uncaught);
    const fuzzer = new BlkFuzzer();
    const failures: string[] = [];
    const t0 = performance.now();
    try {
      for (; seed < FIRST + CASES && failures.length < MAX_FAILURES; seed++) {
        try {
          await fuzzer.runCase(seed);
        } catch (err) {
          // The checker's own failures name their seed; anything else gets it, with its stack.
          const e = err instanceof Error ? err : null;
          failures.push(e?.message.startsWith('seed ') === true ? e.message : `seed ${seed}: ${e?.stack ?? String(err)}`);
          if (CASES >= 1000) process.stdout.write(`      ${failures[failures.length - 1]}\n`); // a long run shows each at once
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
    if (process.env.VSHM_BLK_FUZZ_STATS !== undefined) {
      for (const [k, n] of [...fuzzer.stats].sort()) process.stdout.write(`      ${String(n).padStart(7)}  ${k}\n`);
    }
    expect([...errors, ...failures].join('\n\n')).to.equal('');
  });
});
