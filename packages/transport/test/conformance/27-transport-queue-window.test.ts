/**
 * §8 item 27: `queue_sel` loads the window (size 0 for a non-existent queue), and the Linux FE's
 * 4-byte `queue_enable` stores (:= 1 clobbering 0x28–0x29, := 0 on teardown) are accepted.
 */
import { expect } from 'chai';
import {
  HDR_DEVICE_STATUS, HDR_QUEUE_DESC, HDR_QUEUE_DEVICE, HDR_QUEUE_DEVICE_VECTOR, HDR_QUEUE_DRIVER, HDR_QUEUE_DRIVER_VECTOR, HDR_QUEUE_ENABLE,
  HDR_QUEUE_SEL, HDR_QUEUE_SIZE,
} from '../../src/virtio/header.js';
import { packedRingAddresses } from '../../src/ring/ring-layout.js';
import { LIVE, S, kick, negotiate, queueRig, setupQueue, type QueueRig } from '../fixtures/backend-rig.js';
import { until } from '../fixtures/until.js';

describe('conformance 27 (transport): queue window and Linux queue_enable stores', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it('loads offered queues and an all-zero window for absent ones', async () => {
    r = await queueRig();
    const fe = r.fe;
    const win = () => [fe.r16(HDR_QUEUE_SIZE), fe.r16(HDR_QUEUE_DEVICE_VECTOR), fe.r16(HDR_QUEUE_DRIVER_VECTOR), fe.r16(HDR_QUEUE_ENABLE), fe.r64(HDR_QUEUE_DESC), fe.r64(HDR_QUEUE_DRIVER), fe.r64(HDR_QUEUE_DEVICE)];
    await fe.txn(HDR_QUEUE_SEL, 4, 1);
    expect(win()).to.deep.equal([8, 2, 0, 0, 0n, 0n, 0n]);
    for (const sel of [2, 3, 0xffff, 0xffffffff]) {
      fe.store(HDR_QUEUE_SIZE, 2, 0xabcd);
      await fe.txn(HDR_QUEUE_SEL, 4, sel);
      expect(win(), `sel ${sel}`).to.deep.equal([0, 0, 0, 0, 0n, 0n, 0n]);
    }
  });

  it('a 4-byte enable := 1 uses the recorded queue_desc, and 4-byte := 0 stops the queue', async () => {
    r = await queueRig();
    await negotiate(r.fe, 1);
    // The 4-byte store zeroes the header's queue_desc bytes 0x28–0x29 (0x1510 reads 0x1500 there).
    const q = { ...packedRingAddresses(8, 0x1000), desc: 0x1510 };
    const d = await setupQueue(r, 0, q, 1, true);
    expect(r.fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(0);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
    r.mem.u8.set([7, 8, 9], 0x2000);
    d.addChain([{ addr: 0x2000, len: 3 }, { addr: 0x3000, len: 4, write: true }]);
    kick(r, d, 1);
    await until(() => d.usedIdx() === 1, 'used entry through the latched descriptor table');
    expect(d.readUsed()).to.deep.equal([{ id: 0, len: 3 }]); // a table read at 0x1500 would give len 0
    await r.fe.txn(HDR_QUEUE_ENABLE, 4, 0);
    expect(r.fe.r16(HDR_QUEUE_ENABLE)).to.equal(0);
    expect(r.needs).to.deep.equal([]);
  });
});
