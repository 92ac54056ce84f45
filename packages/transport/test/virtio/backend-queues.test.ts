import { expect } from 'chai';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_NEXT } from 'virtio-spec-types';
import { HDR_DEVICE_STATUS, HDR_QUEUE_ENABLE, HDR_QUEUE_EVENT, HDR_QUEUE_SEL } from '../../src/virtio/header.js';
import { packedRingAddresses, packedRingBytes } from '../../src/ring/ring-layout.js';
import { LIVE, S, kick, liveRig, negotiate, queueRig, setupQueue, type QueueRig } from '../fixtures/backend-rig.js';
import { echoOps } from '../fixtures/backend-devices.js';
import type { MockDriver } from '../../src/testing/mock-driver.js';
import { until, turn } from '../fixtures/until.js';
import { RingError } from '../../src/errors.js';

const rigs: QueueRig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.close();
});

function put(r: QueueRig, addr: number, text: string): void {
  r.mem.u8.set(Buffer.from(text), addr);
}
function get(r: QueueRig, addr: number, len: number): string {
  return Buffer.from(r.mem.u8.subarray(addr, addr + len)).toString();
}
async function drain(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await turn();
}

describe('VirtioBackend: queues (§4.6, §4.9)', () => {
  it('serves a kicked chain and notifies on the driver vector with queue_event set', async () => {
    const { r, q0 } = await liveRig();
    rigs.push(r);
    expect(r.ops.sessions).to.have.length(1);
    expect(r.ops.sessions[0].queues.map((q) => q?.size)).to.deep.equal([8, 8]);
    put(r, 0x2000, 'hello');
    q0.addChain([{ addr: 0x2000, len: 5 }, { addr: 0x3000, len: 16, write: true }]);
    r.fe.irqs.length = 0;
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 1, 'used entry');
    expect(q0.readUsed()).to.deep.equal([{ id: 0, len: 5 }]);
    expect(get(r, 0x3000, 5)).to.equal('hello');
    expect(r.fe.r8(HDR_QUEUE_EVENT)).to.equal(1);
    await until(() => r.fe.irqs.includes(1), 'driver vector 1');
  });

  it('a driver that re-posts as fast as the device consumes cannot monopolise the event loop', async () => {
    const { r, q0 } = await liveRig();
    rigs.push(r);
    const h = r.ops.sessions[0].queues[0]!;
    let pops = 0;
    let refills = 0;
    let popsBeforeTurn = -1;
    h.onAvailable = () => {
      for (let c = h.pop(); c !== null; c = h.pop()) {
        if (pops++ === 0) setImmediate(() => (popsBeforeTurn = pops)); // the next event-loop turn
        h.push(c, 0);
        h.flush();
        // The driver collects and re-posts at once, as a peer on another CPU can (bounded here).
        for (const _u of q0.readUsed()) {
          if (refills++ < 5000) {
            q0.addChain([{ addr: 0x3000, len: 16, write: true }]);
            q0.publish();
          }
        }
      }
    };
    for (let i = 0; i < 8; i++) q0.addChain([{ addr: 0x3000, len: 16, write: true }]);
    kick(r, q0, 1);
    await until(() => popsBeforeTurn >= 0, 'an event-loop turn');
    expect(popsBeforeTurn).to.be.at.most(8); // one queue's worth per call, then the loop runs
    await until(() => pops === 8 + 5000, 'every re-posted chain served on later turns');
  });

  /**
   * A live session whose queue 0 (256 entries) is served by a device that pushes every chain it
   * pops and flushes at the end of each wake-up; `seen` gets, after each push, the used index the
   * driver can see at that moment.
   */
  async function publishingRig(eventIdx = false) {
    const EVENT_IDX = 1 << 29;
    const ops = echoOps(3, eventIdx ? BigInt(EVENT_IDX) : 0n);
    ops.queueMaxSize = () => 256;
    const r = await queueRig({ size: 1 << 20 }, ops);
    rigs.push(r);
    await negotiate(r.fe, eventIdx ? 1 | EVENT_IDX : 1);
    const q0 = await setupQueue(r, 0, packedRingAddresses(256, 0x1000), 1);
    await setupQueue(r, 1, packedRingAddresses(8, 0x4000), 2);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
    const h = r.ops.sessions[0].queues[0]!;
    // Every doorbell the back-end rings for queue 0 (vector 1), counted as it is rung (interrupts
    // themselves coalesce like eventfds and cannot be counted).
    const bells = { n: 0 };
    const ring = r.be.doorbell.bind(r.be);
    r.be.doorbell = (target: number, vector: number) => {
      if (vector === 1) bells.n++;
      ring(target, vector);
    };
    const seen: number[] = [];
    const bellsSeen: number[] = [];
    let bellsAtFlush = -1;
    h.onAvailable = () => {
      for (let c = h.pop(); c !== null; c = h.pop()) {
        h.push(c, 0);
        seen.push(q0.usedIdx());
        bellsSeen.push(bells.n);
      }
      bellsAtFlush = bells.n;
      h.flush();
    };
    return { r, q0, seen, bells, bellsSeen, bellsBeforeFlush: () => bellsAtFlush };
  }

  /** Queue `n` chains of `len` readable bytes each (all over the same bytes) on `q0`. */
  function postLarge(q0: MockDriver, n: number, len: number): void {
    for (let i = 0; i < n; i++) q0.addChain([{ addr: 0x10000, len }]);
  }

  it('a long batch publishes used entries before the device flushes (every size/8 pushes, ≥ 16)', async () => {
    const { r, q0, seen } = await publishingRig();
    for (let i = 0; i < 100; i++) q0.addChain([{ addr: 0x8000 + 16 * i, len: 16 }]);
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 100, 'all used');
    // 256 / 8 = 32: published after the 32nd, 64th and 96th push, before the final flush.
    expect(seen[30]).to.equal(0);
    expect(seen[31]).to.equal(32);
    expect(seen[63]).to.equal(64);
    expect(seen[98]).to.equal(96);
  });

  it('a batch of large chains publishes each one once 64 KiB were consumed (PUBLISH_BYTES), not at the count', async () => {
    const { r, q0, seen } = await publishingRig();
    // Three 32 KiB chains, then a 64 KiB one, then small ones: published after the 2nd (64 KiB
    // together), then after the 64 KiB chain on its own; the small ones wait for the flush.
    const sizes = [32768, 32768, 32768, 65536, 16, 16];
    let at = 0x10000;
    for (const len of sizes) {
      q0.addChain([{ addr: at, len }]);
      at += len;
    }
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === sizes.length, 'all used');
    expect(seen).to.deep.equal([0, 2, 2, 4, 4, 4]);
  });

  it('large chains are published one by one, but the driver is notified once, at the flush (notifyOwed)', async () => {
    const { r, q0, seen, bells, bellsSeen, bellsBeforeFlush } = await publishingRig();
    postLarge(q0, 5, 65536);
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 5, 'all used');
    expect(seen).to.deep.equal([1, 2, 3, 4, 5]); // each published at once (PUBLISH_BYTES)
    expect(bellsSeen).to.deep.equal([0, 0, 0, 0, 0]); // none of those publications rang
    expect(bellsBeforeFlush()).to.equal(0);
    expect(bells.n).to.equal(1); // the flush rang once for all five
  });

  it('a long batch of large chains still notifies at the count rule (every size/8 pushes)', async () => {
    const { r, q0, bells, bellsSeen } = await publishingRig();
    postLarge(q0, 40, 65536);
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 40, 'all used');
    // 256 / 8 = 32: the 32nd push rings (a sleeping driver refills while the device goes on);
    // the flush rings for the other 8. The byte rule alone rang 40 times.
    expect(bellsSeen[30]).to.equal(0);
    expect(bellsSeen[31]).to.equal(1);
    expect(bellsSeen[39]).to.equal(1);
    expect(bells.n).to.equal(2);
  });

  it('EVENT_IDX: a notification due at a byte-rule publication is sent at the flush, not lost', async () => {
    const { r, q0, seen, bells, bellsBeforeFlush } = await publishingRig(true);
    // used_event 0: the driver wants to hear once used.idx passes 0. The first chain's publication
    // crosses it; the later ones (and the flush's own publication) do not cross it again.
    q0.setUsedEvent(0);
    postLarge(q0, 3, 65536);
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 3, 'all used');
    expect(seen).to.deep.equal([1, 2, 3]);
    expect(bellsBeforeFlush()).to.equal(0);
    await until(() => bells.n >= 1, 'the owed notification, at the flush');
    await drain();
    expect(bells.n).to.equal(1);
  });

  it('a device that returns without its flush still notifies for what the byte rule published', async () => {
    const { r, q0, bells } = await publishingRig();
    const h = r.ops.sessions[0].queues[0]!;
    let pushed = 0;
    h.onAvailable = () => {
      for (let c = h.pop(); c !== null; c = h.pop()) {
        h.push(c, 0);
        pushed++;
      } // no flush(): the byte rule published each chain
    };
    postLarge(q0, 2, 65536);
    kick(r, q0, 1);
    await until(() => pushed === 2, 'both pushed');
    expect(q0.usedIdx()).to.equal(2);
    await until(() => bells.n >= 1, 'a notification at the end of the callback');
    await drain();
    expect(bells.n).to.equal(1);
  });

  it('notifies transmit-style completions too (used len 0, queue 1 on vector 2)', async () => {
    const { r, q1 } = await liveRig();
    rigs.push(r);
    put(r, 0x2100, 'out');
    q1.addChain([{ addr: 0x2100, len: 3 }]);
    r.fe.irqs.length = 0;
    kick(r, q1, 2);
    await until(() => q1.usedIdx() === 1, 'used entry');
    expect(q1.readUsed()).to.deep.equal([{ id: 0, len: 0 }]);
    await until(() => r.fe.irqs.includes(2), 'driver vector 2');
  });

  it('services queues on any vector (kick on vector 0 with a single-vector link)', async () => {
    const { r, q0 } = await liveRig({ vectors: 1 });
    rigs.push(r);
    q0.addChain([{ addr: 0x3000, len: 4, write: true }, { addr: 0x3004, len: 4, write: true }]);
    kick(r, q0, 0);
    await until(() => q0.usedIdx() === 1, 'used entry');
  });

  it('honours avail.flags NO_INTERRUPT (no doorbell, used.idx still published)', async () => {
    const { r, q0 } = await liveRig();
    rigs.push(r);
    q0.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    r.fe.irqs.length = 0;
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 1, 'used entry');
    await drain();
    expect(r.fe.irqs).to.not.include(1);
    expect(r.fe.r8(HDR_QUEUE_EVENT)).to.equal(0);
  });

  it('negotiates EVENT_IDX and suppresses by used_event', async () => {
    const { r, q0 } = await liveRig({}, echoOps(3, 1n << 29n), 1 | (1 << 29));
    rigs.push(r);
    expect(r.ops.sessions[0].features & (1n << 29n)).to.equal(1n << 29n);
    q0.setUsedEvent(5); // only interested once used.idx passes 5
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    r.fe.irqs.length = 0;
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 1, 'used entry');
    await drain();
    expect(r.fe.irqs).to.not.include(1);
  });

  it('a disabled queue is forgotten: its handle pops nothing', async () => {
    const { r, q0 } = await liveRig();
    rigs.push(r);
    const handle = r.ops.sessions[0].queues[0]!;
    await r.fe.txn(HDR_QUEUE_SEL, 4, 0);
    await r.fe.txn(HDR_QUEUE_ENABLE, 4, 0);
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    q0.publish();
    expect(handle.pop()).to.equal(null);
    expect(q0.usedIdx()).to.equal(0);
  });

  it('a chain written after its push copies nothing into the driver\'s reused buffer', async () => {
    const { r, q0 } = await liveRig();
    rigs.push(r);
    const handle = r.ops.sessions[0].queues[0]!;
    handle.onAvailable = null;
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    q0.publish();
    const chain = handle.pop()!;
    expect(chain.write(Buffer.from('used'))).to.equal(4);
    handle.push(chain, 4);
    handle.flush();
    put(r, 0x3000, 'mine');
    expect(chain.write(Buffer.from('late'))).to.equal(0);
    expect(get(r, 0x3000, 4)).to.equal('mine');
  });

  for (const [how, off, value] of [
    ['queue_enable := 0', HDR_QUEUE_ENABLE, 0],
    ['status 0', HDR_DEVICE_STATUS, 0],
  ] as const) {
    it(`a chain the device still holds after ${how} writes nothing into the old buffer (§4.3, §4.5)`, async () => {
      const { r, q0 } = await liveRig();
      rigs.push(r);
      const handle = r.ops.sessions[0].queues[0]!;
      handle.onAvailable = null; // this device holds its chains instead of answering at once
      q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
      q0.publish();
      const chain = handle.pop()!;
      expect(chain.writableLength).to.equal(4);
      const early = chain.writableSegments()[0];
      if (off === HDR_QUEUE_ENABLE) await r.fe.txn(HDR_QUEUE_SEL, 4, 0);
      await r.fe.txn(off, 4, value);
      put(r, 0x3000, 'mine'); // the driver reuses its buffer once the transaction completed
      expect(chain.write(Buffer.from('late'))).to.equal(0);
      expect(get(r, 0x3000, 4)).to.equal('mine');
      // Every entry point is revoked: no views handed out any more (the refusal names the
      // stopped queue), nothing read, push inert.
      expect(() => chain.writableSegments()).to.throw(RingError, /stopped queue/).with.property('code', 'VSHM_ERR_SESSION_DEAD');
      expect(() => chain.readableSegments()).to.throw(RingError, /stopped queue/).with.property('code', 'VSHM_ERR_SESSION_DEAD');
      expect(chain.read(new Uint8Array(4))).to.equal(0);
      handle.push(chain, 0);
      handle.flush();
      expect(q0.usedIdx()).to.equal(0);
      expect(r.needs).to.deep.equal([]);
      // What cannot be revoked (device-api.ts, DeviceChain.readableSegments): a view taken
      // before the end still maps the old buffer — a device must drop it in deactivate.
      expect(early.length).to.equal(4);
      expect(Buffer.from(early).toString()).to.equal('mine');
    });
  }

  it('touches no old ring after a completed status-0 transaction (§8 item 32)', async () => {
    const { r, q0, a0, a1 } = await liveRig();
    rigs.push(r);
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 1, 'used entry');
    const handle = r.ops.sessions[0].queues[0]!;
    await r.fe.txn(HDR_DEVICE_STATUS, 4, 0);
    expect(r.ops.ends).to.deep.equal(['driver-reset']);
    // Poison both old queues: hostile descriptors, avail.idx jumps, everything a read would trip on.
    const from = a0.desc;
    const to = a1.desc + packedRingBytes(8);
    r.mem.u8.fill(0xee, from, to);
    const before = Buffer.from(r.mem.u8);
    for (let v = 0; v < 3; v++) r.feDev.doorbell(0, v);
    await drain();
    r.backend.poll();
    expect(handle.pop()).to.equal(null);
    handle.flush();
    expect(Buffer.compare(Buffer.from(r.mem.u8), before)).to.equal(0);
    expect(r.needs).to.deep.equal([]);
    expect(r.fe.r32(HDR_DEVICE_STATUS)).to.equal(0);
  });

  it('recovers after reset: a fresh negotiation and queues work again', async () => {
    const { r } = await liveRig();
    rigs.push(r);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, 0);
    await negotiate(r.fe, 1);
    const q0 = await setupQueue(r, 0, packedRingAddresses(4, 0x1800), 1, true);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
    expect(r.ops.sessions).to.have.length(2);
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 1, 'used entry');
  });

  it('does not process queues before DRIVER_OK (§4.5)', async () => {
    const r = await queueRig();
    rigs.push(r);
    await negotiate(r.fe, 1);
    const q0 = await setupQueue(r, 0, packedRingAddresses(8, 0x1000), 1);
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    kick(r, q0, 1);
    await drain();
    expect(q0.usedIdx()).to.equal(0);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
    await until(() => q0.usedIdx() === 1, 'used entry after DRIVER_OK');
  });

  it('a device callback exception is a violation (§6.3)', async () => {
    const ops = echoOps();
    const { r, q0 } = await liveRig({}, ops);
    rigs.push(r);
    r.ops.sessions[0].queues[0]!.onAvailable = () => {
      throw new Error('device bug');
    };
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    kick(r, q0, 1);
    await until(() => r.needs.length === 1, 'needs-reset');
    expect(r.fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(S.DEVICE_NEEDS_RESET);
    expect(r.ends).to.deep.equal(['needs-reset']);
  });

  it('chains with NEXT across several descriptors are read in order', async () => {
    const { r, q0 } = await liveRig();
    rigs.push(r);
    put(r, 0x2000, 'ab');
    put(r, 0x2010, 'cd');
    q0.addChain([{ addr: 0x2000, len: 2 }, { addr: 0x2010, len: 2 }, { addr: 0x3000, len: 2, write: true }, { addr: 0x3010, len: 2, write: true }]);
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 1, 'used entry');
    expect(get(r, 0x3000, 2) + get(r, 0x3010, 2)).to.equal('abcd');
    void VIRTQ_DESC_F_NEXT;
  });
});

