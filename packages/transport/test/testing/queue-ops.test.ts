/**
 * The structure-aware queue-operation fuzzer (testing/queue-ops.ts) over the real engines: a
 * fixed budget of seeds in the suite, every request going the whole way round; longer runs with
 * `npm run fuzz -- --target ops`.
 */
import { expect } from 'chai';
import { runQueueOpsCase } from '../../src/testing/queue-ops.js';

describe('queue-operation fuzzing (honest driver and device, random interleaving)', () => {
  it('500 seeds: order, data, lengths, wake-ups and drain all agree', () => {
    let completed = 0;
    for (let seed = 1; seed <= 500; seed++) completed += runQueueOpsCase(seed).completed;
    expect(completed).to.be.greaterThan(500 * 5);
  });

  it('is deterministic per seed', () => {
    expect(runQueueOpsCase(42)).to.deep.equal(runQueueOpsCase(42));
  });

  it('long runs: a token still in flight keeps its buffers (5000 operations per case)', () => {
    // Buffers were placed by token number modulo 128 slots: a token held in flight while 128 later
    // ones were added shared its memory with one of them, and honest engines were reported as
    // failing ("readable byte … differs", "written byte … differs") — seeds 3 and 4 here.
    for (let seed = 1; seed <= 12; seed++) expect(runQueueOpsCase(seed, 5000).ops, `seed ${seed}`).to.equal(5000);
  });
});
