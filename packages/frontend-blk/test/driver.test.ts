/**
 * BlockDriver against the in-memory fixture device over the loopback pair: every operation,
 * request splitting (SIZE_MAX / SEG_MAX / maxTransfer), chain vs indirect layout, in-flight
 * limits, typed errors, config (capacity) events and device loss.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { BlkRequestType as BlkType } from 'virtio-spec-types';
import { blkRig, type BlkRig } from './fixtures/blk-loopback.js';
import { rejects } from './fixtures/rejects.js';
import { until } from '../../transport/test/fixtures/until.js';

const MiB = 1024 * 1024;

describe('BlockDriver (loopback, in-memory device)', () => {
  let rig: BlkRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  for (const indirect of [false, true]) {
    it(`reads, writes, flushes and reads the serial (indirect ${indirect})`, async () => {
      rig = await blkRig({ capacity: 4 * MiB, indirect, serial: 'disk-serial-1' });
      const d = rig.driver;
      expect(d.capacity).to.equal(4 * MiB);
      expect(d.readOnly).to.equal(false);
      const data = randomBytes(64 * 1024);
      await d.write(8192, data);
      expect(rig.device.disk.subarray(8192, 8192 + data.length).equals(data)).to.equal(true);
      expect((await d.read(8192, data.length)).equals(data)).to.equal(true);
      await d.flush();
      expect(rig.device.flushes).to.equal(1);
      expect(await d.serial()).to.equal('disk-serial-1');
      // Linux's layout: header and status in descriptors of their own.
      const w = rig.device.seen.find((r) => r.type === BlkType.OUT)!;
      expect(w.readableLengths[0]).to.equal(16);
      expect(w.writableLengths).to.deep.equal([1]);
      const r = rig.device.seen.find((x) => x.type === BlkType.IN)!;
      expect(r.readableLengths).to.deep.equal([16]);
      expect(r.writableLengths[r.writableLengths.length - 1]).to.equal(1);
    });
  }

  for (const indirect of [false, true]) {
    it(`isolated layout (§5.2, OUT ≠ 0): requests and indirect tables from the FE output section (indirect ${indirect})`, async () => {
      rig = await blkRig({ capacity: 2 * MiB, indirect, sizeMax: 8192, segMax: 8 }, {}, 4 * MiB, MiB);
      const data = randomBytes(200 * 1024);
      await rig.driver.write(512, data);
      expect((await rig.driver.read(512, data.length)).equals(data)).to.equal(true);
      expect(await rig.driver.serial()).to.equal('mem-blk');
    });
  }

  it('splits by SIZE_MAX and SEG_MAX (≤ seg_max data segments of ≤ size_max bytes)', async () => {
    rig = await blkRig({ capacity: 4 * MiB, indirect: true, sizeMax: 4096, segMax: 4 });
    const d = rig.driver;
    expect(d.geometry!.maxRequest).to.equal(16384);
    const data = randomBytes(100 * 1024);
    await d.write(0, data);
    expect((await d.read(0, data.length)).equals(data)).to.equal(true);
    for (const s of rig.device.seen) {
      const dataSegs = s.type === BlkType.OUT ? s.readableLengths.slice(1) : s.writableLengths.slice(0, -1);
      expect(dataSegs.length).to.be.at.most(4);
      for (const l of dataSegs) expect(l).to.be.at.most(4096);
    }
    expect(rig.device.seen.filter((s) => s.type === BlkType.OUT)).to.have.length(Math.ceil(data.length / 16384));
  });

  it('without SEG_MAX: one data segment per request, split by maxTransfer', async () => {
    rig = await blkRig({ capacity: 2 * MiB }, { maxTransfer: 8192 });
    const data = randomBytes(40960);
    await rig.driver.write(4096, data);
    const outs = rig.device.seen.filter((s) => s.type === BlkType.OUT);
    expect(outs).to.have.length(5);
    for (const s of outs) expect(s.readableLengths).to.deep.equal([16, 8192]);
    expect(rig.device.disk.subarray(4096, 4096 + data.length).equals(data)).to.equal(true);
  });

  it('discard and write-zeroes (with and without unmap) zero the range', async () => {
    rig = await blkRig({ capacity: 2 * MiB, discard: true, writeZeroes: true, maxDiscardSectors: 16 });
    const d = rig.driver;
    await d.write(0, Buffer.alloc(64 * 1024, 0xab));
    await d.discard(0, 16384);
    expect(rig.device.disk.subarray(0, 16384).every((b) => b === 0)).to.equal(true);
    expect(rig.device.disk[16384]).to.equal(0xab);
    // max_discard_sectors 16 → 8 KiB per request.
    expect(rig.device.seen.filter((s) => s.type === BlkType.DISCARD)).to.have.length(2);
    await d.writeZeroes(16384, 8192, { unmap: true });
    await d.writeZeroes(24576, 512);
    expect(rig.device.disk.subarray(0, 25088).every((b) => b === 0)).to.equal(true);
    expect(rig.device.disk[25088]).to.equal(0xab);
  });

  it('typed errors: range, alignment, read-only, unsupported, device IOERR and UNSUPP', async () => {
    rig = await blkRig({ capacity: MiB });
    const d = rig.driver;
    await rejects(d.read(MiB - 512, 1024), 'VSHM_ERR_BLK_RANGE');
    await rejects(d.write(MiB, Buffer.alloc(512)), 'VSHM_ERR_BLK_RANGE');
    await rejects(d.read(100, 512), 'VSHM_ERR_BLK_ALIGNMENT');
    await rejects(d.write(0, Buffer.alloc(100)), 'VSHM_ERR_BLK_ALIGNMENT');
    await rejects(d.read(-512, 512), 'VSHM_ERR_ARGUMENT');
    await rejects(d.discard(0, 512), 'VSHM_ERR_BLK_UNSUPPORTED');
    await rejects(d.writeZeroes(0, 512), 'VSHM_ERR_BLK_UNSUPPORTED');
    rig.device.failTypes.add(BlkType.IN);
    await rejects(d.read(0, 4096), 'VSHM_ERR_BLK_IO');
    rig.device.failTypes.clear();
    rig.device.unsuppTypes.add(BlkType.GET_ID);
    await rejects(d.serial(), 'VSHM_ERR_BLK_UNSUPPORTED');
    // Nothing was written by the refused calls.
    expect(rig.device.disk.every((b) => b === 0)).to.equal(true);
    expect((await d.read(0, 512)).length).to.equal(512); // still usable
  });

  it('read-only devices refuse writes locally', async () => {
    rig = await blkRig({ capacity: MiB, readOnly: true, discard: true });
    expect(rig.driver.readOnly).to.equal(true);
    await rejects(rig.driver.write(0, Buffer.alloc(512, 1)), 'VSHM_ERR_BLK_READ_ONLY');
    await rejects(rig.driver.discard(0, 512), 'VSHM_ERR_BLK_READ_ONLY');
    expect(rig.device.seen.filter((s) => s.type === BlkType.OUT)).to.have.length(0);
    await rig.driver.flush();
  });

  it('many requests in flight up to the queue capacity; the rest queue in the driver', async () => {
    rig = await blkRig({ capacity: 4 * MiB, queueSize: 8, indirect: false });
    const d = rig.driver;
    rig.device.hold = true;
    // Without INDIRECT_DESC a 1-segment read takes 3 descriptors: 2 fit a queue of 8.
    const reads = Array.from({ length: 10 }, (_, i) => d.read(i * 4096, 4096));
    await until(() => rig!.device.heldCount === 2, 'the device to hold 2 requests');
    expect(d.inFlight).to.equal(2);
    expect(d.queued).to.equal(8);
    rig.device.release();
    const got = await Promise.all(reads);
    expect(got.every((b) => b.length === 4096)).to.equal(true);
    expect(rig.device.maxHeld).to.equal(2);
  });

  it('with INDIRECT_DESC every request takes one ring slot: queue-size requests in flight', async () => {
    rig = await blkRig({ capacity: 4 * MiB, queueSize: 8, indirect: true });
    rig.device.hold = true;
    const ops = Array.from({ length: 12 }, (_, i) => rig!.driver.write(i * 4096, Buffer.alloc(4096, i + 1)));
    await until(() => rig!.device.heldCount === 8, 'the device to hold 8 requests');
    expect(rig.driver.queued).to.equal(4);
    rig.device.release();
    await Promise.all(ops);
    for (let i = 0; i < 12; i++) expect(rig.device.disk[i * 4096]).to.equal(i + 1);
  });

  it('flush waits for earlier writes to complete before sending FLUSH', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true });
    rig.device.hold = true;
    const w = rig.driver.write(0, Buffer.alloc(4096, 7));
    const f = rig.driver.flush();
    await until(() => rig!.device.heldCount === 1, 'the device to hold 1 request');
    expect(rig.device.seen).to.have.length(0); // the write is held; FLUSH not sent yet
    rig.device.release();
    await Promise.all([w, f]);
    expect(rig.device.seen.map((s) => s.type)).to.deep.equal([BlkType.OUT, BlkType.FLUSH]);
  });

  it('a config event with a new capacity updates capacity and emits "capacity"', async () => {
    rig = await blkRig({ capacity: MiB });
    const ev = new Promise<number>((r) => rig!.driver.once('capacity', r));
    rig.device.resize(2 * MiB);
    expect(await ev).to.equal(2 * MiB);
    expect(rig.driver.capacity).to.equal(2 * MiB);
    await rig.driver.write(MiB, Buffer.alloc(512, 1)); // the new range is usable
  });

  it('device loss fails in-flight requests with VSHM_ERR_BLK_DEVICE_LOST; queued ones run on the next device', async () => {
    rig = await blkRig({ capacity: MiB, queueSize: 8, indirect: false });
    const d = rig.driver;
    rig.device.hold = true;
    const inflight = [d.write(0, Buffer.alloc(4096, 1)), d.write(4096, Buffer.alloc(4096, 2))];
    const queued = d.write(8192, Buffer.alloc(4096, 3));
    await until(() => rig!.device.heldCount === 2, 'the device to hold 2 requests');
    const lost = new Promise((r) => d.once('lost', r));
    const ready = new Promise((r) => d.once('ready', r));
    // The back-end goes away with the writes held (never completed).
    await rig.backend.close();
    for (const p of inflight) {
      const e = await rejects(p, 'VSHM_ERR_BLK_DEVICE_LOST');
      expect(e.message).to.match(/may or may not have been applied/);
    }
    await lost;
    // A new back-end on the same memory: the queued write is sent to it, once.
    const { VirtioBackend } = await import('@vshm/transport');
    rig.device.hold = false;
    const backend2 = new VirtioBackend(rig.be, rig.device);
    rig.backend = backend2;
    backend2.start();
    await ready;
    await queued;
    expect(rig.device.disk[8192]).to.equal(3);
    expect(rig.device.disk[0]).to.equal(0); // the failed writes were never re-sent
  });

  it('close() fails queued requests and refuses new ones', async () => {
    rig = await blkRig({ capacity: MiB, queueSize: 8, indirect: false });
    rig.device.hold = true;
    const ops = Array.from({ length: 4 }, (_, i) => rig!.driver.read(i * 512, 512));
    await until(() => rig!.device.heldCount === 2, 'the device to hold 2 requests');
    rig.driver.close();
    await rejects(ops[3], 'VSHM_ERR_BLK_CLOSED');
    await rejects(rig.driver.read(0, 512), 'VSHM_ERR_BLK_CLOSED');
    rig.device.release();
    await Promise.all(ops.slice(0, 2));
  });
  it('whenReady() after close() with no device there resolves at once, as it does for a caller waiting at the close (NBD fuzz seed 19 of exit+timeout)', async () => {
    rig = await blkRig({ capacity: MiB });
    const d = rig.driver;
    const lost = new Promise((res) => d.once('lost', res));
    await rig.backend.close();
    await lost;
    const before = d.whenReady();
    d.close();
    await before;
    // A failure bound, not a sleep: it used to wait for a device that a closed driver never takes.
    let bound: NodeJS.Timeout | undefined;
    const hung = new Promise<'hung'>((res) => (bound = setTimeout(() => res('hung'), 2000)));
    const after = await Promise.race([d.whenReady().then(() => 'ready' as const), hung]);
    clearTimeout(bound);
    expect(after).to.equal('ready');
  });
});
