/**
 * §8 item 23: the console header has `revision` 1, `size` 88 and the offsets of §4.2 — pinned as
 * constants and as the golden bytes a freshly initialised VirtioBackend publishes.
 */
import { expect } from 'chai';
import * as H from '../../src/virtio/header.js';
import { queueRig, type QueueRig } from '../fixtures/backend-rig.js';
import { consoleLikeOps } from '../fixtures/backend-devices.js';

describe('conformance 23 (transport): console header layout', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it('pins every §4.2 offset and the size rule', () => {
    expect([H.HDR_REVISION, H.HDR_SIZE, H.HDR_WRITE_TRANSACTION, H.HDR_DEVICE_FEATURES, H.HDR_DEVICE_FEATURES_SEL]).to.deep.equal([0x00, 0x04, 0x08, 0x0c, 0x10]);
    expect([H.HDR_DRIVER_FEATURES, H.HDR_DRIVER_FEATURES_SEL, H.HDR_QUEUE_SEL, H.HDR_QUEUE_SIZE, H.HDR_QUEUE_DEVICE_VECTOR]).to.deep.equal([0x14, 0x18, 0x1c, 0x20, 0x22]);
    expect([H.HDR_QUEUE_DRIVER_VECTOR, H.HDR_QUEUE_ENABLE, H.HDR_QUEUE_DESC, H.HDR_QUEUE_DRIVER, H.HDR_QUEUE_DEVICE]).to.deep.equal([0x24, 0x26, 0x28, 0x30, 0x38]);
    expect([H.HDR_CONFIG_EVENT, H.HDR_QUEUE_EVENT, H.HDR_RESERVED, H.HDR_DEVICE_STATUS, H.HDR_CONFIG_GENERATION, H.HDR_CONFIG]).to.deep.equal([0x40, 0x41, 0x42, 0x44, 0x48, 0x4c]);
    expect([H.headerSize(12), H.headerSize(0), H.headerSize(13)]).to.deep.equal([88, 0x50, 0x60]);
  });

  it('publishes the golden 88-byte console header (80×25, SIZE, queues of 8, 3 vectors)', async () => {
    r = await queueRig({ vectors: 3 }, consoleLikeOps());
    const golden =
      '01000000' + '58000000' + '00000000' + '01000000' + // revision, size, write_transaction, device_features
      '00000000' + '00000000' + '00000000' + '00000000' + // device_features_sel, driver_features(_sel), queue_sel
      '0800' + '0100' + '0000' + '0000' + // queue 0: size 8, device vector 1, driver vector, enable
      '0000000000000000' + '0000000000000000' + '0000000000000000' + // desc, driver, device
      '00' + '00' + '0000' + '00000000' + '00000000' + // events, reserved, status, generation
      '5000' + '1900' + '00000000' + '00000000'; // cols 80, rows 25, max_nr_ports, emerg_wr
    expect(Buffer.from(r.be.window, 0, 88).toString('hex')).to.equal(golden);
  });
});
