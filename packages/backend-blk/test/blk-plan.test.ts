/**
 * The pure request checks (request.ts), the device's option checks, ImageError wrapping, and a
 * seeded random-request run on the loopback pair: every status is one of the three, the image
 * never grows, the transport never breaks.
 */
import { expect } from 'chai';
import { VshmError } from '@vshm/transport';
import { readFileSync } from 'node:fs';
import { BlkRequestType, BlkStatus } from 'virtio-spec-types';
import { blkHeader } from '../../transport/test/fixtures/linux-like-blk.js';
import { BlockDevice, BlockOptionError } from '../src/device.js';
import { ImageError, type ImageFile } from '../src/image.js';
import { checkRange, planRequest, planSegments, sectorPosition, type RequestLimits } from '../src/request.js';
import { blkRig, closeRigs } from './fixtures/rig.js';

const limits = (o: Partial<RequestLimits> = {}): RequestLimits => ({
  capacityBytes: 1 << 20, blockSize: 512, maxTransfer: 65536, readOnly: false, discard: true, writeZeroes: true, maxDwzSegments: 8, ...o,
});

describe('virtio-blk request checks (request.ts)', () => {
  it('plans each type from the header copy and the byte counts', () => {
    const l = limits();
    expect(planRequest(blkHeader(BlkRequestType.IN, 2), 16, 513, l)).to.deep.equal({ op: 'in', position: 1024, length: 512 });
    expect(planRequest(blkHeader(BlkRequestType.OUT, 2), 16 + 1024, 1, l)).to.deep.equal({ op: 'out', position: 1024, length: 1024 });
    expect(planRequest(blkHeader(BlkRequestType.FLUSH, 99), 16, 1, l)).to.deep.equal({ op: 'flush' });
    expect(planRequest(blkHeader(BlkRequestType.GET_ID, 0), 16, 21, l)).to.deep.equal({ op: 'get-id', length: 20 });
    expect(planRequest(blkHeader(BlkRequestType.DISCARD, 0), 48, 1, l)).to.deep.equal({ op: 'discard', segments: 2 });
    expect(planRequest(blkHeader(BlkRequestType.WRITE_ZEROES, 0), 32, 1, l)).to.deep.equal({ op: 'write-zeroes', segments: 1 });
    expect(planRequest(blkHeader(BlkRequestType.IN, 0), 16, 1, l)).to.deep.equal({ op: 'in', position: 0, length: 0 });
  });

  it('refuses what it must, with the right status', () => {
    const l = limits();
    const f = (t: number, s: number, r: number, w: number, lim = l) => planRequest(blkHeader(t, s), r, w, lim);
    expect(f(BlkRequestType.IN, 0, 16, 0)).to.deep.equal({ op: 'none' });
    expect(f(BlkRequestType.IN, 0, 15, 513)).to.deep.include({ status: 'IOERR', fault: 'short-header' });
    expect(f(BlkRequestType.IN, 2048, 16, 513)).to.deep.include({ status: 'IOERR', fault: 'out-of-range' });
    expect(f(BlkRequestType.IN, 0, 16, 65536 + 513)).to.deep.include({ fault: 'oversize' });
    expect(f(BlkRequestType.OUT, 0, 16 + 512, 1, limits({ readOnly: true }))).to.deep.include({ fault: 'read-only' });
    expect(f(BlkRequestType.DISCARD, 0, 32, 1, limits({ discard: false }))).to.deep.include({ status: 'UNSUPP' });
    expect(f(BlkRequestType.DISCARD, 0, 16 + 9 * 16, 1)).to.deep.include({ fault: 'bad-segments' });
    expect(f(BlkRequestType.WRITE_ZEROES, 0, 16 + 17, 1)).to.deep.include({ fault: 'bad-segments' });
    expect(f(3, 0, 16, 1)).to.deep.include({ status: 'UNSUPP' });
    expect(checkRange(2047, 0, 512, l)).to.equal(null);
    expect(checkRange(2047, 0, 1024, l)).to.equal('out-of-range');
    expect(checkRange(0, 1, 512, l)).to.equal('out-of-range');
    expect(checkRange(1, 0, 4096, limits({ blockSize: 4096 }))).to.equal('misaligned');
    // a huge sector whose byte offset is not exactly representable still fails cleanly
    expect(checkRange(0xffffffff, 0, 512, limits({ capacityBytes: 2 ** 50 }))).to.equal(null);
    // the high u32 of the sector counts (disks of 2 TiB and more); 2^44 and up is past any image
    expect(checkRange(0, 1, 512, limits({ capacityBytes: 2 ** 42 }))).to.equal(null);
    expect(checkRange(0, 2, 512, limits({ capacityBytes: 2 ** 42 }))).to.equal('out-of-range');
    expect(sectorPosition(0xffffffff, 0xfff)).to.equal((2 ** 44 - 1) * 512);
    expect(sectorPosition(0, 0x1000)).to.equal(-1);
    expect(checkRange(0, 0xffffffff, 512, limits({ capacityBytes: Number.MAX_SAFE_INTEGER }))).to.equal('out-of-range');
    expect(planRequest(blkHeader(BlkRequestType.IN, 2 ** 32 + 2), 16, 513, limits({ capacityBytes: 2 ** 42 }))).to.deep.equal({ op: 'in', position: (2 ** 32 + 2) * 512, length: 512 });
  });

  it('checks DISCARD / WRITE_ZEROES segments', () => {
    const seg = (sector: number, n: number, flags: number) => {
      const b = new Uint8Array(16);
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, BigInt(sector), true);
      dv.setUint32(8, n, true);
      dv.setUint32(12, flags, true);
      return b;
    };
    const l = limits();
    expect(planSegments(seg(8, 8, 1), false, 100, l)).to.deep.equal([{ position: 4096, length: 4096, unmap: true }]);
    expect(planSegments(seg(8, 8, 1), true, 100, l)).to.deep.include({ status: 'UNSUPP' });
    expect(planSegments(seg(8, 8, 4), false, 100, l)).to.deep.include({ status: 'UNSUPP' });
    expect(planSegments(seg(8, 101, 0), false, 100, l)).to.deep.include({ status: 'IOERR', fault: 'oversize' });
    expect(planSegments(seg(2040, 9, 0), true, 100, l)).to.deep.include({ status: 'IOERR', fault: 'out-of-range' });
  });
});

