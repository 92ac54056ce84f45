/**
 * IN requests served from the page cache straight into the chain (ImageFile.readCached, the
 * addon's non-blocking preadv2): whole, in part with the rest through the asynchronous path at
 * the right offset, out of order with asynchronous reads, short at a shrunken end of file, with
 * a session ending while the rest runs, switched off, and with a readCached that throws.
 */
import { expect } from 'chai';
import { truncateSync } from 'node:fs';
import { BlkStatus } from 'virtio-spec-types';
import { LinuxLikeBlk } from '../../transport/test/fixtures/linux-like-blk.js';
import { BlockDevice, BlockOptionError } from '../src/device.js';
import { blkRig, closeRigs, pattern } from './fixtures/rig.js';
import { until } from '../../transport/test/fixtures/until.js';

const { OK, IOERR } = BlkStatus;
const asyncReads = (log: string[]): string[] => log.filter((l) => l.startsWith('read-start'));

describe('virtio-blk device: reads from the page cache straight into the request', () => {
  afterEach(closeRigs);

  it('serves a cached read whole, across data segments, with no asynchronous read', async () => {
    const r = await blkRig({ size: 1 << 20 });
    const data = pattern(256 << 10, 11);
    expect(await r.guest.write(64, data)).to.equal(OK); // just written: in the page cache
    const before = r.device.stats.cachedReads;
    const res = await r.guest.read(64, 256 << 10); // 4 segments of 64 KiB
    expect(res.status).to.equal(OK);
    expect(res.data.equals(data)).to.equal(true);
    if (r.device.stats.cachedBytes === 0) return; // TMPDIR cannot read without waiting: the old path served it
    expect(r.device.stats.cachedReads).to.equal(before + 1);
    expect(r.device.stats.cachedBytes).to.equal(256 << 10);
  });

  it('a partly cached read takes the rest through the file, written after the cached bytes', async () => {
    const r = await blkRig({ seam: true });
    const data = pattern(8192, 12);
    expect(await r.guest.write(0, data)).to.equal(OK);
    const seam = r.seam!;
    seam.enableCachedReads(() => 1536);
    seam.log.length = 0;
    const res = await r.guest.read(0, 8192);
    expect(res.status).to.equal(OK);
    expect(res.data.equals(data)).to.equal(true);
    const got = Number(seam.log.find((l) => l.startsWith('cached 0 '))?.split(' ')[2]);
    expect([0, 1536]).to.include(got); // 0 only where TMPDIR cannot read without waiting
    expect(asyncReads(seam.log)).to.deep.equal([`read-start ${got}`]);
    expect(r.device.stats.cachedReads).to.equal(0);
    expect(r.device.stats.cachedBytes).to.equal(got);
  });

  it('cached reads complete while an asynchronous read still runs, each with its own data', async () => {
    const r = await blkRig({ seam: true });
    const data = pattern(16384, 13);
    expect(await r.guest.write(0, data)).to.equal(OK);
    const seam = r.seam!;
    seam.enableCachedReads((position, length) => (position === 0 ? 0 : length));
    seam.hold(0);
    const done: string[] = [];
    const a = r.guest.read(0, 4096).then((x) => (done.push('A'), x));
    await until(() => seam.waiting(0), 'read A to reach the file');
    const b = await r.guest.read(8, 4096).then((x) => (done.push('B'), x));
    const c = await r.guest.read(24, 4096).then((x) => (done.push('C'), x));
    expect(done).to.deep.equal(['B', 'C']);
    expect(b.data.equals(data.subarray(4096, 8192))).to.equal(true);
    expect(c.data.equals(data.subarray(12288, 16384))).to.equal(true);
    seam.release(0);
    const ra = await a;
    expect(done).to.deep.equal(['B', 'C', 'A']);
    expect(ra.data.equals(data.subarray(0, 4096))).to.equal(true);
  });

  it('a file shrunk under the device: the cached read stops at its end, the rest reads as zeros', async () => {
    const r = await blkRig({ seam: true, size: 1 << 20 });
    const data = pattern(8192, 14);
    expect(await r.guest.write(0, data)).to.equal(OK);
    truncateSync(r.img.path, 4608); // no resize(): the capacity still says 1 MiB
    const seam = r.seam!;
    seam.enableCachedReads();
    seam.log.length = 0;
    const res = await r.guest.read(0, 8192);
    expect(res.status).to.equal(OK);
    expect(res.data.subarray(0, 4608).equals(data.subarray(0, 4608))).to.equal(true);
    expect(res.data.subarray(4608).equals(Buffer.alloc(8192 - 4608))).to.equal(true);
    const got = Number(seam.log.find((l) => l.startsWith('cached 0 '))?.split(' ')[2]);
    expect([0, 4608]).to.include(got);
    expect(asyncReads(seam.log)).to.deep.equal([`read-start ${got}`]);
  });

  it('a session ending while the rest of a partly cached read runs: the result is dropped, nothing broken', async () => {
    const r = await blkRig({ seam: true });
    expect(await r.guest.write(0, pattern(8192, 15))).to.equal(OK);
    const seam = r.seam!;
    seam.enableCachedReads(() => 4096);
    seam.hold(4096);
    seam.hold(0); // where TMPDIR cannot read without waiting, the whole read goes to the file
    const stale = r.guest.read(0, 8192);
    void stale.catch(() => undefined); // never completes: the driver resets
    await until(() => seam.waiting(4096) || seam.waiting(0), 'the rest of the read at the file');
    await r.guest.fe.reset();
    await until(() => !r.device.active, 'the device to deactivate');
    const guest2 = new LinuxLikeBlk(r.feDev);
    await guest2.start();
    seam.release(4096);
    seam.release(0);
    await r.device.drain();
    expect(r.device.stats.dropped).to.equal(1);
    const res = await guest2.read(0, 8192);
    expect(res.status).to.equal(OK);
    expect(res.data.equals(pattern(8192, 15))).to.equal(true);
    expect(guest2.queue.vring.badUsed).to.deep.equal([]);
    expect(r.needs).to.deep.equal([]);
  });

  it('cachedReadBudget: one wake-up reads at most that much from the cache, the rest asynchronously', async () => {
    const r = await blkRig({ seam: true, device: { cachedReadBudget: 8192 } });
    const data = pattern(12288, 18);
    expect(await r.guest.write(0, data)).to.equal(OK);
    const seam = r.seam!;
    seam.enableCachedReads();
    seam.log.length = 0;
    // Posted in one turn: the device sees all three in one pass.
    const reads = await Promise.all([0, 8, 16].map((s) => r.guest.read(s, 4096)));
    reads.forEach((x, i) => expect(x.data.equals(data.subarray(i * 4096, (i + 1) * 4096))).to.equal(true));
    const cached = seam.log.filter((l) => l.startsWith('cached'));
    if (cached.some((l) => l.endsWith(' 0'))) return; // TMPDIR cannot read without waiting
    expect(cached).to.deep.equal(['cached 0 4096', 'cached 4096 4096']);
    expect(asyncReads(seam.log)).to.deep.equal(['read-start 8192']);
    expect(r.device.stats.cachedReads).to.equal(2);
    expect(() => new (r.device.constructor as typeof BlockDevice)(r.image, 4096, { cachedReadBudget: -1 })).to.throw(BlockOptionError);
  });

  it('cachedReads: false never asks the image; every read goes through the file', async () => {
    const r = await blkRig({ seam: true, device: { cachedReads: false } });
    const seam = r.seam!;
    seam.enableCachedReads();
    expect(await r.guest.write(0, pattern(4096, 16))).to.equal(OK);
    const res = await r.guest.read(0, 4096);
    expect(res.data.equals(pattern(4096, 16))).to.equal(true);
    expect(seam.log.filter((l) => l.startsWith('cached'))).to.deep.equal([]);
    expect(asyncReads(seam.log)).to.deep.equal(['read-start 0']);
  });

  it('a readCached that throws: the asynchronous read repeats the read and reports its error', async () => {
    const r = await blkRig({ seam: true });
    const seam = r.seam!;
    seam.enableCachedReads(() => {
      throw Object.assign(new Error('EIO: injected'), { code: 'EIO' });
    });
    expect(await r.guest.write(0, pattern(4096, 17))).to.equal(OK);
    expect((await r.guest.read(0, 4096)).data.equals(pattern(4096, 17))).to.equal(true);
    seam.failNext = { op: 'read', code: 'EIO' };
    expect((await r.guest.read(0, 4096)).status).to.equal(IOERR);
    expect(r.device.stats.faults.io).to.equal(1);
    expect(r.device.stats.cachedBytes).to.equal(0);
  });
});
