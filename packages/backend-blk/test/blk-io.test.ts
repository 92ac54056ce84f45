/**
 * BlockDevice I/O behaviour through the file-I/O seam (fixtures/rig.ts SeamImage): requests in
 * flight at once and completed out of order, durability order (a completion only after the
 * write / fdatasync returned), image I/O errors, resize with a config event, sessions ending with
 * I/O in flight, multiqueue.
 */
import { expect } from 'chai';
import { readFileSync, truncateSync } from 'node:fs';
import { BlkFeature, BlkRequestType, BlkStatus, featureBit } from 'virtio-spec-types';
import { LINUX_BLK_FEATURES, LinuxLikeBlk, blkHeader } from '../../transport/test/fixtures/linux-like-blk.js';
import type { DeviceQueueHandle } from '@vshm/transport';
import { ImageError } from '../src/image.js';
import { blkRig, closeRigs, pattern } from './fixtures/rig.js';
import { turn, until } from '../../transport/test/fixtures/until.js';

const { OK, IOERR } = BlkStatus;

describe('virtio-blk device: async I/O, ordering and durability', () => {
  afterEach(closeRigs);

  it('runs requests at once and completes them out of order', async () => {
    const r = await blkRig({ seam: true });
    await r.guest.write(0, pattern(8192, 1));
    const seam = r.seam!;
    seam.hold(0);
    const done: string[] = [];
    const a = r.guest.read(0, 4096).then((x) => (done.push('A'), x));
    await until(() => seam.waiting(0), 'read A to reach the file');
    const b = await r.guest.read(8, 4096).then((x) => (done.push('B'), x));
    expect(done).to.deep.equal(['B']); // B completed while A still runs
    expect(b.data.equals(pattern(8192, 1).subarray(4096))).to.equal(true);
    seam.release(0);
    const ra = await a;
    expect(done).to.deep.equal(['B', 'A']);
    expect(ra.data.equals(pattern(8192, 1).subarray(0, 4096))).to.equal(true);
    expect(r.device.stats.peakInFlight).to.be.at.least(2);
  });

  it('bounds requests in flight per queue (maxInFlight) and resumes when one completes', async () => {
    const r = await blkRig({ seam: true, device: { maxInFlight: 2 } });
    const seam = r.seam!;
    for (const p of [0, 4096, 8192]) seam.hold(p);
    const reads = [0, 8, 16].map((s) => r.guest.read(s, 4096));
    await until(() => seam.waiting(0) && seam.waiting(4096), 'two reads at the file');
    expect(r.device.inFlight).to.equal(2);
    expect(seam.waiting(8192)).to.equal(false); // the third waits in the ring
    seam.release(0);
    await until(() => seam.waiting(8192), 'the third read to start after a completion');
    seam.release(4096);
    seam.release(8192);
    expect((await Promise.all(reads)).every((x) => x.status === OK)).to.equal(true);
    expect(r.device.stats.peakInFlight).to.equal(2);
  });

  it('bounds request data in flight device-wide (maxInFlightBytes), over all queues, and resumes as requests complete', async () => {
    // 8 writes of 256 KiB on two queues against a 1 MiB bound: 4 run, the rest wait in the rings
    const r = await blkRig({ seam: true, size: 4 << 20, device: { queues: 2, maxInFlightBytes: 1 << 20 }, maxQueues: 2 });
    const seam = r.seam!;
    const len = 256 << 10;
    for (let i = 0; i < 8; i++) seam.hold(i * len);
    const writes = Array.from({ length: 8 }, (_, i) => r.guest.write((i * len) / 512, pattern(len, 20 + i)));
    await until(() => r.guest.posted.length === 8 && r.device.inFlight === 4, 'all posted, four at the file');
    for (let k = 0; k < 5; k++) await turn(); // every kick served: no fifth starts
    const started = () => seam.log.filter((l) => l.startsWith('write-start')).length;
    expect(started()).to.equal(4);
    expect(new Set(r.guest.posted.map((p) => p.queue))).to.deep.equal(new Set([0, 1]));
    const first = [...seam.holds.keys()].filter((p) => seam.waiting(p));
    seam.release(first[0]);
    await until(() => started() === 5, 'a fifth write once one completed');
    expect(r.device.inFlight).to.equal(4);
    for (let i = 0; i < 8; i++) seam.release(i * len);
    expect(await Promise.all(writes)).to.deep.equal(new Array(8).fill(OK));
    expect(r.device.stats.peakInFlight).to.equal(4);
    const file = readFileSync(r.img.path);
    for (let i = 0; i < 8; i++) expect(file.subarray(i * len, (i + 1) * len).equals(pattern(len, 20 + i)), `write ${i}`).to.equal(true);
  });

  it('a driver re-posting as fast as requests complete cannot hold the event loop: one wake-up pops at most a ring\'s worth', async () => {
    // Queue size 8, one request in flight. A write is held at the file; an unknown-type request
    // (completed at once, UNSUPP) waits behind it. Once the write completes, the device serves
    // on its own wake-up (not the transport's kick, whose pops are capped at the ring size); a
    // hostile driver on another CPU re-posts that request each time the device pops it.
    const r = await blkRig({ seam: true, device: { queueSize: 8, maxInFlight: 1 } });
    const seam = r.seam!;
    seam.hold(0);
    void r.guest.write(0, pattern(512, 1));
    await until(() => seam.waiting(0), 'the write at the file');
    void r.guest.submit([blkHeader(99, 0)], [1]);
    await until(() => r.guest.posted.length === 2, 'the unknown-type request posted');
    const q = r.guest.queue;
    const dv = new DataView(r.feDev.window);
    const avail = q.vring.avail;
    const size = q.vring.size;
    let availIdx = dv.getUint16(avail + 2, true);
    const badHead = dv.getUint16(avail + 4 + 2 * ((availIdx - 1) % size), true);
    const handle = (r.device as unknown as { queueStates: Array<{ handle: DeviceQueueHandle }> }).queueStates[0].handle;
    const pop = handle.pop.bind(handle);
    const LIMIT = 25 * size;
    let reposts = 0;
    let tick = 0;
    let lastTick = -1;
    let run = 0;
    let longestRun = 0;
    let ticking = true;
    const ticker = (): void => {
      tick++;
      if (ticking) setImmediate(ticker);
    };
    setImmediate(ticker);
    handle.pop = () => {
      const chain = pop();
      if (chain === null) return null;
      if (tick !== lastTick) [lastTick, run] = [tick, 0];
      longestRun = Math.max(longestRun, ++run);
      if (chain.head === badHead && reposts < LIMIT) {
        // the driver puts the same request in the ring again (the device pushes it before its next pop)
        dv.setUint16(avail + 4 + 2 * (availIdx % size), badHead, true);
        availIdx = (availIdx + 1) & 0xffff;
        dv.setUint16(avail + 2, availIdx, true);
        reposts++;
      }
      return chain;
    };
    try {
      seam.release(0);
      // (the driver double's own bookkeeping does not follow the raw re-posts: judge the device)
      await until(() => reposts === LIMIT && (r.device.stats.faults.unsupported ?? 0) === LIMIT + 1, 'every re-posted request served');
      expect(r.device.stats.completed.out).to.equal(1);
      // a ring's worth per wake-up; the completion's wake-up and a transport kick may share a turn
      expect(longestRun, 'chains popped without an event-loop turn').to.be.at.most(2 * size);
      expect(r.needs).to.deep.equal([]);
    } finally {
      ticking = false;
    }
  });

  it('writeback: a write completes after its write call returned; FLUSH only after fdatasync returned', async () => {
    const r = await blkRig({ seam: true });
    const log = r.seam!.log;
    await r.guest.write(0, pattern(4096, 2)).then(() => log.push('completed write'));
    await r.guest.flush().then(() => log.push('completed flush'));
    expect(log).to.deep.equal(['write-start 0', 'write-done 0', 'completed write', 'datasync-start', 'datasync-done', 'completed flush']);
  });

  it('writethrough: every write is synced before it completes (also WRITE_ZEROES)', async () => {
    const r = await blkRig({ seam: true, device: { cache: 'writethrough' } });
    const log = r.seam!.log;
    await r.guest.write(8, pattern(4096, 3)).then(() => log.push('completed write'));
    expect(log).to.deep.equal(['write-start 4096', 'write-done 4096', 'datasync-start', 'datasync-done', 'completed write']);
    log.length = 0;
    const seg = new Uint8Array(16);
    new DataView(seg.buffer).setUint32(8, 1, true);
    await r.guest.submit([blkHeader(BlkRequestType.WRITE_ZEROES, 0), seg], [1]).then(() => log.push('completed wz'));
    expect(log.slice(-3)).to.deep.equal(['datasync-start', 'datasync-done', 'completed wz']);
  });

  it('FLUSH offered but not negotiated: every write is stable before it completes (VIRTIO 1.2 §5.2.6.2), also WRITE_ZEROES and DISCARD', async () => {
    const r = await blkRig({ seam: true, features: LINUX_BLK_FEATURES & ~featureBit(BlkFeature.FLUSH) });
    expect(r.guest.features & featureBit(BlkFeature.FLUSH)).to.equal(0n);
    const log = r.seam!.log;
    await r.guest.write(8, pattern(4096, 3)).then(() => log.push('completed write'));
    expect(log).to.deep.equal(['write-start 4096', 'write-done 4096', 'datasync-start', 'datasync-done', 'completed write']);
    const seg = new Uint8Array(16);
    new DataView(seg.buffer).setUint32(8, 1, true);
    for (const t of [BlkRequestType.WRITE_ZEROES, BlkRequestType.DISCARD]) {
      log.length = 0;
      await r.guest.submit([blkHeader(t, 0), seg], [1]).then((x) => log.push(`completed ${x.status}`));
      expect(log.slice(-3), `type ${t}`).to.deep.equal(['datasync-start', 'datasync-done', `completed ${OK}`]);
    }
    // a driver that negotiates FLUSH again (next session) gets writeback back
    await r.guest.fe.reset();
    await until(() => !r.device.active, 'the device to deactivate');
    const g2 = new LinuxLikeBlk(r.feDev);
    await g2.start();
    log.length = 0;
    await g2.write(8, pattern(4096, 4)).then(() => log.push('completed write'));
    expect(log).to.deep.equal(['write-start 4096', 'write-done 4096', 'completed write']);
  });

  it('an image I/O error completes the request with IOERR, names path and errno, and the device goes on', async () => {
    const r = await blkRig({ seam: true });
    const errors: ImageError[] = [];
    r.device.on('io-error', (e: ImageError) => errors.push(e));
    r.seam!.failNext = { op: 'write', code: 'ENOSPC' };
    expect(await r.guest.write(0, pattern(512, 4))).to.equal(IOERR);
    r.seam!.failNext = { op: 'datasync', code: 'EIO' };
    expect(await r.guest.flush()).to.equal(IOERR);
    r.seam!.failNext = { op: 'read', code: 'EIO' };
    expect((await r.guest.read(0, 512)).status).to.equal(IOERR);
    expect(errors.map((e) => e.errnoCode)).to.deep.equal(['ENOSPC', 'EIO', 'EIO']);
    expect(errors[0].code).to.equal('VSHM_ERR_IMAGE');
    expect(errors[0]).to.be.instanceOf(ImageError);
    expect(errors[0].message).to.contain(r.img.path).and.contain('ENOSPC');
    expect(r.device.stats.faults.io).to.equal(3);
    expect(await r.guest.write(0, pattern(512, 5))).to.equal(OK);
    expect((await r.guest.read(0, 512)).data.equals(pattern(512, 5))).to.equal(true);
    expect(r.needs).to.deep.equal([]);
  });

  it("an 'io-error' listener that throws does not hold the request: it completes with IOERR first, the listener's own error is raised once, uncaught, and the device goes on", async () => {
    const r = await blkRig({ seam: true });
    const bug = new Error('a listener bug');
    let calls = 0;
    r.device.on('io-error', () => {
      if (++calls === 1) throw bug;
    });
    // The listener's exception must surface as Node surfaces any listener's: uncaught. Mocha's
    // own handler is set aside for the duration, so the test sees it.
    const mochaHandlers = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    const uncaught: unknown[] = [];
    const raised = new Promise<void>((resolve) => {
      process.on('uncaughtException', (err) => {
        uncaught.push(err);
        resolve();
      });
    });
    try {
      r.seam!.failNext = { op: 'read', code: 'EIO' };
      expect((await r.guest.read(0, 512)).status).to.equal(IOERR);
      await raised;
      expect(await r.guest.write(0, pattern(512, 6))).to.equal(OK);
      expect((await r.guest.read(0, 512)).data.equals(pattern(512, 6))).to.equal(true);
    } finally {
      process.removeAllListeners('uncaughtException');
      for (const h of mochaHandlers) process.on('uncaughtException', h);
    }
    expect(uncaught).to.deep.equal([bug]); // the listener's error itself, once
    expect(calls).to.equal(1); // not emitted again as another 'io-error'
    expect(r.needs).to.deep.equal([]);
  });

  it('after a failed fdatasync every later FLUSH fails: the kernel reports a lost write-back once, so a later OK would vouch for acknowledged writes that are gone', async () => {
    const r = await blkRig({ seam: true });
    const errors: ImageError[] = [];
    r.device.on('io-error', (e: ImageError) => errors.push(e));
    expect(await r.guest.write(0, pattern(4096, 7))).to.equal(OK); // acknowledged, in the page cache only
    r.seam!.failNext = { op: 'datasync', code: 'EIO' };
    expect(await r.guest.flush()).to.equal(IOERR);
    // Linux marks the failed pages clean and its next fdatasync returns 0 (the seam's does too)
    expect(await r.guest.flush()).to.equal(IOERR);
    expect(await r.guest.write(8, pattern(4096, 8))).to.equal(OK); // writes and reads are still served
    expect((await r.guest.read(8, 4096)).data.equals(pattern(4096, 8))).to.equal(true);
    expect(await r.guest.flush()).to.equal(IOERR);
    expect(errors.map((e) => `${e.syscall} ${e.errnoCode}`)).to.deep.equal(['fdatasync EIO', 'fdatasync EIO', 'fdatasync EIO']);
    expect(errors[1].message).to.contain(r.img.path).and.contain('earlier');
    expect(r.needs).to.deep.equal([]);
  });

  it('two FLUSHes whose fdatasyncs overlap: when one fails, the other fails too (the kernel may have told only one of them)', async () => {
    const r = await blkRig({ seam: true });
    const calls: { resolve: () => void; reject: (e: Error) => void }[] = [];
    r.seam!.datasync = () => new Promise<void>((resolve, reject) => calls.push({ resolve, reject }));
    expect(await r.guest.write(0, pattern(4096, 11))).to.equal(OK);
    const a = r.guest.flush();
    const b = r.guest.flush();
    await until(() => calls.length === 2, 'both fdatasyncs to start');
    calls[0].reject(Object.assign(new Error('EIO: injected failure, datasync'), { code: 'EIO' }));
    await turn();
    calls[1].resolve();
    expect([await a, await b]).to.deep.equal([IOERR, IOERR]);
  });

  it('writethrough after a failed fdatasync: later writes complete IOERR too (their sync cannot vouch for a page that failed before)', async () => {
    const r = await blkRig({ seam: true, device: { cache: 'writethrough' } });
    r.seam!.failNext = { op: 'datasync', code: 'EIO' };
    expect(await r.guest.write(0, pattern(4096, 9))).to.equal(IOERR);
    expect(await r.guest.write(8, pattern(4096, 10))).to.equal(IOERR);
    expect((await r.guest.read(8, 4096)).status).to.equal(OK);
  });

  it('resize: grows and shrinks the capacity by the config generation rule with a config event', async () => {
    const r = await blkRig({ size: 1 << 20 });
    expect(r.guest.capacity).to.equal(2048);
    expect((await r.guest.read(2048, 512)).status).to.equal(IOERR);
    truncateSync(r.img.path, 2 << 20);
    const before = r.guest.fe.configChanges;
    expect(await r.device.resize()).to.equal(4096);
    await until(() => r.guest.fe.configChanges > before && r.guest.capacity === 4096, 'the config event and the new capacity');
    expect(await r.guest.write(4000, pattern(4096, 6))).to.equal(OK);
    expect((await r.guest.read(4000, 4096)).data.equals(pattern(4096, 6))).to.equal(true);
    truncateSync(r.img.path, 512 * 1000 + 100); // a partial last sector is not served
    expect(await r.device.resize()).to.equal(1000);
    await until(() => r.guest.capacity === 1000, 'the shrunk capacity');
    expect((await r.guest.read(999, 512)).status).to.equal(OK);
    expect((await r.guest.read(1000, 512)).status).to.equal(IOERR);
    expect(readFileSync(r.img.path).length).to.equal(512 * 1000 + 100);
  });

  it('resize while no session is live (driver reset, before the next probe): the next driver sees the new capacity', async () => {
    const r = await blkRig({ size: 1 << 20 });
    expect(r.guest.capacity).to.equal(2048);
    await r.guest.fe.reset();
    await until(() => !r.device.active, 'the device to deactivate');
    truncateSync(r.img.path, 2 << 20);
    expect(await r.device.resize()).to.equal(4096);
    const guest2 = new LinuxLikeBlk(r.feDev);
    await guest2.start();
    await until(() => guest2.capacity === 4096, 'the new driver to see the new capacity', 2000);
    expect(await guest2.write(4000, pattern(4096, 9))).to.equal(OK);
    // and shrunk in the same gap: the driver must not be told of sectors the device refuses
    await guest2.fe.reset();
    await until(() => !r.device.active, 'the device to deactivate again');
    truncateSync(r.img.path, 1 << 20);
    expect(await r.device.resize()).to.equal(2048);
    const guest3 = new LinuxLikeBlk(r.feDev);
    await guest3.start();
    await until(() => guest3.capacity === 2048, 'the third driver to see the shrunk capacity', 2000);
    expect(r.needs).to.deep.equal([]);
  });

  it('two resizes at once: the later call\'s size wins, whatever order their size reads finish in', async () => {
    const r = await blkRig({ seam: true, size: 1 << 20 });
    const seam = r.seam!;
    let releaseFirst!: () => void;
    let calls = 0;
    seam.size = () => {
      // the first call read the size before the image grew, and its answer arrives last
      if (++calls === 1) return new Promise<number>((res) => (releaseFirst = () => res(1 << 20)));
      return seam.inner.size();
    };
    const first = r.device.resize();
    truncateSync(r.img.path, 2 << 20);
    expect(await r.device.resize()).to.equal(4096);
    releaseFirst();
    expect(await first).to.equal(4096);
    expect(r.device.capacitySectors).to.equal(4096);
    await until(() => r.guest.capacity === 4096, 'the grown capacity at the driver');
    for (let k = 0; k < 5; k++) await turn();
    expect(r.guest.capacity).to.equal(4096);
    expect((await r.guest.read(4095, 512)).status).to.equal(OK);
  });

  it('a size read that fails: resize() rejects with an ImageError naming fstat and the image, the capacity stays (fuzz seed 22)', async () => {
    const r = await blkRig({ seam: true, size: 1 << 20 });
    const seam = r.seam!;
    // An ImageFile need not throw ImageErrors (the device wraps what read/write/… throw): a bare errno error.
    seam.size = () => Promise.reject(Object.assign(new Error('EIO: injected failure, fstat'), { code: 'EIO' }));
    truncateSync(r.img.path, 2 << 20);
    let err: unknown;
    await r.device.resize().catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(ImageError);
    expect((err as ImageError).errnoCode).to.equal('EIO');
    expect((err as ImageError).syscall).to.equal('fstat');
    expect((err as ImageError).path).to.equal(r.img.path);
    expect(r.device.capacitySectors).to.equal(2048);
  });

  it('a session ending with I/O in flight drops the results; the next session waits for that I/O', async () => {
    const r = await blkRig({ seam: true });
    const seam = r.seam!;
    seam.hold(0);
    const stale = r.guest.write(0, pattern(4096, 7));
    void stale.catch(() => undefined); // never completes: the driver reset
    await until(() => seam.waiting(0), 'the write at the file');
    await r.guest.fe.reset();
    await until(() => !r.device.active, 'the device to deactivate');
    let drained = false;
    void r.device.drain().then(() => (drained = true));
    const guest2 = new LinuxLikeBlk(r.feDev);
    await guest2.start();
    const read = guest2.read(0, 4096);
    await until(() => r.device.stats.deferred > 0, 'the new session to defer to the old I/O');
    expect(seam.log.filter((l) => l.startsWith('read-start'))).to.deep.equal([]);
    expect(drained).to.equal(false);
    seam.release(0);
    const res = await read;
    expect(res.status).to.equal(OK);
    expect(res.data.equals(pattern(4096, 7))).to.equal(true); // the stale write landed first
    expect(r.device.stats.dropped).to.equal(1);
    await r.device.drain();
    expect(r.device.inFlight).to.equal(0);
    expect(guest2.queue.vring.badUsed).to.deep.equal([]);
    expect(r.needs).to.deep.equal([]);
  });

  it('drain() resolves once the requests are done with their buffers: none is held when it resolves, after a reset too (fuzz seed 2301881)', async () => {
    const r = await blkRig({ seam: true });
    const seam = r.seam!;
    // A live session's read and write.
    seam.hold(0);
    seam.hold(8192);
    const rd = r.guest.read(0, 4096);
    const wr = r.guest.write(16, pattern(4096, 3));
    await until(() => seam.waiting(0) && seam.waiting(8192), 'a read and a write at the file');
    expect(r.device.buffersTaken).to.equal(2);
    const drained = r.device.drain();
    seam.release(0);
    seam.release(8192);
    await drained;
    expect(r.device.buffersTaken).to.equal(0);
    expect((await rd).status).to.equal(OK);
    expect(await wr).to.equal(OK);
    // A write the driver reset left running.
    seam.hold(12288);
    void r.guest.write(24, pattern(4096, 4)).catch(() => undefined);
    await until(() => seam.waiting(12288), 'the write at the file');
    await r.guest.fe.reset();
    await until(() => !r.device.active, 'the device to deactivate');
    const drained2 = r.device.drain();
    seam.release(12288);
    await drained2;
    expect(r.device.inFlight).to.equal(0);
    expect(r.device.buffersTaken).to.equal(0);
  });

  it('a front-end crash with I/O in flight: what was acknowledged is in the file, nothing is written to shared memory afterwards', async () => {
    const r = await blkRig({ seam: true });
    const seam = r.seam!;
    expect(await r.guest.write(0, pattern(4096, 30))).to.equal(OK); // acknowledged before the crash
    expect(await r.guest.write(128, pattern(4096, 32))).to.equal(OK); // what the held read will find
    seam.hold(8192);
    seam.hold(65536);
    void r.guest.write(16, pattern(4096, 31));
    void r.guest.read(128, 4096);
    await until(() => seam.waiting(8192) && seam.waiting(65536), 'a write and a read at the file');
    r.feDev.close(); // the front-end is gone, its requests still running
    await until(() => !r.device.active, 'the session to end');
    for (let k = 0; k < 3; k++) await turn(); // the transport's own re-initialisation, if any
    const before = Buffer.from(r.be.window.slice(0));
    seam.release(8192);
    seam.release(65536);
    await r.device.drain();
    for (let k = 0; k < 5; k++) await turn();
    expect(Buffer.from(r.be.window).equals(before), 'the window after the running I/O finished').to.equal(true);
    expect(r.device.stats.dropped).to.equal(2);
    const file = readFileSync(r.img.path);
    expect(file.subarray(0, 4096).equals(pattern(4096, 30))).to.equal(true);
    expect(file.subarray(8192, 12288).equals(pattern(4096, 31))).to.equal(true); // the running write lands
    expect(r.device.stats.lastEnd).to.equal('driver-gone');
  });

  it('MQ: --queues 2 offers MQ and num_queues; requests on both queues are served', async () => {
    const r = await blkRig({ device: { queues: 2 }, maxQueues: 2 });
    expect(r.guest.features & featureBit(BlkFeature.MQ)).to.not.equal(0n);
    expect(r.guest.queueCount).to.equal(2);
    const data = pattern(256 << 10, 8);
    const writes = [];
    for (let i = 0; i < 8; i++) writes.push(r.guest.write(i * 64, data.subarray(i * 32768, (i + 1) * 32768)));
    expect(await Promise.all(writes)).to.deep.equal(new Array(8).fill(OK));
    expect(new Set(r.guest.posted.map((p) => p.queue))).to.deep.equal(new Set([0, 1]));
    expect(readFileSync(r.img.path).subarray(0, 256 << 10).equals(data)).to.equal(true);
    expect(r.device.queueCount(0n)).to.equal(1);
  });

  it('MQ: a queue waiting for the device-wide byte bound is served before a busy queue takes it all again', async () => {
    // maxInFlightBytes fits one 4-KiB read: each completion frees room for exactly one request.
    const r = await blkRig({ seam: true, device: { queues: 2, maxInFlightBytes: 4096, cachedReads: false }, maxQueues: 2 });
    const seam = r.seam!;
    const read = (sector: number, queue: number): Promise<unknown> =>
      r.guest.submit([blkHeader(BlkRequestType.IN, sector)], [4096, 1], queue);
    seam.hold(0);
    const busy = Array.from({ length: 8 }, (_, i) => read(i * 8, 0)); // queue 0: eight reads
    await until(() => seam.waiting(0), 'the first read of queue 0 at the file');
    const other = read(1024, 1); // queue 1: one read, posted while the bound is taken
    await until(() => r.guest.fe.queues[1].vring.inFlight === 1, 'the read of queue 1 posted');
    for (let k = 0; k < 3; k++) await turn(); // its kick served: nothing to start, the bound is taken
    seam.release(0);
    await Promise.all([...busy, other]);
    const starts = seam.log.filter((l) => l.startsWith('read-start')).map((l) => Number(l.split(' ')[1]) / 512);
    // Queue 1's read starts within one completion per queue, not after queue 0 ran dry.
    expect(starts.indexOf(1024), `read starts ${starts.join(', ')}`).to.be.at.most(2);
  });
});
