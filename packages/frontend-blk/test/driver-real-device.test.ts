/**
 * The two real halves in one process: BlockDriver (this package) against BlockDevice
 * (@vshm/backend-blk) on a temporary raw image, over the transport's loopback pair with the real
 * VirtioBackend / VirtioFrontend between them. Every request type, many requests in flight,
 * completions forced out of order through the back-end's file-I/O seam, and the bytes checked in
 * the image FILE.
 *
 * Multiqueue: with `queues: N` the driver accepts MQ and spreads calls over min(N, num_queues)
 * queues; by default it uses one queue and does not accept MQ — both tested below.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { VirtioBackend, VirtioFrontend, type IvshmemDevice } from '@vshm/transport';
import { createLoopbackPair, Prng } from '@vshm/transport/testing';
import { BlkFeature, hasFeature } from 'virtio-spec-types';
import { BlockDevice, type BlockDeviceOptions } from '../../backend-blk/src/device.js';
import { openImage, type ImageFile } from '../../backend-blk/src/image.js';
import { SeamImage, TempImage, pattern } from '../../backend-blk/test/fixtures/rig.js';
import { BlockDriver } from '../src/driver.js';
import { until } from '../../transport/test/fixtures/until.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Pair {
  img: TempImage;
  image: ImageFile;
  seam: SeamImage;
  device: BlockDevice;
  driver: BlockDriver;
  close(): Promise<void>;
}

async function pair(bytes: number, devOpts: BlockDeviceOptions = {}, memory = 16 * MiB, driverQueues = 1): Promise<Pair> {
  const img = new TempImage(bytes);
  const image = await openImage(img.path, { readOnly: devOpts.readOnly });
  const seam = new SeamImage(image);
  const device = new BlockDevice(seam, await image.size(), devOpts);
  const driver = new BlockDriver({ queues: driverQueues });
  const [be, fe]: IvshmemDevice[] = createLoopbackPair({ protocol: 0x8002, size: memory, vectors: 2 + Math.max(1, devOpts.queues ?? 1) });
  const backend = new VirtioBackend(be, device);
  backend.start();
  const frontend = new VirtioFrontend(fe, driver, { readyPollMs: 5 });
  frontend.start().catch(() => undefined);
  await driver.whenReady();
  return {
    img, image, seam, device, driver,
    async close() {
      driver.close();
      await frontend.close();
      await backend.close();
      be.close();
      fe.close();
      await device.drain();
      await image.close();
      img.remove();
    },
  };
}

describe('BlockDriver ↔ BlockDevice (both real halves, loopback pair, image file)', function () {
  this.timeout(60000);
  let p: Pair | null = null;
  afterEach(async () => {
    await p?.close();
    p = null;
  });

  it('negotiates what both sides offer; capacity, block size, serial', async () => {
    p = await pair(8 * MiB, { serial: 'real-pair' });
    const g = p.driver.geometry!;
    expect(g.capacity).to.equal(8 * MiB);
    expect(g).to.include({ readOnly: false, flush: true, discard: true, writeZeroes: true, indirect: true, blockSize: 512 });
    expect(g.segmentSize).to.equal(p.device.sizeMax);
    expect(await p.driver.serial()).to.equal('real-pair');
  });

  it('every op reaches the file: write, read, flush, discard, write-zeroes (with and without unmap)', async () => {
    p = await pair(8 * MiB);
    const d = p.driver;
    const data = pattern(3 * MiB + 512, 9); // several driver splits, many SIZE_MAX segments
    await d.write(512, data);
    expect((await d.read(512, data.length)).equals(data)).to.equal(true);
    await d.flush();
    expect(p.seam.log).to.include('datasync-done');
    let f = readFileSync(p.img.path);
    expect(f.subarray(512, 512 + data.length).equals(data)).to.equal(true);
    await d.discard(MiB, 64 * KiB);
    await d.writeZeroes(2 * MiB, 128 * KiB);
    await d.writeZeroes(3 * MiB - 4096, 4096, { unmap: true });
    f = readFileSync(p.img.path);
    expect(f.subarray(MiB, MiB + 64 * KiB).every((b) => b === 0)).to.equal(true);
    expect(f.subarray(2 * MiB, 2 * MiB + 128 * KiB).every((b) => b === 0)).to.equal(true);
    expect(f.subarray(3 * MiB - 4096, 3 * MiB).every((b) => b === 0)).to.equal(true);
    expect((await d.read(2 * MiB + 128 * KiB, 512)).equals(data.subarray(2 * MiB + 128 * KiB - 512, 2 * MiB + 128 * KiB))).to.equal(true);
    const done = p.device.stats.completed;
    for (const op of ['in', 'out', 'flush', 'discard', 'write-zeroes']) expect(done[op] ?? 0, op).to.be.greaterThan(0);
  });

  it('read(offset, length, into): the data lands in the caller buffer, which is reused; a short one is refused', async () => {
    p = await pair(2 * MiB);
    const data = pattern(MiB, 21);
    await p.driver.write(0, data);
    const into = Buffer.alloc(MiB + 512, 0xee);
    const got = await p.driver.read(0, MiB, into);
    expect(got.buffer).to.equal(into.buffer);
    expect(into.subarray(0, MiB).equals(data)).to.equal(true);
    expect(into[MiB]).to.equal(0xee); // nothing past length
    const again = await p.driver.read(512, 4096, into);
    expect(again.equals(data.subarray(512, 4608))).to.equal(true);
    const err = await p.driver.read(0, 8192, Buffer.alloc(4096)).then(() => null, (e: Error & { code?: string }) => e);
    expect(err?.code).to.equal('VSHM_ERR_ARGUMENT');
  });

  it('many requests in flight (random 4 KiB…256 KiB writes then reads, 200 at once) match a model of the disk', async () => {
    p = await pair(16 * MiB);
    const d = p.driver;
    const rng = new Prng(11);
    const model = Buffer.alloc(16 * MiB);
    // Non-overlapping slots, so completion order cannot change the result.
    const slots = Array.from({ length: 64 }, (_, i) => i * 256 * KiB);
    const writes: Promise<void>[] = [];
    for (const off of slots) {
      const len = (1 + rng.int(512)) * 512;
      const buf = pattern(len, rng.int(1000));
      buf.copy(model, off);
      writes.push(d.write(off, buf));
    }
    await Promise.all(writes);
    const reads = Array.from({ length: 200 }, () => {
      const off = rng.int(16 * MiB / 512 - 64) * 512;
      return d.read(off, 32 * KiB).then((b) => expect(b.equals(model.subarray(off, off + 32 * KiB))).to.equal(true));
    });
    await Promise.all(reads);
    expect(p.device.stats.peakInFlight).to.be.greaterThan(1);
    await d.flush();
    expect(readFileSync(p.img.path).equals(model)).to.equal(true);
  });

  it('out-of-order completions: a held write completes after later ones, each request still gets its own result', async () => {
    p = await pair(4 * MiB);
    const d = p.driver;
    const a = pattern(4096, 1);
    const b = pattern(4096, 2);
    p.seam.hold(0);
    const order: string[] = [];
    const wa = d.write(0, a).then(() => order.push('a'));
    await until(() => p!.seam.waiting(0), 'the write at 0 held in the image seam');
    const wb = d.write(MiB, b).then(() => order.push('b'));
    const rb = d.read(MiB, 4096);
    await wb;
    expect((await rb).equals(b) || (await rb).every((x) => x === 0)).to.equal(true);
    expect(order).to.deep.equal(['b']);
    // flush() waits for the held write: it cannot complete before 'a'.
    const fl = d.flush().then(() => order.push('flush'));
    p.seam.release(0);
    await Promise.all([wa, fl]);
    expect(order).to.deep.equal(['b', 'a', 'flush']);
    expect((await d.read(0, 4096)).equals(a)).to.equal(true);
  });

  it('an image I/O error fails that request only (VSHM_ERR_BLK_IO); the next one works', async () => {
    p = await pair(1 * MiB);
    p.seam.failNext = { op: 'write', code: 'EIO' };
    const err = await p.driver.write(0, pattern(4096, 3)).then(() => null, (e: Error & { code?: string }) => e);
    expect(err?.code).to.equal('VSHM_ERR_BLK_IO');
    await p.driver.write(0, pattern(4096, 4));
    expect((await p.driver.read(0, 4096)).equals(pattern(4096, 4))).to.equal(true);
  });

  it('read-only device: writes refused in the driver (VSHM_ERR_BLK_READ_ONLY), reads served, the file untouched', async () => {
    p = await pair(1 * MiB, { readOnly: true });
    expect(p.driver.readOnly).to.equal(true);
    const err = await p.driver.write(0, Buffer.alloc(512, 1)).then(() => null, (e: Error & { code?: string }) => e);
    expect(err?.code).to.equal('VSHM_ERR_BLK_READ_ONLY');
    expect((await p.driver.read(0, 512)).every((b) => b === 0)).to.equal(true);
  });

  it('MQ: a driver asking for 8 queues against a 4-queue device uses 4; 400 mixed calls spread over them match a model', async () => {
    p = await pair(8 * MiB, { queues: 4 }, 16 * MiB, 8);
    expect(p.driver.queuesInUse).to.equal(4);
    expect(hasFeature(p.driver.features, BlkFeature.MQ)).to.equal(true);
    const d = p.driver;
    const rng = new Prng(77);
    const model = Buffer.alloc(8 * MiB);
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 64; i++) {
      const off = i * 128 * KiB;
      const buf = pattern(128 * KiB, i);
      buf.copy(model, off);
      calls.push(d.write(off, buf));
    }
    await Promise.all(calls);
    const reads = Array.from({ length: 400 }, () => {
      const off = rng.int(8 * MiB / 512 - 16) * 512;
      return d.read(off, 8 * KiB).then((b) => expect(b.equals(model.subarray(off, off + 8 * KiB))).to.equal(true));
    });
    await Promise.all(reads);
    await d.flush();
    expect(readFileSync(p.img.path).equals(model)).to.equal(true);
  });

  it('a device offering MQ with 4 queues: the driver (one queue, no MQ) negotiates without MQ and is served on queue 0', async () => {
    p = await pair(1 * MiB, { queues: 4 });
    expect(p.device.features & (1n << BigInt(BlkFeature.MQ))).to.not.equal(0n);
    expect(hasFeature(p.driver.features, BlkFeature.MQ)).to.equal(false);
    expect(p.driver.queuesInUse).to.equal(1);
    await p.driver.write(0, pattern(8192, 5));
    expect((await p.driver.read(0, 8192)).equals(pattern(8192, 5))).to.equal(true);
    expect(p.device.stats.completed.out).to.equal(1);
  });
});
