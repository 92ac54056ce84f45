/**
 * §8 item 32: after a completed status-0 transaction the BE touches no old ring. The old rings
 * are poisoned after the reset (every read would trip §6.3, every write would show), then every
 * vector is rung and the BE polled: nothing changes and no violation is raised.
 */
import { expect } from 'chai';
import { HDR_DEVICE_STATUS } from '../../src/virtio/header.js';
import { packedRingBytes } from '../../src/ring/ring-layout.js';
import { kick, liveRig, type QueueRig } from '../fixtures/backend-rig.js';
import { until, turn } from '../fixtures/until.js';

describe('conformance 32 (transport): no old ring after reset', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it('leaves poisoned old rings and buffers untouched', async () => {
    const live = await liveRig();
    r = live.r;
    const { q0, a0 } = live;
    // One chain completed, one still in flight when the driver resets.
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    kick(r, q0, 1);
    await until(() => q0.usedIdx() === 1, 'used entry');
    const handle = r.ops.sessions[0].queues[0]!;
    handle.onAvailable = null; // the device stops taking chains
    q0.addChain([{ addr: 0x3100, len: 4, write: true }]);
    q0.publish();
    const held = handle.pop();
    expect(held).to.not.equal(null);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, 0);
    // Poison: descriptor tables, avail and used rings of both queues, and the buffers.
    r.mem.u8.fill(0xee, a0.desc, a0.desc + 0x400 + packedRingBytes(8));
    r.mem.u8.fill(0xee, 0x3000, 0x3200);
    const before = Buffer.from(r.mem.u8);
    for (let v = 0; v < 3; v++) r.feDev.doorbell(0, v);
    for (let i = 0; i < 5; i++) await turn();
    r.backend.poll();
    // The device's stale handle is inert too.
    expect(handle.pop()).to.equal(null);
    handle.push(held!, 4);
    handle.flush();
    expect(Buffer.compare(Buffer.from(r.mem.u8), before)).to.equal(0);
    expect(r.needs).to.deep.equal([]);
  });
});
