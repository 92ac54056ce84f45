/**
 * The NBD server's READ reply pool: buffers come back for reuse only once given back, never
 * after a forfeit; while reads are out it keeps what is returned (within its byte bound), and
 * once nothing is out it keeps four.
 */
import { expect } from 'chai';
import { ReplyPool } from '../src/nbd-server.js';

const MiB = 1024 * 1024;

describe('NBD READ reply pool', () => {
  it('a given-back buffer is reused for the same length while others are out; other lengths get new ones', () => {
    const pool = new ReplyPool();
    const a = pool.take(MiB);
    const b = pool.take(MiB);
    pool.give(a);
    expect(pool.take(MiB)).to.equal(a);
    expect(pool.take(4096)).to.not.equal(a);
    expect(b.length).to.equal(MiB);
  });

  it('taken counts the buffers out: given back or forfeited, they are no longer counted', () => {
    const pool = new ReplyPool();
    const a = pool.take(MiB);
    pool.take(4096);
    expect(pool.taken).to.equal(2);
    pool.give(a);
    expect(pool.taken).to.equal(1);
    pool.forfeit();
    expect(pool.taken).to.equal(0);
  });

  it('a forfeited buffer is never handed out again', () => {
    const pool = new ReplyPool();
    const keep = pool.take(MiB); // one out: the pool is not idle
    const lost = pool.take(MiB);
    pool.forfeit();
    const next = pool.take(MiB);
    expect(next).to.not.equal(lost);
    expect(next).to.not.equal(keep);
  });

  it('keeps what streams back while reads are out, within 64 MiB; idle, it keeps four', () => {
    const pool = new ReplyPool();
    const out = Array.from({ length: 100 }, () => pool.take(MiB));
    for (const b of out.slice(0, 99)) pool.give(b);
    expect(pool.pooled).to.equal(64); // the byte bound: 64 × 1 MiB
    pool.give(out[99]); // nothing out any more
    expect(pool.pooled).to.equal(4);
    // A forfeit that leaves nothing out trims too.
    const again = Array.from({ length: 10 }, () => pool.take(4096));
    for (const b of again.slice(0, 9)) pool.give(b);
    expect(pool.pooled).to.equal(13);
    pool.forfeit();
    expect(pool.pooled).to.equal(4);
  });
});
