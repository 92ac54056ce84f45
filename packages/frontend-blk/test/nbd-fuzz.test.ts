/**
 * The seeded NBD session fuzzer (test/fixtures/nbd-fuzz.ts) against a real NbdServer on the
 * loopback rig: hostile handshakes, options and transmissions, each case checked against the
 * protocol, a shadow model of the export, and the server's idle state. A short fixed slice runs
 * here; run it longer by hand:
 *
 *   VSHM_NBD_FUZZ_CASES=20000 VSHM_NBD_FUZZ_SEED=1 npx mocha --import tsx packages/frontend-blk/test/nbd-fuzz.test.ts
 *
 * A failure names its seed; VSHM_NBD_FUZZ_SEED=<seed> VSHM_NBD_FUZZ_CASES=1 replays that case (on a
 * fresh export: the disk contents left by the cases before it differ, the session is the same).
 */
import { expect } from 'chai';
import { NbdFuzzer } from './fixtures/nbd-fuzz.js';

const CASES = Number(process.env.VSHM_NBD_FUZZ_CASES ?? 50);
const FIRST = Number(process.env.VSHM_NBD_FUZZ_SEED ?? 1);
/** Failures reported before the run stops (a long run goes on past the first). */
const MAX_FAILURES = Number(process.env.VSHM_NBD_FUZZ_MAX_FAILURES ?? 1);

describe('NBD server under seeded hostile client sessions (fuzz)', function () {
  this.timeout(0); // each case has its own failure bound

  it(`${CASES} cases from seed ${FIRST}: protocol, data and idle state hold`, async () => {
    const errors: string[] = [];
    let seed = FIRST;
    const uncaught = (err: unknown): void => {
      errors.push(`seed ${seed}: uncaught ${err instanceof Error ? err.stack : String(err)}`);
    };
    process.on('uncaughtException', uncaught);
    process.on('unhandledRejection', uncaught);
    const fuzzer = new NbdFuzzer();
    const failures: string[] = [];
    const t0 = performance.now();
    try {
      for (; seed < FIRST + CASES && failures.length < MAX_FAILURES; seed++) {
        try {
          await fuzzer.runCase(seed);
        } catch (err) {
          failures.push(err instanceof Error ? err.message : String(err));
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
      await fuzzer.close();
    }
    if (process.env.VSHM_NBD_FUZZ_STATS !== undefined) {
      for (const [k, n] of [...fuzzer.stats].sort()) process.stdout.write(`      ${String(n).padStart(7)}  ${k}\n`);
    }
    expect([...errors, ...failures].join('\n\n')).to.equal('');
  });
});
