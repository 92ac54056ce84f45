/**
 * BlockDriver under failures and hostile devices (stop-21 review): a split request that fails
 * part-way settles only once none of its parts is on the device any more; status bytes missing or
 * unknown; a queue too small for a request, or limits that allow no sector, fail those requests
 * instead of wedging the driver or the probe; a device loss drops the unsent parts of failed
 * calls; requests queued across a device change are re-cut to the new limits; calls made before
 * the first device keep their order; a queued request survives a session that ends with
 * completions still to collect; seg_max is clamped by the smallest queue; a capacity that never
 * settles; DISCARD runs built as they are sent, not all at once; a blk_size out of 512…64 KiB or
 * not a power of two (stop 22) is ignored.
 */
import { expect } from 'chai';
import { BlkConfig, BlkFeature, BlkRequestType as BlkType, BlkStatus } from 'virtio-spec-types';
import type { DeviceSession, DriverQueueHandle, DriverSession, VirtioDriverOps } from '@vshm/transport';
import { BlockDriver } from '../src/driver.js';
import { TransportError, VirtioBackend, VirtioFrontend } from '@vshm/transport';
import { createLoopbackPair } from '@vshm/transport/testing';
import { blkRig, type BlkRig } from './fixtures/blk-loopback.js';
import { rejects } from './fixtures/rejects.js';
import { MemBlkDevice } from './fixtures/mem-blk-device.js';
import { until } from '../../transport/test/fixtures/until.js';

const MiB = 1024 * 1024;