describe('BlockDevice options and image errors', () => {
  const img = { path: '/x.img', readOnly: false } as ImageFile;
  it('rejects bad options with BlockOptionError (code VSHM_ERR_ARGUMENT)', () => {
    const bad: object[] = [
      { queues: 0 }, { queues: 65 }, { queueSize: 100 }, { queueSize: 2 }, { blockSize: 1000 }, { blockSize: 256 },
      { sizeMax: 100 }, { segMax: 0 }, { cache: 'none' }, { serial: 'x'.repeat(21) }, { maxInFlight: 0 },
      { serial: 'disk-\u00e9' }, { serial: 'a\0b' }, { serial: 'a\nb' },
    ];
    for (const o of bad) {
      expect(() => new BlockDevice(img, 4096, o), JSON.stringify(o)).to.throw(BlockOptionError).with.property('code', 'VSHM_ERR_ARGUMENT');
    }
    expect(() => new BlockDevice({ ...img, readOnly: true } as ImageFile, 4096, { readOnly: false })).to.throw(BlockOptionError);
    expect(() => new BlockDevice(img, -1)).to.throw(BlockOptionError);
    expect(new BlockDevice(img, 4096 + 100).capacitySectors).to.equal(8);
  });

  it('ImageError keeps the errno name and names the path', () => {
    const e = ImageError.from(Object.assign(new Error("EACCES: permission denied, open '/x.img'"), { code: 'EACCES' }), 'open', '/x.img');
    expect(e).to.be.instanceOf(VshmError);
    expect(e).to.include({ code: 'VSHM_ERR_IMAGE', errnoCode: 'EACCES', path: '/x.img', syscall: 'open' });
    expect(e.message).to.equal('open: /x.img: EACCES (permission denied)');
    expect(e.reason).to.equal('permission denied');
  });
});

describe('virtio-blk device: seeded random requests', () => {
  afterEach(closeRigs);

  it('answers every request with OK, IOERR or UNSUPP, never grows the image, never breaks the ring', async () => {
    const r = await blkRig({ size: 256 << 10 });
    let seed = 0x2545f491;
    const rnd = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const types = [0, 1, 4, 8, 11, 13, 2, 99];
    const pending = [];
    for (let i = 0; i < 300; i++) {
      const t = types[rnd(types.length)];
      const sector = [0, rnd(512), 511, 512, 2 ** 32 + rnd(10), rnd(1 << 30)][rnd(6)];
      const h = blkHeader(t, sector);
      const cut = rnd(17);
      const out: Uint8Array[] = cut > 0 && cut < 16 ? [h.subarray(0, cut), h.subarray(cut)] : [h];
      for (let k = rnd(3); k > 0; k--) out.push(new Uint8Array([1, 16, 512, 100, 4096][rnd(5)]).fill(0xa5));
      const inLens: number[] = [];
      for (let k = rnd(4); k > 0; k--) inLens.push([1, 20, 512, 511, 4096][rnd(5)]);
      pending.push(r.guest.submit(out, inLens));
    }
    const results = await Promise.all(pending);
    for (const res of results) expect([BlkStatus.OK, BlkStatus.IOERR, BlkStatus.UNSUPP, -1]).to.include(res.status);
    expect(results.filter((x) => x.status === BlkStatus.OK).length).to.be.greaterThan(0);
    expect(readFileSync(r.img.path).length).to.equal(256 << 10);
    expect(r.needs).to.deep.equal([]);
    expect(r.guest.queue.vring.badUsed).to.deep.equal([]);
  });
});
