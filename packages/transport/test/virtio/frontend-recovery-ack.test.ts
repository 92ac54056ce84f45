/**
 * §4.10 recovery reads the used rings first (issue 9 item 1): what the device acknowledged in a
 * used ring is delivered through onUsed, only the rest is failed — and a hostile or half-written
 * used ring is trusted no further than the §6.4 checks allow. The test plays the device's side of
 * the rings by hand (a scripted back-end completes the transactions, nothing else).
 */
import { expect } from 'chai';
import { createLoopbackPair } from '../../src/testing/loopback.js';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import type { DriverSession, VirtioDriverOps } from '../../src/virtio/device-api.js';
import type { FrontendQueue } from '../../src/virtio/frontend-queues.js';
import { standaloneQueue } from '../fixtures/standalone-queue.js';
import { ScriptedBackend } from '../fixtures/transport-scripted-backend.js';

interface Rig {
  events: string[];
  session: DriverSession;
  be: ReturnType<typeof createLoopbackPair>[0];
  fe: ReturnType<typeof createLoopbackPair>[1];
  frontend: VirtioFrontend;
  memory: DataView;
}

describe('VirtioFrontend recovery delivers acknowledged completions first (§4.10)', () => {
  const open: Rig[] = [];
  afterEach(async () => {
    for (const r of open.splice(0)) {
      await r.frontend.close();
      r.fe.close();
      r.be.close();
    }
  });

  async function rig(): Promise<Rig> {
    const [be, fe] = createLoopbackPair();
    const scripted = new ScriptedBackend(be);
    const events: string[] = [];
    const ops: VirtioDriverOps = {
      deviceId: 3,
      features: 1n,
      queueCount: () => 2,
      probe(s) {
        s.queues.forEach((q, i) => {
          q.onUsed = (token, data) => events.push(`used q${i} ${String(token)} ${Buffer.from(data).toString()}`);
          q.onFailed = (token) => events.push(`failed q${i} ${String(token)}`);
        });
      },
      remove: () => events.push('remove'),
    };
    const frontend = new VirtioFrontend(fe, ops);
    scripted.start();
    const session = await frontend.start();
    const r: Rig = { events, session, be, fe, frontend, memory: new DataView(fe.window) };
    open.push(r);
    return r;
  }

  /** Post three transmit-like requests ('a', 'b', 'c') on queue 1; returns their heads in order. */
  function postThree(r: Rig): number[] {
    const q = r.session.queues[1] as FrontendQueue;
    for (const t of ['a', 'b', 'c']) expect(q.add(Buffer.from(t), 0, t)).to.equal(true);
    q.kick();
    const avail = q.rings.avail;
    return [0, 1, 2].map((i) => r.memory.getUint16(avail + 4 + 2 * i, true));
  }

  /** Play the device: used entries (id, len) at used.idx 0…, then publish `idx`. */
  function writeUsed(r: Rig, queue: number, entries: [number, number][], idx = entries.length): void {
    const used = (r.session.queues[queue] as FrontendQueue).rings.used;
    entries.forEach(([id, len], i) => {
      r.memory.setUint32(used + 4 + 8 * i, id, true);
      r.memory.setUint32(used + 8 + 8 * i, len, true);
    });
    r.memory.setUint16(used + 2, idx, true);
  }

  /** The back-end leaves READY without any notification of the completions. */
  async function loseBackend(r: Rig): Promise<void> {
    const lost = new Promise<void>((resolve) => r.frontend.once('lost', () => resolve()));
    r.be.setState(0);
    await lost;
  }

  it('delivers what the used ring acknowledges and fails only the rest, before remove()', async () => {
    const r = await rig();
    const heads = postThree(r);
    writeUsed(r, 1, [
      [heads[0], 0],
      [heads[1], 0],
    ]);
    await loseBackend(r);
    expect(r.events).to.deep.equal(['used q1 a ', 'used q1 b ', 'failed q1 c', 'remove']);
  });

  it('delivers completed receive buffers with their bytes before recovery', async () => {
    const r = await rig();
    const q = r.session.queues[0] as FrontendQueue;
    expect(q.add(null, 16, 'rx1')).to.equal(true);
    expect(q.add(null, 16, 'rx2')).to.equal(true);
    q.kick();
    const head = r.memory.getUint16(q.rings.avail + 4, true);
    // The device wrote "hi" into the first buffer (its address is in the descriptor) and published it.
    const addr = Number(r.memory.getBigUint64(q.rings.desc + 16 * head, true));
    new Uint8Array(r.fe.window).set(Buffer.from('hi'), addr);
    writeUsed(r, 0, [[head, 2]]);
    await loseBackend(r);
    expect(r.events).to.deep.equal(['used q0 rx1 hi', 'failed q0 rx2', 'remove']);
  });

  it('writes nothing to shared memory while it delivers them (a received buffer keeps its bytes)', async () => {
    const r = await rig();
    const q = r.session.queues[0] as FrontendQueue;
    expect(q.add(null, 16, 'rx1')).to.equal(true);
    q.kick();
    const head = r.memory.getUint16(q.rings.avail + 4, true);
    const addr = Number(r.memory.getBigUint64(q.rings.desc + 16 * head, true));
    const win = new Uint8Array(r.fe.window);
    win.set(Buffer.from('hi'), addr);
    writeUsed(r, 0, [[head, 2]]);
    await loseBackend(r);
    expect(r.events[0]).to.equal('used q0 rx1 hi');
    // The buffer was freed after delivery, but not zeroed: the session had ended (§4.10).
    expect(Buffer.from(win.subarray(addr, addr + 2)).toString()).to.equal('hi');
  });

  it('trusts a used ring no further than its first §6.4 violation', async () => {
    const r = await rig();
    const heads = postThree(r);
    // Entry 1 names a descriptor that heads no chain in flight: entry 0 counts, nothing after it.
    const notAHead = [0, 1, 2, 3, 4, 5, 6, 7].find((i) => !heads.includes(i)) as number;
    writeUsed(r, 1, [
      [heads[0], 0],
      [notAHead, 0],
      [heads[2], 0],
    ]);
    await loseBackend(r);
    expect(r.events).to.deep.equal(['used q1 a ', 'failed q1 b', 'failed q1 c', 'remove']);
  });

  it('trusts nothing from a used.idx that jumps past the queue size', async () => {
    const r = await rig();
    const heads = postThree(r);
    writeUsed(r, 1, [[heads[0], 0]], 9); // queue size 8
    await loseBackend(r);
    expect(r.events).to.deep.equal(['failed q1 a', 'failed q1 b', 'failed q1 c', 'remove']);
  });

  it('trusts a published used.idx over entries that were never written only as far as §6.4 allows', async () => {
    const r = await rig();
    postThree(r);
    // used.idx moved but the entry is still all zeroes: id 0 heads chain 'a' (the first posted)
    // with len 0, which passes every check — the device cannot be told apart from a real one.
    writeUsed(r, 1, [], 1);
    await loseBackend(r);
    expect(r.events).to.deep.equal(['used q1 a ', 'failed q1 b', 'failed q1 c', 'remove']);
  });
});

