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
/** Cases the rule-coverage test needs at least: every mutation must get its chance. */
const COVER = Math.max(BUDGET, 2000);

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

  it(`device side: every §6.3 rule has a mutation that breaks queues by it within ${COVER} cases`, () => {
    // §6.3 item → the mutations that break it. Each must break at least one case by itself.
    const RULES: [string, string[]][] = [
      ['1: avail.idx moves at most the queue size', ['avail-jump', 'random-avail-idx']],
      ['2: head and next indices below the queue size', ['head-oob', 'next-oob']],
      ['3: a chain visits at most queue-size descriptors', ['loop']],
      ['3: an indirect table at most len / 16 entries', ['indirect-loop', 'indirect-next-oob']],
      ['3: an indirect chain at most max(queue size, 1024) entries', ['indirect-long']],
      ['4: inside one section it may read or write, no overflow', ['oob-addr', 'cross-section', 'overflow', 'huge-addr', 'write-perm']],
      ['5: readable descriptors before writable ones', ['order']],
      ['6: INDIRECT negotiated, without NEXT, not nested, len a non-zero multiple of 16', ['indirect-len', 'indirect-next', 'indirect-nested']],
      ['7: a head still in flight', ['dup-head']],
      ['6.1: queue configuration at enable', ['bad-config']],
    ];
    const broke = new Map<string, Set<string>>(); // mutation → codes it broke queues with
    for (let seed = FIRST_SEED; seed < FIRST_SEED + COVER; seed++) {
      const r = runHostileDeviceCase(seed);
      if (!r.natural) continue;
      expect(r.mutation, `seed ${seed}: broken, but by no mutation`).to.be.a('string');
      if (!broke.has(r.mutation!)) broke.set(r.mutation!, new Set());
      broke.get(r.mutation!)!.add(r.code);
    }
    for (const [rule, kinds] of RULES) {
      for (const k of kinds) expect(broke.has(k), `§6.3 item ${rule}: no case broken by '${k}' (${JSON.stringify([...broke.keys()])})`).to.equal(true);
    }
    // The length cap, not another rule, is what a 1025-entry indirect chain runs into.
    expect([...(broke.get('indirect-long') ?? [])]).to.include(RingErrorCode.DESC_LOOP);
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
