/**
 * Issue 11 item 5: BlockDevice served to a double of Linux 6.1 virtio_blk over virtio_ivshmem
 * (transport/test/fixtures/linux-like-blk.ts) — request shapes, segment limits, indirect
 * descriptors, queue depth, 1 KiB bounce chunks, GET_ID, FLUSH and the power-off reset.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { BlkConfig, BlkFeature, BlkStatus, VirtioFeatureMask, featureBit } from 'virtio-spec-types';
import { LINUX_BLK_FEATURES, type LinuxLikeBlk } from '../../transport/test/fixtures/linux-like-blk.js';
import { blkRig, closeRigs, pattern } from './fixtures/rig.js';
import { until } from '../../transport/test/fixtures/until.js';
import { HDR_CONFIG, HDR_CONFIG_GENERATION } from '../../transport/src/virtio/header.js';

const { OK } = BlkStatus;

/** Every posted request has Linux's shape: header alone, data per limits, status alone. */
function checkShapes(g: LinuxLikeBlk): void {
  for (const p of g.posted) {
    expect(p.out[0]).to.equal(16);
    expect(p.in[p.in.length - 1]).to.equal(1);
    const data = [...p.out.slice(1), ...p.in.slice(0, -1)];
    expect(data.length).to.be.at.most(g.segMax);
    for (const d of data) expect(d).to.be.at.most(g.sizeMax);
  }
}