describe('BlockDriver: failures and hostile devices', () => {
  let rig: BlkRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  it('a split read whose first part fails settles only after its other part is back: into is never written after', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true, sizeMax: 4096, segMax: 1 });
    const d = rig.driver;
    expect(d.geometry!.maxRequest).to.equal(4096);
    rig.device.disk.fill(0xab);
    rig.device.statusFor = (type, sector) => (type === BlkType.IN && sector === 0 ? BlkStatus.IOERR : undefined);
    rig.device.hold = true;
    const into = Buffer.alloc(8192);
    let settled = false;
    const p = d.read(0, 8192, into).catch((err: unknown) => {
      settled = true;
      into.fill(0xee); // the caller reuses its buffer as soon as it is told the read is over
      throw err;
    });
    await until(() => rig!.device.heldCount === 2, 'both parts held');
    rig.device.releaseOne(0); // part 1: IOERR
    await until(() => d.inFlight === 1, 'the failed part collected');
    expect(settled).to.equal(false); // part 2 may still write into `into`
    rig.device.releaseOne(0); // part 2: OK, its data copied into `into`
    await rejects(p, 'VSHM_ERR_BLK_IO');
    expect(into.every((b) => b === 0xee)).to.equal(true);
    expect(d.inFlight).to.equal(0);
  });

  it('a split write whose first part fails settles only after its other part is back', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true, sizeMax: 4096, segMax: 1 });
    const d = rig.driver;
    rig.device.statusFor = (type, sector) => (type === BlkType.OUT && sector === 0 ? BlkStatus.IOERR : undefined);
    rig.device.hold = true;
    let settled = false;
    const p = d.write(0, Buffer.alloc(8192, 1)).finally(() => {
      settled = true;
    });
    await until(() => rig!.device.heldCount === 2, 'both parts held');
    rig.device.releaseOne(0);
    await until(() => d.inFlight === 1, 'the failed part collected');
    // Were the write over now, a re-write of the range could be overtaken by the late part 2.
    expect(settled).to.equal(false);
    rig.device.releaseOne(0);
    await rejects(p, 'VSHM_ERR_BLK_IO');
    // A flush issued after the failed write comes after all of it.
    rig.device.hold = false;
    await d.flush();
    expect(rig.device.seen.map((s) => s.type)).to.deep.equal([BlkType.OUT, BlkType.OUT, BlkType.FLUSH]);
  });

  it('parts of a failed split op not yet sent are never sent', async () => {
    // One ring slot: part 1 in flight, parts 2 and 3 waiting in the driver.
    rig = await blkRig({ capacity: MiB, indirect: true, sizeMax: 4096, segMax: 1, queueSize: 4 });
    const d = rig.driver;
    rig.device.statusFor = (type, sector) => (type === BlkType.OUT && sector === 0 ? BlkStatus.IOERR : undefined);
    const p = d.write(0, Buffer.alloc(6 * 4096, 1));
    await rejects(p, 'VSHM_ERR_BLK_IO');
    await until(() => d.inFlight === 0, 'nothing in flight');
    const sent = rig.device.seen.filter((s) => s.type === BlkType.OUT).length;
    expect(sent).to.be.below(6);
    expect(d.queued).to.equal(0);
  });

  it('status bytes: a used length short of the status byte, an unknown status, UNSUPP — each a clear error, the driver usable after', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true });
    const d = rig.driver;
    rig.device.usedLenFor = (type, sector) => (type === BlkType.IN && sector === 0 ? 4096 : undefined); // data, no status
    const e1 = await rejects(d.read(0, 4096), 'VSHM_ERR_BLK_IO');
    expect(e1.message).to.match(/did not write the status byte/);
    rig.device.usedLenFor = null;
    rig.device.statusFor = (type) => (type === BlkType.OUT ? 7 : type === BlkType.FLUSH ? BlkStatus.UNSUPP : undefined);
    const e2 = await rejects(d.write(0, Buffer.alloc(512, 1)), 'VSHM_ERR_BLK_IO');
    expect(e2.message).to.match(/status 7/);
    await rejects(d.flush(), 'VSHM_ERR_BLK_UNSUPPORTED');
    rig.device.statusFor = null;
    await d.write(0, Buffer.alloc(512, 2));
    expect((await d.read(0, 512))[0]).to.equal(2);
  });

  it('size_max × seg_max below one sector: the device is taken, data requests fail clearly, FLUSH and GET_ID work', async function () {
    this.timeout(10_000);
    rig = await blkRig({ capacity: MiB, sizeMax: 256, segMax: 1 });
    const d = rig.driver;
    const e = await rejects(d.read(0, 512), 'VSHM_ERR_BLK_NO_MEMORY');
    expect(e.message).to.match(/size_max 256/);
    await rejects(d.write(0, Buffer.alloc(512)), 'VSHM_ERR_BLK_NO_MEMORY');
    await d.flush();
    expect(await d.serial()).to.equal('mem-blk');
    expect(rig.device.seen.filter((s) => s.type === BlkType.IN || s.type === BlkType.OUT)).to.have.length(0);
  });

  it('device loss: the unsent parts of a call that failed are dropped at once, not kept until the next device', async () => {
    // Queue of 4 without indirect: one 1-segment request (3 descriptors) in flight at a time.
    rig = await blkRig({ capacity: MiB, queueSize: 4, indirect: false, sizeMax: 4096, segMax: 1 });
    const d = rig.driver;
    rig.device.hold = true;
    const big = d.write(0, Buffer.alloc(8 * 4096, 1)); // 8 requests: 1 in flight, 7 waiting
    const other = d.write(MiB - 4096, Buffer.alloc(4096, 2)); // waits behind it
    await until(() => rig!.device.heldCount === 1, 'the first part held');
    expect(d.queued).to.equal(8);
    const lost = new Promise((r) => d.once('lost', r));
    await rig.backend.close();
    await rejects(big, 'VSHM_ERR_BLK_DEVICE_LOST');
    await lost;
    // Only the other write still waits for a device; the failed write's data is no longer held.
    expect(d.queued).to.equal(1);
    const { VirtioBackend } = await import('@vshm/transport');
    const ready = new Promise((r) => d.once('ready', r));
    rig.device.hold = false;
    rig.backend = new VirtioBackend(rig.be, rig.device);
    rig.backend.start();
    await ready;
    await other;
    expect(rig.device.disk.subarray(0, 8 * 4096).every((b) => b === 0)).to.equal(true);
  });

  it('a queue too small for a request fails that request clearly and keeps serving the others', async () => {
    rig = await blkRig({ capacity: MiB, queueSize: 2, indirect: false });
    const d = rig.driver;
    // header + data + status = 3 descriptors > 2
    const e = await rejects(d.read(0, 512), 'VSHM_ERR_BLK_NO_MEMORY');
    expect(e.message).to.match(/3 descriptors/);
    await rejects(d.write(0, Buffer.alloc(512)), 'VSHM_ERR_BLK_NO_MEMORY');
    await d.flush(); // header + status fit: the driver is not wedged
    expect(rig.device.flushes).to.equal(1);
    expect(d.queued).to.equal(0);
  });

  it('requests queued across a device change are re-cut to the new device\'s size_max / seg_max and discard limit', async () => {
    // Device 1: 64 KiB segments, 16 per request, queue of 8 without indirect (one 256 KiB write in flight).
    rig = await blkRig({ capacity: 2 * MiB, queueSize: 8, indirect: false, sizeMax: 65536, segMax: 16, discard: true });
    const d = rig.driver;
    expect(d.geometry!.maxRequest).to.equal(256 * 1024);
    rig.device.hold = true;
    const first = d.write(0, Buffer.alloc(256 * 1024, 1));
    const data = Buffer.alloc(256 * 1024);
    for (let i = 0; i < data.length; i += 512) data[i] = (i / 512) & 0xff;
    const queued = d.write(256 * 1024, data);
    const discard = d.discard(MiB, MiB);
    await until(() => rig!.device.heldCount === 1, 'the first write held');
    expect(d.queued).to.equal(2);
    const ready = new Promise((r) => d.once('ready', r));
    await rig.backend.close();
    await rejects(first, 'VSHM_ERR_BLK_DEVICE_LOST');
    // Device 2 on the same memory: 4 KiB segments, at most 4 per request, 8 sectors per discard.
    const { VirtioBackend } = await import('@vshm/transport');
    const { MemBlkDevice } = await import('./fixtures/mem-blk-device.js');
    const dev2 = new MemBlkDevice({ capacity: 2 * MiB, queueSize: 128, indirect: true, sizeMax: 4096, segMax: 4, discard: true, maxDiscardSectors: 8 });
    dev2.disk.fill(0xab);
    const backend2 = new VirtioBackend(rig.be, dev2);
    rig.backend = backend2;
    backend2.start();
    await ready;
    expect(d.geometry!.maxRequest).to.equal(16384);
    await Promise.all([queued, discard]);
    const outs = dev2.seen.filter((s) => s.type === BlkType.OUT);
    expect(outs).to.have.length(16);
    for (const s of outs) {
      expect(s.readableLengths.length - 1).to.be.at.most(4);
      for (const l of s.readableLengths.slice(1)) expect(l).to.be.at.most(4096);
    }
    expect(dev2.disk.subarray(256 * 1024, 512 * 1024).equals(data)).to.equal(true);
    expect(dev2.seen.filter((s) => s.type === BlkType.DISCARD)).to.have.length(MiB / 4096);
    expect(dev2.disk.subarray(MiB).every((b) => b === 0)).to.equal(true);
  });

  it('blk_size 4096 with discard / write-zeroes limits that are not whole blocks (12, 5 sectors): every segment is on whole blocks', async () => {
    for (const maxDiscardSectors of [12, 5]) {
      rig = await blkRig({ capacity: MiB, indirect: true, blkSize: 4096, discard: true, writeZeroes: true, maxDiscardSectors });
      const d = rig.driver;
      rig.device.disk.fill(0xab);
      await d.discard(8192, 65536);
      await d.writeZeroes(131072, 40960);
      const segs = rig.device.seen.filter((s) => s.dwz !== null).map((s) => s.dwz!);
      expect(segs.length, `max ${maxDiscardSectors}`).to.be.greaterThan(2);
      for (const s of segs) expect(s.sector % 8 === 0 && s.sectors % 8 === 0 && s.sectors > 0, `max ${maxDiscardSectors}: ${JSON.stringify(s)}`).to.equal(true);
      expect(rig.device.disk.subarray(8192, 8192 + 65536).every((b) => b === 0)).to.equal(true);
      expect(rig.device.disk.subarray(131072, 131072 + 40960).every((b) => b === 0)).to.equal(true);
      expect(rig.device.disk[8191]).to.equal(0xab);
      expect(rig.device.disk[131072 + 40960]).to.equal(0xab);
      await rig.close();
      rig = null;
    }
  });

  it('blk_size 4096: a call not on whole 4096-byte blocks fails with VSHM_ERR_BLK_ALIGNMENT and never reaches the device', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true, blkSize: 4096, discard: true, writeZeroes: true });
    const d = rig.driver;
    expect(d.blockSize).to.equal(4096);
    rig.device.disk.fill(0xab);
    const e = await rejects(d.read(512, 4096), 'VSHM_ERR_BLK_ALIGNMENT');
    expect(e.message).to.equal("read: offset 512 and length 4096 must be multiples of the device's 4096-byte blocks");
    await rejects(d.write(4096, Buffer.alloc(512)), 'VSHM_ERR_BLK_ALIGNMENT');
    await rejects(d.discard(0, 2048), 'VSHM_ERR_BLK_ALIGNMENT');
    await rejects(d.writeZeroes(6144, 4096), 'VSHM_ERR_BLK_ALIGNMENT');
    expect(rig.device.seen, 'nothing was sent').to.deep.equal([]);
    expect(rig.device.disk.every((b) => b === 0xab)).to.equal(true);
    await d.write(4096, Buffer.alloc(8192, 7));
    expect((await d.read(4096, 8192)).every((b) => b === 7)).to.equal(true);
  });

  it('DISCARD with max_discard_sectors 1: segments are built as they are sent, not all at once', async () => {
    rig = await blkRig({ capacity: 4 * MiB, indirect: true, queueSize: 8, discard: true, maxDiscardSectors: 1 });
    const d = rig.driver;
    rig.device.disk.fill(0xab);
    rig.device.hold = true;
    const p = d.discard(0, 4 * MiB);
    await until(() => rig!.device.heldCount === 8, 'the ring full');
    // 8192 one-sector segments: all but the ring's 8 still to come, held by the driver as one run.
    expect(d.queued).to.equal(1);
    rig.device.release();
    await p;
    const segs = rig.device.seen.filter((s) => s.type === BlkType.DISCARD);
    expect(segs).to.have.length(8192);
    expect(rig.device.disk.every((b) => b === 0)).to.equal(true);
  });
});