describe('FrontendQueue.drainAcknowledged', () => {
  it('reads nothing from a detached mapping (the ivshmem device was closed): everything is failed', () => {
    const { buffer, mem, q } = standaloneQueue();
    const events: string[] = [];
    q.onUsed = (t) => events.push(`used ${t}`);
    q.onFailed = (t) => events.push(`failed ${t}`);
    expect(q.add(Buffer.from('x'), 0, 'x')).to.equal(true);
    q.kick();
    // The device acknowledged it…
    mem.u32[(q.rings.used + 4) >>> 2] = 0;
    mem.u16[(q.rings.used + 2) >>> 1] = 1;
    // …but the mapping is gone (munmap detaches the views) before the recovery reads it.
    structuredClone(buffer, { transfer: [buffer] });
    expect(buffer.byteLength).to.equal(0);
    expect(q.drainAcknowledged()).to.equal(0);
    q.failAll(new Error('closed'));
    expect(events).to.deep.equal(['failed x']);
  });

  it('delivers acknowledged completions when one onUsed throws, and posts nothing afterwards', () => {
    const { mem, q } = standaloneQueue();
    const events: string[] = [];
    q.onUsed = (t) => {
      events.push(`used ${t}`);
      expect(q.live).to.equal(false);
      expect(q.add(Buffer.from('again'), 0, 'again')).to.equal(false);
      if (t === 'x') throw new Error('driver bug');
    };
    q.onFailed = (t) => events.push(`failed ${t}`);
    for (const t of ['x', 'y', 'z']) expect(q.add(Buffer.from(t), 0, t)).to.equal(true);
    q.kick();
    const heads = [0, 1, 2].map((i) => mem.u16[(q.rings.avail + 4 + 2 * i) >>> 1]);
    heads.slice(0, 2).forEach((h, i) => (mem.u32[(q.rings.used + 4 + 8 * i) >>> 2] = h));
    mem.u16[(q.rings.used + 2) >>> 1] = 2;
    expect(q.drainAcknowledged()).to.equal(2);
    q.failAll(new Error('lost'));
    expect(events).to.deep.equal(['used x', 'used y', 'failed z']);
  });
});
