/**
 * Zero-copy views (`allocOut`) against the session they belong to: a view of an earlier session
 * must never free, post or otherwise reach a buffer of the next one, although the next session's
 * fresh allocator hands out the very same spans (ABA on the offset); and within a session a view
 * is the caller's only from allocOut until it is posted or given back.
 */
import { expect } from 'chai';
import { ArgumentError } from '../../src/errors.js';
import type { DriverQueueHandle, DriverSession } from '../../src/virtio/device-api.js';
import type { FrontendQueue } from '../../src/virtio/frontend-queues.js';
import { standaloneQueue } from '../fixtures/standalone-queue.js';
import { useEchoRigs } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

describe('allocOut views and their session', () => {
  const echoRig = useEchoRigs();

  async function rig(): Promise<ReturnType<typeof echoRig> & { session: DriverSession }> {
    const r = echoRig();
    r.backend.start();
    const session = await r.frontend.start();
    return { ...r, session };
  }

  /** End the current session the way a driver bug does (an onUsed that throws): recovery, a new probe. */
  async function recover(r: ReturnType<typeof echoRig>, q: DriverQueueHandle): Promise<DriverSession> {
    const n = r.drv.sessions.length;
    q.onUsed = () => {
      throw new Error('forced recovery');
    };
    expect(q.add(Buffer.from('x'), 4, 'x')).to.equal(true);
    q.kick();
    await until(() => r.drv.sessions.length === n + 1, 'the next session');
    return r.drv.sessions[n];
  }

  it('a view of session 1 never frees or posts the buffer of session 2 on the same span', async () => {
    const r = await rig();
    const q1 = r.session.queues[0] as FrontendQueue;
    const old = q1.allocOut(64)!;
    old.fill(0x11);
    const s2 = await recover(r, q1);
    const q2 = s2.queues[0] as FrontendQueue;
    const fresh = q2.allocOut(64)!;
    expect(fresh.byteOffset).to.equal(old.byteOffset); // the same span, handed out again
    expect(fresh).to.not.equal(old);
    fresh.set(Buffer.from('session two'));
    // The old queue: nothing to give back any more (its allocator went with its session).
    q1.freeOut(old);
    expect(q1.addAllocated(old, 8, 'stale')).to.equal(false);
    expect(q1.allocOut(64)).to.equal(null);
    expect(q1.repost()).to.equal(false);
    // The new queue: not a view it handed out — refused, touching nothing.
    expect(() => q2.freeOut(old)).to.throw(ArgumentError);
    expect(() => q2.addAllocated(old, 8, 'stale')).to.throw(ArgumentError);
    expect(() => q2.addSgs([old], [8], 'stale')).to.throw(ArgumentError);
    expect(q2.inFlight).to.equal(0);
    // Session 2's buffer is still allocated (the next allocation lands elsewhere) and intact.
    const other = q2.allocOut(64)!;
    expect(other.byteOffset).to.not.equal(fresh.byteOffset);
    q2.freeOut(other);
    expect(Buffer.from(fresh.subarray(0, 11)).toString()).to.equal('session two');
    expect(q2.addAllocated(fresh, 64, 'fresh')).to.equal(true);
    q2.kick();
    await until(() => r.drv.used.some((u) => u.token === 'fresh'), 'the echo of session 2\'s buffer');
    const echoed = r.drv.used.find((u) => u.token === 'fresh')!.data;
    expect(echoed.subarray(0, 11).toString()).to.equal('session two');
    expect(echoed.subarray(11).every((b) => b === 0)).to.equal(true);
  });

  it('a view is the caller\'s only until it is posted or given back: a second post or a free of a posted view is refused', () => {
    const { q, alloc, broken } = standaloneQueue();
    const v = q.allocOut(64)!;
    expect(q.addAllocated(v, 0, 'first')).to.equal(true);
    const used = alloc.driverPool.usedChunks;
    // Posting it again would put one buffer in two requests (freed twice on completion); freeing
    // it would hand the device's buffer to the next allocation while the device reads it.
    expect(() => q.addAllocated(v, 0, 'again')).to.throw(ArgumentError);
    expect(() => q.addSgs([v], [], 'again')).to.throw(ArgumentError);
    expect(() => q.freeOut(v)).to.throw(ArgumentError);
    expect(alloc.driverPool.usedChunks).to.equal(used);
    expect(q.inFlight).to.equal(1);
    const w = q.allocOut(64)!;
    expect(q.addSgs([w], [], 'sg')).to.equal(true);
    expect(() => q.freeOut(w)).to.throw(ArgumentError);
    const f = q.allocOut(64)!;
    expect(() => q.addAllocated(f.subarray(0, 32), 0, 'part')).to.throw(ArgumentError); // not the view handed out
    q.freeOut(f);
    expect(() => q.freeOut(f)).to.throw(ArgumentError);
    expect(broken).to.deep.equal([]);
    q.failAll(new Error('end of test'));
  });

  it('a view refused by addAllocated/addSgs for want of room stays the caller\'s: it can be posted later or given back', () => {
    const { q } = standaloneQueue<number>({ size: 2 });
    const a = q.allocOut(64)!;
    const b = q.allocOut(64)!;
    expect(q.addAllocated(a, 0, 1)).to.equal(true);
    expect(q.addAllocated(q.allocOut(64)!, 0, 2)).to.equal(true); // the ring is full now
    expect(q.addAllocated(b, 0, 3)).to.equal(false);
    expect(q.addSgs([b], [], 3)).to.equal(false);
    q.freeOut(b); // still the caller's
    q.failAll(new Error('end of test'));
  });
});