describe('BlockDriver: calls made before the first device', () => {
  it('reach the device in call order, ahead of calls made once it is ready', async () => {
    const device = new MemBlkDevice({ capacity: MiB });
    const driver = new BlockDriver();
    const [be, fe] = createLoopbackPair({ protocol: 0x8002, size: 4 * MiB, vectors: 2 });
    const early = driver.whenReady(); // a caller waiting for the device, then writing
    const a = driver.write(0, Buffer.alloc(512, 1));
    let b: Promise<void> | null = null;
    driver.once('ready', () => {
      b = driver.write(0, Buffer.alloc(512, 2));
    });
    const c = early.then(() => driver.write(0, Buffer.alloc(512, 3)));
    const backend = new VirtioBackend(be, device);
    backend.start();
    const frontend = new VirtioFrontend(fe, driver, { readyPollMs: 5 });
    frontend.start().catch(() => undefined);
    try {
      await Promise.all([a, c]);
      await b;
      // The write called first is sent first; the other two were called after the device came.
      const order = device.seen.filter((s) => s.type === BlkType.OUT).map((s) => s.firstByte);
      expect(order).to.have.length(3);
      expect(order[0]).to.equal(1);
    } finally {
      driver.close();
      await frontend.close();
      await backend.close();
      be.close();
      fe.close();
    }
  });
});

