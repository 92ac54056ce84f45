/**
 * The seeded hostile-ring generator (hostile.ts) over a fixed CI budget. Run longer by hand:
 *   VSHM_HOSTILE_BUDGET=200000 VSHM_HOSTILE_SEED=1 npx mocha packages/transport/test/testing/hostile.test.ts
 * A failure names its seed; replay it with runHostileDeviceCase(seed) / runHostileDriverCase(seed).
 */
import { expect } from 'chai';
import { runHostileDeviceCase, runHostileDriverCase, HostileAssertionError } from '../../src/testing/hostile.js';
import { Prng } from '../../src/testing/prng.js';
import { RingErrorCode } from '../../src/ring/validation.js';
import { VshmError } from '../../src/errors.js';

const BUDGET = Number(process.env.VSHM_HOSTILE_BUDGET ?? 2000);
const FIRST_SEED = Number(process.env.VSHM_HOSTILE_SEED ?? 1);

describe('hostile rings (seeded generator)', () => {
  it('Prng is deterministic per seed', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const xs = Array.from({ length: 5 }, () => a.next());
    expect(xs).to.deep.equal(Array.from({ length: 5 }, () => b.next()));
    expect(new Prng(43).next()).to.not.equal(xs[0]);
  });

  it(`device side: ${BUDGET} cases end broken with a RingError, touching nothing outside the policy`, () => {
    const codes = new Map<string, number>();
    let natural = 0;
    let popped = 0;
    const known = new Set<string>(Object.values(RingErrorCode));
    for (let seed = FIRST_SEED; seed < FIRST_SEED + BUDGET; seed++) {
      const r = runHostileDeviceCase(seed);
      expect(known.has(r.code), `seed ${seed}: unknown code ${r.code}`).to.equal(true);
      codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      if (r.natural) natural++;
      popped += r.popped;
    }
    // The generator must actually exercise the validator: many codes, mostly natural breaks,
    // and plenty of valid traffic before them.
    expect(codes.size, JSON.stringify([...codes])).to.be.at.least(Math.min(10, BUDGET / 100));
    expect(natural).to.be.greaterThan(BUDGET / 4);
    expect(popped).to.be.greaterThan(BUDGET);
  });

  it(`driver side: ${BUDGET} cases return every token exactly once, only RingErrors`, () => {
    const codes = new Map<string, number>();
    let delivered = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + BUDGET; seed++) {
      const r = runHostileDriverCase(seed);
      codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      delivered += r.delivered;
    }
    for (const c of [RingErrorCode.USED_ID, RingErrorCode.USED_LEN, RingErrorCode.USED_JUMP]) {
      expect(codes.get(c) ?? 0, `${c} in ${JSON.stringify([...codes])}`).to.be.greaterThan(0);
    }
    expect(delivered).to.be.greaterThan(BUDGET);
  });

  it('reports an engine failure with its seed', () => {
    const err = new HostileAssertionError(7, 'example');
    expect(err.message).to.contain('seed 7');
    expect(err).to.be.instanceOf(VshmError).and.to.include({ name: 'HostileAssertionError', code: 'VSHM_ERR_HOSTILE_ASSERTION', seed: 7 });
  });
});
