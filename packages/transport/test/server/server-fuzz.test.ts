/**
 * Seeded fuzzing of the in-process IvshmemServer with hostile clients (spec §1.3–1.6;
 * fixtures/server-fuzz.ts): clients that vanish at any point, write garbage, half-close, hold
 * their socket unread, connect beyond max_peers and reconnect in one turn, mixed with
 * well-behaved ones. A small fixed slice runs here; `VSHM_IVSHMEM_FUZZ_CASES` /
 * `VSHM_IVSHMEM_FUZZ_SEED` run it longer by hand.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { runServerCase } from '../fixtures/server-fuzz.js';

const CASES = Number(process.env.VSHM_IVSHMEM_FUZZ_CASES ?? 40);
const SEED = Number(process.env.VSHM_IVSHMEM_FUZZ_SEED ?? 1);

describe('IvshmemServer under seeded hostile clients (§1.3–1.6)', function () {
  this.timeout(Math.max(60_000, CASES * 1000));

  it(`${CASES} cases from seed ${SEED}: no crash, exact streams for good peers, back to baseline`, async () => {
    const failures: string[] = [];
    for (let seed = SEED; seed < SEED + CASES; seed++) {
      const r = await runServerCase(binding, seed);
      if (!r.ok) failures.push(`seed ${r.seed}: ${r.problem}\n  steps ${r.steps.join(' ')}\n  events ${r.events.join(', ')}`);
      if (failures.length >= 10) break;
    }
    expect(failures, failures.join('\n')).to.deep.equal([]);
  });
});
