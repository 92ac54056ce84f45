/**
 * Found by the hostile-device fuzzer (driver-fuzz.test.ts, stop 27): a call checked against one
 * device's geometry but sent to the next one (it waited across a device change) is checked again
 * against the device it goes to — no FLUSH, DISCARD or WRITE_ZEROES to a device that did not
 * negotiate it, no write to a read-only one, nothing off its logical blocks or past its end — and
 * a capacity a config event reports counts whole logical blocks only, as at probe.
 */
import { expect } from 'chai';
import { BlkRequestType as BlkType } from 'virtio-spec-types';
import { VirtioBackend } from '@vshm/transport';
import { blkRig, type BlkRig } from './fixtures/blk-loopback.js';
import { MemBlkDevice, type MemBlkOptions } from './fixtures/mem-blk-device.js';
import { rejects } from './fixtures/rejects.js';
import { until } from '../../transport/test/fixtures/until.js';

const MiB = 1024 * 1024;

describe('BlockDriver: calls that wait across a device change are checked against the next device', () => {
  let rig: BlkRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  /** End the rig's device session; calls made now wait for the next device. */
  async function loseDevice(r: BlkRig): Promise<void> {
    const lost = new Promise((res) => r.driver.once('lost', res));
    await r.backend.close();
    await lost;
  }

  /** Start `opts` as the next device on the rig's memory; resolves once the driver probed it. */
  async function nextDevice(r: BlkRig, opts: MemBlkOptions): Promise<MemBlkDevice> {
    const dev = new MemBlkDevice(opts);
    const ready = new Promise((res) => r.driver.once('ready', res));
    r.backend = new VirtioBackend(r.be, dev);
    r.backend.start();
    await ready;
    return dev;
  }

  it('a FLUSH waiting for a device without VIRTIO_BLK_F_FLUSH is not sent: the flush resolves (write-through)', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true });
    const d = rig.driver;
    expect(d.geometry!.flush).to.equal(true);
    await loseDevice(rig);
    const f = d.flush();
    const dev2 = await nextDevice(rig, { capacity: MiB, indirect: true, flush: false });
    await f;
    expect(dev2.seen.map((s) => s.type)).to.not.include(BlkType.FLUSH);
    expect(d.queued).to.equal(0);
  });

  it('writes a device with a write cache acknowledged and no FLUSH covered: a flush on a write-through device after it fails IO, until a device with FLUSH flushes (stop 29)', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true });
    const d = rig.driver;
    await d.write(0, Buffer.alloc(4096, 1)); // acknowledged, maybe only in the device's cache
    await loseDevice(rig);
    const waiting = d.flush();
    await nextDevice(rig, { capacity: MiB, indirect: true, flush: false });
    await rejects(waiting, 'VSHM_ERR_BLK_IO');
    await rejects(d.flush(), 'VSHM_ERR_BLK_IO'); // made on the live write-through device
    await d.write(4096, Buffer.alloc(4096, 2)); // durable on completion: nothing new to cover
    await loseDevice(rig);
    const dev3 = await nextDevice(rig, { capacity: MiB, indirect: true });
    await d.flush();
    expect(dev3.flushes).to.equal(1);
    await loseDevice(rig);
    await nextDevice(rig, { capacity: MiB, indirect: true, flush: false });
    await d.flush(); // covered: nothing left for this device to flush
  });

  it('writes a FLUSH covered before the device went: a flush on the write-through device after it resolves', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true });
    const d = rig.driver;
    await d.write(0, Buffer.alloc(4096, 1));
    await d.flush();
    await loseDevice(rig);
    await nextDevice(rig, { capacity: MiB, indirect: true, flush: false });
    await d.flush();
  });

  it('DISCARD / WRITE_ZEROES waiting for a device without the feature fail UNSUPPORTED, unsent', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true, discard: true, writeZeroes: true });
    const d = rig.driver;
    await loseDevice(rig);
    const a = d.discard(0, 4096);
    const b = d.writeZeroes(4096, 4096);
    const dev2 = await nextDevice(rig, { capacity: MiB, indirect: true });
    await rejects(a, 'VSHM_ERR_BLK_UNSUPPORTED');
    await rejects(b, 'VSHM_ERR_BLK_UNSUPPORTED');
    expect(dev2.seen).to.deep.equal([]);
  });

  it('a write waiting for a read-only device fails READ_ONLY, unsent; a read still goes', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true });
    const d = rig.driver;
    await loseDevice(rig);
    const w = d.write(0, Buffer.alloc(512, 1));
    const rd = d.read(0, 512);
    const dev2 = await nextDevice(rig, { capacity: MiB, indirect: true, readOnly: true });
    await rejects(w, 'VSHM_ERR_BLK_READ_ONLY');
    await rd;
    expect(dev2.seen.map((s) => s.type)).to.deep.equal([BlkType.IN]);
  });

  it('calls off the next device\'s 4096-byte blocks, or past its end, fail ALIGNMENT / RANGE, unsent', async () => {
    rig = await blkRig({ capacity: 2 * MiB, indirect: true, discard: true });
    const d = rig.driver;
    await loseDevice(rig);
    const r1 = d.read(512, 4096);
    const w1 = d.write(4096, Buffer.alloc(1024, 1));
    const dc = d.discard(1024, 4096);
    const past = d.read(MiB, 4096);
    const fine = d.write(8192, Buffer.alloc(4096, 2));
    const dev2 = await nextDevice(rig, { capacity: MiB, indirect: true, blkSize: 4096, discard: true });
    await rejects(r1, 'VSHM_ERR_BLK_ALIGNMENT');
    await rejects(w1, 'VSHM_ERR_BLK_ALIGNMENT');
    await rejects(dc, 'VSHM_ERR_BLK_ALIGNMENT');
    await rejects(past, 'VSHM_ERR_BLK_RANGE');
    await fine;
    expect(dev2.seen.map((s) => [s.type, s.sector])).to.deep.equal([[BlkType.OUT, 16]]);
  });
});

describe('BlockDriver: a capacity changed by a config event', () => {
  let rig: BlkRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  it('counts whole logical blocks only, as at probe (blk_size 4096)', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true, blkSize: 4096 });
    const d = rig.driver;
    const seen: number[] = [];
    d.on('capacity', (n: number) => seen.push(n));
    rig.device.resize(2 * MiB + 512);
    await until(() => d.capacity !== MiB, 'the new capacity');
    expect(d.capacity).to.equal(2 * MiB);
    rig.device.resize(512);
    await until(() => d.capacity !== 2 * MiB, 'the new capacity');
    expect(d.capacity).to.equal(0);
    expect(seen).to.deep.equal([2 * MiB, 0]);
    expect(d.geometry!.capacity).to.equal(0);
  });
});