/**
 * A driver queue as device-api.ts describes it, driven by hand: takes up to `room` requests,
 * refuses everything once not `live`; `complete()` delivers the oldest through onUsed as the
 * transport does — also after `live` went false (the acknowledged completions of an ending
 * session, §4.10).
 */
class HandQueue {
  readonly index = 0;
  live = true;
  inFlight = 0;
  onUsed: ((token: unknown, data: Uint8Array, segs: readonly Uint8Array[]) => void) | null = null;
  onFailed: ((token: unknown, err: Error) => void) | null = null;
  readonly posted: unknown[] = [];
  /** Segments of each request posted. */
  readonly segments: number[] = [];
  constructor(
    private readonly room: number,
    readonly size = 64,
  ) {}
  add(): boolean {
    return false;
  }
  addSgs(out: readonly Uint8Array[], in_: readonly (number | Uint8Array)[], token: unknown): boolean {
    // As the transport: no chain longer than the queue (VIRTIO 1.2 §2.7.5.3.1).
    if (out.length + in_.length > this.size) throw new Error(`addSgs: ${out.length + in_.length} segments, more than the queue size ${this.size}`);
    if (!this.live || this.posted.length >= this.room) return false;
    this.segments.push(out.length + in_.length);
    this.posted.push(token);
    this.inFlight++;
    return true;
  }
  allocOut(len: number, init?: Uint8Array): Uint8Array | null {
    if (!this.live) return null;
    const b = new Uint8Array(len);
    if (init !== undefined) b.set(init);
    return b;
  }
  freeOut(): void {}
  kick(): void {}
  complete(status: number): void {
    const t = this.posted.shift();
    this.inFlight--;
    const st = Uint8Array.of(status);
    this.onUsed!(t, st, [st]);
  }
  failAll(err: Error): void {
    for (const t of this.posted.splice(0)) {
      this.inFlight--;
      this.onFailed!(t, err);
    }
  }
}

