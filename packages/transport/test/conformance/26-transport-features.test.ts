/**
 * §8 item 26 (BE half): the BE offers VERSION_1 and ACCESS_PLATFORM (and ORDER_PLATFORM), never
 * RING_PACKED, whatever the device offers; a device cannot smuggle transport bits in.
 */
import { expect } from 'chai';
import { createLoopbackPair } from '../../src/testing/loopback.js';
import { VirtioBackend } from '../../src/virtio/backend.js';
import { ArgumentError } from '../../src/errors.js';
import { HDR_DEVICE_FEATURES, HDR_DEVICE_FEATURES_SEL } from '../../src/virtio/header.js';
import { queueRig, type QueueRig } from '../fixtures/backend-rig.js';
import { consoleLikeOps } from '../fixtures/backend-devices.js';

describe('conformance 26 (transport): offered features', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  for (const extra of [0n, 1n << 28n, 1n << 29n, (1n << 28n) | (1n << 29n) | 0xffffffn]) {
    it(`device bits 0x${extra.toString(16)}: high word 0x13, RING_PACKED clear`, async () => {
      const ops = consoleLikeOps(extra);
      r = await queueRig({}, ops);
      await r.fe.txn(HDR_DEVICE_FEATURES_SEL, 4, 1);
      const high = r.fe.r32(HDR_DEVICE_FEATURES);
      expect(high & 0x1, 'VERSION_1').to.equal(0x1);
      expect(high & 0x2, 'ACCESS_PLATFORM').to.equal(0x2);
      expect(high & 0x4, 'RING_PACKED').to.equal(0);
      expect(high).to.equal(0x13);
      await r.fe.txn(HDR_DEVICE_FEATURES_SEL, 4, 0);
      expect(r.fe.r32(HDR_DEVICE_FEATURES)).to.equal(Number(ops.features & 0xffffffffn));
      expect(r.backend.offeredFeatures).to.equal(ops.features | (0x13n << 32n));
    });
  }

  it('refuses a device that offers RING_PACKED or other transport bits itself', () => {
    const [be, fe] = createLoopbackPair({ protocol: 0x8003 });
    try {
      for (const bit of [24n, 32n, 34n, 35n, 41n]) {
        expect(() => new VirtioBackend(be, consoleLikeOps(1n << bit)), `bit ${bit}`).to.throw(ArgumentError);
      }
    } finally {
      be.close();
      fe.close();
    }
  });
});
