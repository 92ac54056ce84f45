/**
 * §8 item 28: ring and buffer addresses resolve from the R/W start, also into output sections.
 */
import { expect } from 'chai';
import { HDR_DEVICE_STATUS } from '../../src/virtio/header.js';
import { LIVE, kick, negotiate, queueRig, setupQueue, type QueueRig } from '../fixtures/backend-rig.js';
import { until } from '../fixtures/until.js';

describe('conformance 28 (transport): addresses are window offsets', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it('serves rings and buffers in the R/W section and in both output sections', async () => {
    // -l 256K -o 64K: RW 124 KiB; BE section at 0x1F000, FE section at 0x2F000 (§5.2 example).
    r = await queueRig({ size: 256 * 1024, outputSectionSize: 64 * 1024 });
    expect([r.be.layout.rwSize, r.be.layout.windowOutputOffset(0), r.be.layout.windowOutputOffset(1)]).to.deep.equal([0x1f000, 0x1f000, 0x2f000]);
    await negotiate(r.fe, 1);
    const d = await setupQueue(r, 0, { size: 8, desc: 0x2f000, avail: 0x1000, used: 0x1f100 }, 1);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
    const u8 = r.mem.u8;
    u8.set([1, 2, 3], 0x2f800); // readable in the FE section
    u8.set([4, 5], 0x2000); // readable in R/W
    d.addChain([
      { addr: 0x2f800, len: 3 },
      { addr: 0x2000, len: 2 },
      { addr: 0x1f800, len: 3, write: true }, // BE section
      { addr: 0x3000, len: 2, write: true }, // R/W
    ]);
    kick(r, d, 1);
    await until(() => d.usedIdx() === 1, 'used entry in the BE section');
    expect([...u8.subarray(0x1f800, 0x1f803), ...u8.subarray(0x3000, 0x3002)]).to.deep.equal([1, 2, 3, 4, 5]);
    expect(d.readUsed()).to.deep.equal([{ id: 0, len: 5 }]);
  });
});