function handSession(q: HandQueue | HandQueue[], sectors = 2048, features = 0n, config: Record<number, number> = {}): DriverSession {
  const readConfig = (offset: number): number => (offset === BlkConfig.CAPACITY ? sectors : config[offset] ?? 0);
  return {
    features,
    queues: (Array.isArray(q) ? q : [q]) as unknown as DriverQueueHandle[],
    readConfig,
    readConfigMany: (fn) => fn(readConfig), // a config that never changes: one pass is consistent
    writeConfig: () => Promise.resolve(),
  };
}

describe('BlockDriver: session end with completions still to collect (hand-driven queue)', () => {
  it('a queued request is not failed as "never fits" when the ending session delivers the last in-flight completion', async () => {
    const d = new BlockDriver();
    const q1 = new HandQueue(2);
    d.probe(handSession(q1));
    const a = d.write(0, Buffer.alloc(512, 1));
    const b = d.write(512, Buffer.alloc(512, 2));
    let cErr: unknown = null;
    const c = d.write(1024, Buffer.alloc(512, 3));
    c.catch((err: unknown) => {
      cErr = err;
    });
    expect(q1.posted).to.have.length(2);
    expect(d.queued).to.equal(1);
    // The session ends: the queue stops taking requests, then the transport delivers what the
    // device acknowledged — both writes — and fails the rest (nothing), then remove().
    q1.live = false;
    q1.complete(BlkStatus.OK);
    q1.complete(BlkStatus.OK);
    q1.failAll(new Error('gone'));
    d.remove(new Error('gone'));
    await Promise.all([a, b]);
    await Promise.resolve();
    expect(cErr).to.equal(null);
    expect(d.queued).to.equal(1);
    // The next session takes it.
    const q2 = new HandQueue(2);
    d.probe(handSession(q2));
    expect(q2.posted).to.have.length(1);
    q2.complete(BlkStatus.OK);
    await c;
    d.close();
  });
});

