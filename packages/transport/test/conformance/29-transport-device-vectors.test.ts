/**
 * §8 item 29: device vectors are 1 + i when `vectors` ≥ 1 + Q, else 0.
 */
import { expect } from 'chai';
import { HDR_QUEUE_DEVICE_VECTOR, HDR_QUEUE_SEL } from '../../src/virtio/header.js';
import { deviceVectorFor } from '../../src/virtio/vectors.js';
import { queueRig, type QueueRig } from '../fixtures/backend-rig.js';
import { consoleLikeOps } from '../fixtures/backend-devices.js';

describe('conformance 29 (transport): device vector choice', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it('deviceVectorFor follows the rule', () => {
    expect([0, 1].map((i) => deviceVectorFor(i, 2, 3))).to.deep.equal([1, 2]);
    expect([0, 1].map((i) => deviceVectorFor(i, 2, 2))).to.deep.equal([0, 0]);
    expect([0, 1, 2, 3].map((i) => deviceVectorFor(i, 4, 5))).to.deep.equal([1, 2, 3, 4]);
    expect(deviceVectorFor(3, 4, 4)).to.equal(0);
  });

  for (const [vectors, expected] of [[1, [0, 0]], [2, [0, 0]], [3, [1, 2]], [8, [1, 2]]] as const) {
    it(`console (Q = 2) with ${vectors} vectors: ${expected.join(', ')}`, async () => {
      r = await queueRig({ vectors }, consoleLikeOps());
      const got: number[] = [];
      for (const q of [0, 1]) {
        await r.fe.txn(HDR_QUEUE_SEL, 4, q);
        got.push(r.fe.r16(HDR_QUEUE_DEVICE_VECTOR));
      }
      expect(got).to.deep.equal(expected);
    });
  }

  it('Q comes from the queue count of the device', async () => {
    const ops = consoleLikeOps();
    ops.queueCount = () => 4;
    r = await queueRig({ vectors: 4 }, ops);
    await r.fe.txn(HDR_QUEUE_SEL, 4, 3);
    expect(r.fe.r16(HDR_QUEUE_DEVICE_VECTOR)).to.equal(0); // 4 < 1 + 4
  });
});