describe('VirtioBackend: isolated layout (§5.2, §8 items 28, 37)', () => {
  const loop = { size: 256 * 1024, outputSectionSize: 64 * 1024 };
  // RW = 124 KiB: BE section at window 0x1F000, FE section at 0x2F000.
  const BE_OUT = 0x1f000;
  const FE_OUT = 0x2f000;

  it('resolves addresses into output sections and zeroes a used ring in the BE section at enable', async () => {
    const r = await queueRig(loop);
    rigs.push(r);
    await negotiate(r.fe, 1);
    const q = { size: 8, desc: FE_OUT, avail: FE_OUT + 0x100, used: BE_OUT };
    r.mem.u8.fill(0x77, BE_OUT, BE_OUT + 0x100);
    const d = await setupQueue(r, 0, q, 1);
    expect(r.mem.u8.subarray(BE_OUT, BE_OUT + 6 + 8 * 8).every((b) => b === 0)).to.equal(true);
    expect(r.mem.u8[BE_OUT + 6 + 8 * 8]).to.equal(0x77);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
    put(r, FE_OUT + 0x1000, 'iso');
    d.addChain([{ addr: FE_OUT + 0x1000, len: 3 }, { addr: BE_OUT + 0x1000, len: 8, write: true }]);
    kick(r, d, 1);
    await until(() => d.usedIdx() === 1, 'used entry');
    expect(get(r, BE_OUT + 0x1000, 3)).to.equal('iso');
  });

  it('with enforceIsolation, a used ring in the R/W section is a violation', async () => {
    const r = await queueRig(loop, echoOps(), { enforceIsolation: true });
    rigs.push(r);
    await negotiate(r.fe, 1);
    await setupQueue(r, 0, { size: 8, desc: FE_OUT, avail: FE_OUT + 0x100, used: 0x1000 }, 1);
    expect(r.fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(S.DEVICE_NEEDS_RESET);
    expect(r.needs[0]).to.have.property('code', 'VSHM_ERR_RING_BOUNDS');
  });

  it('without enforcement the Linux layout (all in R/W) still works', async () => {
    const { r, q0 } = await liveRig(loop);
    rigs.push(r);
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 1, 'used entry');
  });
});