describe('BlockDriver: queues of different sizes (hand-driven queues)', () => {
  it('seg_max is clamped by the smallest queue: a request fits every queue the calls rotate over', async () => {
    const d = new BlockDriver({ queues: 2 });
    const big = new HandQueue(8, 128);
    const small = new HandQueue(8, 8);
    const bit = (b: number): bigint => 1n << BigInt(b);
    // size_max 512, seg_max 64: a 32 KiB write is 64 segments on a 128-entry queue.
    d.probe(handSession([big, small], 2048, bit(BlkFeature.SIZE_MAX) | bit(BlkFeature.SEG_MAX) | bit(BlkFeature.MQ), { [BlkConfig.SIZE_MAX]: 512, [BlkConfig.SEG_MAX]: 64 }));
    expect(d.geometry!.maxSegments).to.equal(6);
    const w1 = d.write(0, Buffer.alloc(32768, 1)); // queue 0
    const w2 = d.write(32768, Buffer.alloc(32768, 2)); // queue 1 (8 entries)
    for (const q of [big, small]) while (q.posted.length > 0) q.complete(BlkStatus.OK);
    for (let i = 0; i < 20 && (big.inFlight > 0 || small.inFlight > 0 || d.queued > 0); i++) {
      for (const q of [big, small]) while (q.posted.length > 0) q.complete(BlkStatus.OK);
    }
    await Promise.all([w1, w2]);
    for (const n of [...big.segments, ...small.segments]) expect(n).to.be.at.most(8);
    d.close();
  });
});

describe('BlockDriver: config a hostile device keeps changing', () => {
  // The capacity is read under one generation check (readConfigMany, §4.8); a device whose
  // generation never settles is the transport's to bound (frontend-config-many.test.ts): its
  // VSHM_ERR_CONFIG_BUSY fails the probe, and the transport then treats the device as broken.
  it('a config that never settles fails the probe with the transport\'s error instead of spinning for ever', () => {
    const d = new BlockDriver();
    const q = { size: 64, addSgs: () => false, allocOut: () => null, kick: () => undefined, inFlight: 0, onUsed: null, onFailed: null, add: () => false, index: 0 } as unknown as DriverQueueHandle;
    const busy = new TransportError('VSHM_ERR_CONFIG_BUSY', '4.8', 'config_generation did not settle');
    const session: DriverSession = {
      features: 0n,
      queues: [q],
      readConfig: () => 0,
      readConfigMany: () => {
        throw busy;
      },
      writeConfig: () => Promise.resolve(),
    };
    expect(() => d.probe(session)).to.throw(TransportError).with.property('code', 'VSHM_ERR_CONFIG_BUSY');
  });
});

describe('BlockDriver: capacity updated while the driver reads it (§4.8)', () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  /**
   * A session whose config reads let `updates` run, one after each field read: the back-end's
   * updates land between the driver's reads (the real transport reads, the real back-end writes).
   */
  function interleaving(s: DriverSession, updates: (() => void)[]): DriverSession {
    const after = (v: number): number => {
      updates.shift()?.();
      return v;
    };
    return {
      features: s.features,
      queues: s.queues,
      readConfig: (o, w) => after(s.readConfig(o, w)),
      readConfigMany: (fn) => s.readConfigMany((read) => fn((o, w) => after(read(o, w)))),
      writeConfig: (o, w, v) => s.writeConfig(o, w, v),
    };
  }

  it('two updates between the reads of the two capacity halves give one update\'s capacity, never a torn one', async () => {
    const [be, fe] = createLoopbackPair({ protocol: 0x8002, size: 4 * MiB, vectors: 2 });
    const device = new MemBlkDevice({ capacity: MiB });
    const backend = new VirtioBackend(be, device);
    let devSession: DeviceSession | null = null;
    backend.on('session', (s: DeviceSession) => (devSession = s));
    const setSectors = (sectors: number): void =>
      devSession!.updateConfig((c) => {
        c.write(BlkConfig.CAPACITY, 4, sectors >>> 0);
        c.write(BlkConfig.CAPACITY + 4, 4, Math.floor(sectors / 0x100000000));
      });
    const driver = new BlockDriver();
    const updates: (() => void)[] = [];
    const wrapped = new WeakMap<DriverSession, DriverSession>();
    const wrap = (s: DriverSession): DriverSession => {
      let w = wrapped.get(s);
      if (w === undefined) wrapped.set(s, (w = interleaving(s, updates)));
      return w;
    };
    const ops: VirtioDriverOps = {
      deviceId: driver.deviceId,
      features: driver.features,
      queueCount: (f, c) => driver.queueCount(f, c),
      probe: (s) => driver.probe(wrap(s)),
      remove: (e) => driver.remove(e),
      configChanged: (s) => driver.configChanged(wrap(s)),
    };
    const frontend = new VirtioFrontend(fe, ops, { readyPollMs: 5 });
    closers.push(() => fe.close(), () => be.close(), () => backend.close(), () => frontend.close(), () => driver.close());
    backend.start();
    frontend.start().catch(() => undefined);
    await driver.whenReady();
    expect(driver.capacity).to.equal(MiB);
    const seen: number[] = [];
    driver.on('capacity', (bytes: number) => seen.push(bytes / 512));
    // The config event of an update to 4096 sectors; while the driver reads it, the device goes
    // to 2^32 + 100 sectors after the first field read and to 8192 after the second: the high
    // half is back where it was (ABA), the low half read in between belongs to neither.
    updates.push(
      () => setSectors(0x100000000 + 100),
      () => setSectors(8192),
    );
    setSectors(4096);
    await until(() => driver.capacity === 8192 * 512, 'the last capacity');
    await until(() => updates.length === 0, 'both updates made');
    for (const sectors of seen) expect([4096, 0x100000000 + 100, 8192]).to.include(sectors);
  });
});