describe('Linux 6.1 virtio_blk over virtio_ivshmem (double) against BlockDevice', () => {
  afterEach(closeRigs);

  it('reads the u64 capacity as virtio_cread64 does: both halves in one generation loop, so a change between them is read again, never torn', async () => {
    const r = await blkRig({ size: 1 << 20 });
    const g = r.guest;
    const u32 = new Uint32Array(g.fe.dev.window, 0, (HDR_CONFIG + 16) >>> 2);
    const cap = (HDR_CONFIG + BlkConfig.CAPACITY) >>> 2;
    // A device update by the generation rule (odd while writing, §4.8): 2^32 − 1 sectors, then
    // 2^32 — the low half wraps to 0 as the high half becomes 1.
    const publish = (sectors: number): void => {
      Atomics.add(u32, HDR_CONFIG_GENERATION >>> 2, 1);
      Atomics.store(u32, cap, sectors % 2 ** 32);
      Atomics.store(u32, cap + 1, Math.floor(sectors / 2 ** 32));
      Atomics.add(u32, HDR_CONFIG_GENERATION >>> 2, 1);
    };
    publish(2 ** 32 - 1);
    // The update lands while the driver loads the high half (after it loaded the low one).
    const load32 = g.fe.load32.bind(g.fe);
    let updated = false;
    g.fe.load32 = (off: number): number => {
      if (off === HDR_CONFIG + BlkConfig.CAPACITY + 4 && !updated) {
        updated = true;
        publish(2 ** 32);
      }
      return load32(off);
    };
    expect(await g.readCapacity()).to.equal(2 ** 32);
    expect(updated).to.equal(true);
  });

  it('negotiates what Linux accepts, bounces in 1 KiB chunks, uses indirect tables at full queue depth', async () => {
    const r = await blkRig({ size: 16 << 20, device: { serial: 'linux-compat' } });
    const g = r.guest;
    expect(g.fe.alloc!.chunkSize).to.equal(1024);
    expect(g.features & VirtioFeatureMask.RING_INDIRECT_DESC).to.not.equal(0n);
    expect(g.features & VirtioFeatureMask.VERSION_1).to.not.equal(0n);
    expect(g.queueCount).to.equal(1);
    expect(g.depth).to.equal(g.queue.vring.size);
    expect(g.fe.mode).to.equal('per-queue');

    const data = pattern(3 << 20, 21);
    expect(await g.write(2048, data)).to.equal(OK);
    expect(await g.flush()).to.equal(OK);
    const back = await g.read(2048, data.length);
    expect(back.status).to.equal(OK);
    expect(back.data.equals(data)).to.equal(true);
    expect(readFileSync(r.img.path).subarray(2048 * 512, 2048 * 512 + data.length).equals(data)).to.equal(true);
    expect(await g.getId()).to.deep.equal({ status: OK, serial: 'linux-compat' });

    checkShapes(g);
    expect(g.queue.vring.indirectAdds).to.equal(g.posted.length);
    expect(g.posted.some((p) => p.out.length + p.in.length > 3)).to.equal(true);
    expect(g.queue.vring.badUsed).to.deep.equal([]);
    expect(g.fe.alloc!.warnings).to.deep.equal([]);
    expect(r.needs).to.deep.equal([]);
  });

  it('without INDIRECT_DESC: direct chains, queue depth size/2, many requests in flight', async () => {
    const r = await blkRig({ size: 8 << 20, features: LINUX_BLK_FEATURES & ~VirtioFeatureMask.RING_INDIRECT_DESC });
    const g = r.guest;
    expect(g.features & VirtioFeatureMask.RING_INDIRECT_DESC).to.equal(0n);
    expect(g.depth).to.equal(g.queue.vring.size / 2);
    const writes = [];
    for (let i = 0; i < 96; i++) writes.push(g.write(i * 8, pattern(4096, i)));
    expect(await Promise.all(writes)).to.deep.equal(new Array(96).fill(OK));
    expect(g.peakInFlight).to.be.greaterThan(1).and.at.most(g.depth);
    expect(g.queue.vring.indirectAdds).to.equal(0);
    const reads = [];
    for (let i = 0; i < 96; i++) reads.push(g.read(i * 8, 4096));
    const got = await Promise.all(reads);
    got.forEach((x, i) => expect(x.data.equals(pattern(4096, i)), `read ${i}`).to.equal(true));
    checkShapes(g);
    expect(r.device.stats.peakInFlight).to.be.greaterThan(1);
    expect(r.needs).to.deep.equal([]);
  });

  it('without SEG_MAX and SIZE_MAX: one data segment up to 1 MiB', async () => {
    const features = LINUX_BLK_FEATURES & ~(featureBit(BlkFeature.SEG_MAX) | featureBit(BlkFeature.SIZE_MAX));
    const r = await blkRig({ size: 4 << 20, features });
    const g = r.guest;
    expect([g.segMax, g.sizeMax]).to.deep.equal([1, 1 << 20]);
    const data = pattern(2 << 20, 5);
    expect(await g.write(0, data)).to.equal(OK);
    expect((await g.read(0, data.length)).data.equals(data)).to.equal(true);
    expect(g.posted.every((p) => p.out.length + p.in.length <= 3)).to.equal(true);
    expect(g.posted.some((p) => p.out[1] === 1 << 20)).to.equal(true);
  });

  it('read-only image: RO accepted, the guest sees a read-only disk', async () => {
    const r = await blkRig({ size: pattern(1 << 20, 9), device: { readOnly: true } });
    expect(r.guest.readOnly).to.equal(true);
    expect((await r.guest.read(0, 65536)).data.equals(pattern(1 << 20, 9).subarray(0, 65536))).to.equal(true);
  });

  it('power-off: the device_status = 0 reset is completed, the session ends, nothing breaks', async () => {
    const r = await blkRig();
    expect(await r.guest.write(0, pattern(4096, 1))).to.equal(OK);
    expect(await r.guest.flush()).to.equal(OK);
    expect(r.device.active).to.equal(true);
    await r.guest.fe.powerOff(); // throws if the reset transaction is never completed
    await until(() => !r.device.active, 'the session to end');
    expect(['driver-reset', 'driver-gone']).to.include(r.device.stats.lastEnd);
    expect(r.needs).to.deep.equal([]);
    expect(readFileSync(r.img.path).subarray(0, 4096).equals(pattern(4096, 1))).to.equal(true);
  });
});