describe('BlockDriver: blk_size a hostile or buggy device reports', () => {
  const bit = (b: number): bigint => 1n << BigInt(b);
  // Linux's virtio_blk refuses these values (blk_validate_block_size: a power of two from 512 to
  // 64 KiB); blk_size is a hint (the protocol's units stay 512 bytes), so the driver ignores them
  // — 512-byte blocks — and says what the device reported. Above 64 KiB an NBD export could not
  // advertise it as its minimum block size, nor keep its preferred size under its maximum.
  for (const blkSize of [0, 3, 256, 768, 4097, 128 * 1024, 2 ** 31, 0xffffffff]) {
    it(`blk_size ${blkSize} is ignored: 512-byte blocks, reportedBlockSize ${blkSize}; I/O goes on`, async () => {
      const d = new BlockDriver();
      const q = new HandQueue(8);
      d.probe(handSession(q, 2048, bit(BlkFeature.BLK_SIZE), { [BlkConfig.BLK_SIZE]: blkSize }));
      expect(d.blockSize).to.equal(512);
      expect(d.geometry!.reportedBlockSize).to.equal(blkSize);
      const w = d.write(512, Buffer.alloc(512, 1));
      while (q.posted.length > 0) q.complete(BlkStatus.OK);
      await w;
      d.close();
    });
  }
  for (const blkSize of [512, 4096, 65536]) {
    it(`blk_size ${blkSize} is taken as the logical block size`, () => {
      const d = new BlockDriver();
      d.probe(handSession(new HandQueue(8), 2048, bit(BlkFeature.BLK_SIZE), { [BlkConfig.BLK_SIZE]: blkSize }));
      expect(d.blockSize).to.equal(blkSize);
      expect(d.geometry!.reportedBlockSize).to.equal(blkSize);
      d.close();
    });
  }
  it('a capacity that ends inside a 4096-byte block counts whole blocks only (the tail cannot be reached)', () => {
    const d = new BlockDriver();
    d.probe(handSession(new HandQueue(8), 2049 + 6, bit(BlkFeature.BLK_SIZE), { [BlkConfig.BLK_SIZE]: 4096 }));
    expect(d.blockSize).to.equal(4096);
    expect(d.capacity).to.equal(2048 * 512);
    expect(d.geometry!.capacity).to.equal(2048 * 512);
    d.close();
  });
  it('without VIRTIO_BLK_F_BLK_SIZE the field is not read: 512, reportedBlockSize null', () => {
    const d = new BlockDriver();
    d.probe(handSession(new HandQueue(8), 2048, 0n, { [BlkConfig.BLK_SIZE]: 3 }));
    expect(d.blockSize).to.equal(512);
    expect(d.geometry!.reportedBlockSize).to.equal(null);
    d.close();
  });
});
