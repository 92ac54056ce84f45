/**
 * BlockDevice on the real VirtioBackend over a loopback pair, driven by the Linux-like virtio_blk
 * double: every request type, every malformed request, read-only, limits (issue 11 item 2).
 */
import { expect } from 'chai';
import { readFileSync, statSync, truncateSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { BLK_ID_BYTES, BlkConfig, BlkFeature, BlkRequestType, BlkStatus, VIRTQ_DESC_F_WRITE, VirtioFeatureMask, featureBit } from 'virtio-spec-types';
import { LINUX_BLK_FEATURES, blkHeader } from '../../transport/test/fixtures/linux-like-blk.js';
import { defaultSerial } from '../src/device.js';
import { blkRig, closeRigs, pattern } from './fixtures/rig.js';
import { until } from '../../transport/test/fixtures/until.js';

const { OK, IOERR, UNSUPP } = BlkStatus;

function dwz(sector: number, sectors: number, flags = 0): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, BigInt(sector), true);
  dv.setUint32(8, sectors, true);
  dv.setUint32(12, flags, true);
  return b;
}

describe('virtio-blk device: request types (VIRTIO 1.2 §5.2.6)', () => {
  afterEach(closeRigs);

  it('offers the features and config a Linux driver reads', async () => {
    const r = await blkRig({ size: 3 << 20 });
    const f = r.guest.features;
    for (const bit of [BlkFeature.SIZE_MAX, BlkFeature.SEG_MAX, BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.TOPOLOGY, BlkFeature.DISCARD, BlkFeature.WRITE_ZEROES]) {
      expect(f & featureBit(bit), `bit ${bit}`).to.not.equal(0n);
    }
    expect(f & featureBit(BlkFeature.RO)).to.equal(0n);
    expect(f & featureBit(BlkFeature.MQ)).to.equal(0n);
    expect(f & VirtioFeatureMask.RING_INDIRECT_DESC).to.not.equal(0n);
    expect(r.guest.capacity).to.equal((3 << 20) / 512);
    expect(r.guest.sizeMax).to.equal(65536);
    expect(r.guest.segMax).to.equal(64);
    expect(r.guest.blkSize).to.equal(512);
    expect(await r.guest.fe.readConfig(BlkConfig.MAX_DISCARD_SEG, 4)).to.be.greaterThan(0);
  });

  it('every config field Linux 6.1 reads: topology, queues, discard and write-zeroes limits, at blk_size 512 and 4096', async () => {
    const cfg = async (r: Awaited<ReturnType<typeof blkRig>>) => {
      const rd = (off: number, w: 1 | 2 | 4) => r.guest.fe.readConfig(off, w);
      return {
        blkSize: await rd(BlkConfig.BLK_SIZE, 4),
        physicalBlockExp: await rd(BlkConfig.PHYSICAL_BLOCK_EXP, 1),
        alignmentOffset: await rd(BlkConfig.ALIGNMENT_OFFSET, 1),
        minIoSize: await rd(BlkConfig.MIN_IO_SIZE, 2),
        optIoSize: await rd(BlkConfig.OPT_IO_SIZE, 4),
        numQueues: await rd(BlkConfig.NUM_QUEUES, 2),
        maxDiscardSectors: await rd(BlkConfig.MAX_DISCARD_SECTORS, 4),
        maxDiscardSeg: await rd(BlkConfig.MAX_DISCARD_SEG, 4),
        discardSectorAlignment: await rd(BlkConfig.DISCARD_SECTOR_ALIGNMENT, 4),
        maxWriteZeroesSectors: await rd(BlkConfig.MAX_WRITE_ZEROES_SECTORS, 4),
        maxWriteZeroesSeg: await rd(BlkConfig.MAX_WRITE_ZEROES_SEG, 4),
        writeZeroesMayUnmap: await rd(BlkConfig.WRITE_ZEROES_MAY_UNMAP, 1),
      };
    };
    const limits = { maxDiscardSectors: 65536, maxDiscardSeg: 8, maxWriteZeroesSectors: 65536, maxWriteZeroesSeg: 8, writeZeroesMayUnmap: 0, alignmentOffset: 0, optIoSize: 0 };
    // 512-byte blocks: a 4 KiB physical block (Linux: physical = blk_size << exp, io_min = blk_size · min_io_size)
    const a = await blkRig({ device: { queues: 3 } });
    expect(await cfg(a)).to.deep.equal({ ...limits, blkSize: 512, physicalBlockExp: 3, minIoSize: 8, numQueues: 3, discardSectorAlignment: 1 });
    // 4 KiB blocks: discard granularity (alignment · 512) is one block
    const b = await blkRig({ device: { blockSize: 4096 } });
    expect(await cfg(b)).to.deep.equal({ ...limits, blkSize: 4096, physicalBlockExp: 0, minIoSize: 1, numQueues: 1, discardSectorAlignment: 8 });
  });

  it('at every block size 512…65536 the discard / write-zeroes limits are whole blocks and the discard alignment is one block (Linux splits on them)', async () => {
    for (let blockSize = 512; blockSize <= 65536; blockSize *= 2) {
      const r = await blkRig({ size: 256 << 10, device: { blockSize } });
      const rd = (off: number): Promise<number> => r.guest.fe.readConfig(off, 4);
      const perBlock = blockSize / 512;
      expect(await rd(BlkConfig.DISCARD_SECTOR_ALIGNMENT), `${blockSize}`).to.equal(perBlock);
      expect((await rd(BlkConfig.MAX_DISCARD_SECTORS)) % perBlock, `${blockSize}`).to.equal(0);
      expect((await rd(BlkConfig.MAX_WRITE_ZEROES_SECTORS)) % perBlock, `${blockSize}`).to.equal(0);
      // a whole-disk discard (whole blocks at any block size) is served
      expect((await r.guest.submit([blkHeader(BlkRequestType.DISCARD, 0), dwz(0, 512)], [1])).status, `${blockSize}`).to.equal(OK);
      await closeRigs();
    }
  });

  it('IN/OUT: writes land in the image at the sector and read back, across many segments and requests', async () => {
    const r = await blkRig({ size: 8 << 20 });
    const data = pattern(5 << 20, 1); // > seg_max · size_max: several requests in flight at once
    expect(await r.guest.write(100, data)).to.equal(OK);
    const file = readFileSync(r.img.path);
    expect(file.subarray(100 * 512, 100 * 512 + data.length).equals(data)).to.equal(true);
    expect(file.subarray(0, 100 * 512).every((b) => b === 0)).to.equal(true);
    const back = await r.guest.read(100, data.length);
    expect(back.status).to.equal(OK);
    expect(back.data.equals(data)).to.equal(true);
    expect(r.guest.posted.some((p) => p.out.length > 2)).to.equal(true); // multi-segment data
    expect(r.needs).to.deep.equal([]);
  });

  it('FLUSH completes OK after fdatasync', async () => {
    const r = await blkRig({ seam: true });
    expect(await r.guest.write(0, pattern(4096, 2))).to.equal(OK);
    expect(await r.guest.flush()).to.equal(OK);
    expect(r.seam!.log.slice(-2)).to.deep.equal(['datasync-start', 'datasync-done']);
  });

  it('GET_ID: the configured serial, NUL-padded to 20 bytes; default derived from the path', async () => {
    const r = await blkRig({ device: { serial: 'vshm-disk-0' } });
    const id = await r.guest.getId();
    expect(id).to.deep.equal({ status: OK, serial: 'vshm-disk-0' });
    const raw = await r.guest.submit([blkHeader(BlkRequestType.GET_ID, 0)], [BLK_ID_BYTES, 1]);
    expect(Buffer.from(raw.data).toString('latin1')).to.equal('vshm-disk-0'.padEnd(20, '\0'));
    const d = await blkRig();
    expect((await d.guest.getId()).serial).to.equal(defaultSerial(d.img.path));
    expect(defaultSerial(d.img.path)).to.match(/^[0-9a-f]{20}$/);
  });

  it('WRITE_ZEROES and DISCARD zero their ranges; DISCARD with unmap is UNSUPP; out of range is IOERR', async () => {
    const r = await blkRig({ size: 1 << 20 });
    expect(await r.guest.write(0, pattern(64 << 10, 3))).to.equal(OK);
    const wz = await r.guest.submit([blkHeader(BlkRequestType.WRITE_ZEROES, 0), dwz(8, 8, 1)], [1]);
    expect(wz.status).to.equal(OK);
    const dc = await r.guest.submit([blkHeader(BlkRequestType.DISCARD, 0), dwz(32, 4), dwz(64, 2)], [1]);
    expect(dc.status).to.equal(OK);
    const file = readFileSync(r.img.path);
    const p = pattern(64 << 10, 3);
    expect(file.subarray(8 * 512, 16 * 512).every((b) => b === 0)).to.equal(true);
    expect(file.subarray(32 * 512, 36 * 512).every((b) => b === 0)).to.equal(true);
    expect(file.subarray(64 * 512, 66 * 512).every((b) => b === 0)).to.equal(true);
    expect(file.subarray(0, 8 * 512).equals(p.subarray(0, 8 * 512))).to.equal(true);
    expect(file.subarray(36 * 512, 64 * 512).equals(p.subarray(36 * 512, 64 * 512))).to.equal(true);
    expect((await r.guest.submit([blkHeader(BlkRequestType.DISCARD, 0), dwz(0, 1, 1)], [1])).status).to.equal(UNSUPP);
    expect((await r.guest.submit([blkHeader(BlkRequestType.WRITE_ZEROES, 0), dwz(0, 1, 2)], [1])).status).to.equal(UNSUPP);
    expect((await r.guest.submit([blkHeader(BlkRequestType.WRITE_ZEROES, 0), dwz(2047, 2)], [1])).status).to.equal(IOERR);
    expect((await r.guest.submit([blkHeader(BlkRequestType.DISCARD, 0), new Uint8Array(8)], [1])).status).to.equal(IOERR);
    expect(readFileSync(r.img.path).length).to.equal(1 << 20); // nothing written past the end
  });

  it('DISCARD / WRITE_ZEROES not negotiated: UNSUPP', async () => {
    const features = featureBit(BlkFeature.FLUSH) | featureBit(BlkFeature.SIZE_MAX) | featureBit(BlkFeature.SEG_MAX);
    const r = await blkRig({ features });
    expect((await r.guest.submit([blkHeader(BlkRequestType.DISCARD, 0), dwz(0, 1)], [1])).status).to.equal(UNSUPP);
    expect((await r.guest.submit([blkHeader(BlkRequestType.WRITE_ZEROES, 0), dwz(0, 1)], [1])).status).to.equal(UNSUPP);
  });

  it('an unknown type is UNSUPP', async () => {
    const r = await blkRig();
    for (const t of [2, 5, 7, 14, 0xffffffff]) {
      expect((await r.guest.submit([blkHeader(t, 0)], [1])).status, `type ${t}`).to.equal(UNSUPP);
    }
    expect(r.device.stats.faults.unsupported).to.equal(5);
  });
});

describe('virtio-blk device: any segmentation and malformed requests', () => {
  afterEach(closeRigs);

  it('a header split over several descriptors is served', async () => {
    const r = await blkRig();
    await r.guest.write(4, pattern(1024, 4));
    const h = blkHeader(BlkRequestType.IN, 4);
    const res = await r.guest.submit([h.subarray(0, 3), h.subarray(3, 11), h.subarray(11)], [1024, 1]);
    expect(res.status).to.equal(OK);
    expect(Buffer.from(res.data).equals(pattern(1024, 4))).to.equal(true);
    const w = blkHeader(BlkRequestType.OUT, 10);
    const data = pattern(512, 5);
    // header split, and header tail + data in one descriptor
    const joined = Buffer.concat([w.subarray(7), data.subarray(0, 100)]);
    const res2 = await r.guest.submit([w.subarray(0, 7), joined, data.subarray(100)], [1]);
    expect(res2.status).to.equal(OK);
    expect(readFileSync(r.img.path).subarray(10 * 512, 11 * 512).equals(data)).to.equal(true);
  });

  it('the status byte at the end of the last data descriptor, data over many descriptors', async () => {
    const r = await blkRig();
    await r.guest.write(0, pattern(2048, 6));
    const res = await r.guest.submit([blkHeader(BlkRequestType.IN, 0)], [100, 412, 1000, 537]);
    expect(res.status).to.equal(OK);
    expect(res.len).to.equal(2049);
    expect(Buffer.from(res.data).equals(pattern(2048, 6))).to.equal(true);
  });

  it('no writable status byte: the chain comes back with 0 bytes and nothing is written', async () => {
    const r = await blkRig();
    const res = await r.guest.submit([blkHeader(BlkRequestType.OUT, 0), pattern(512, 7), new Uint8Array(1)], []);
    expect(res.len).to.equal(0);
    expect(res.status).to.equal(-1);
    expect(r.device.stats.noStatus).to.equal(1);
    expect(readFileSync(r.img.path).every((b) => b === 0)).to.equal(true);
    expect(r.needs).to.deep.equal([]);
  });

  it('a zero-length status descriptor: the last data byte becomes the status, IOERR (misaligned)', async () => {
    const r = await blkRig();
    const res = await r.guest.submit([blkHeader(BlkRequestType.IN, 0)], [512, 0]);
    expect(res.status).to.equal(IOERR);
    const res2 = await r.guest.submit([blkHeader(BlkRequestType.FLUSH, 0)], [0]);
    expect(res2.len).to.equal(0); // nothing writable at all: no status can be given
  });

  it('out-of-range sectors are IOERR and never touch the file', async () => {
    const r = await blkRig({ size: 64 << 10 });
    const cap = 128;
    const cases: Array<[number, number]> = [[cap, 512], [cap - 1, 1024], [2 ** 40, 512], [2 ** 53 - 1, 512]];
    for (const [sector, len] of cases) {
      expect((await r.guest.submit([blkHeader(BlkRequestType.OUT, sector), pattern(len, 8)], [1])).status, `OUT ${sector}`).to.equal(IOERR);
      expect((await r.guest.submit([blkHeader(BlkRequestType.IN, sector)], [len, 1])).status, `IN ${sector}`).to.equal(IOERR);
    }
    const hi = blkHeader(BlkRequestType.IN, 0);
    new DataView(hi.buffer).setUint32(12, 0x80000000, true);
    expect((await r.guest.submit([hi], [512, 1])).status).to.equal(IOERR);
    expect((await r.guest.submit([blkHeader(BlkRequestType.IN, cap - 1)], [512, 1])).status).to.equal(OK); // the last sector is fine
    expect(readFileSync(r.img.path).length).to.equal(64 << 10);
    expect(r.device.stats.faults['out-of-range']).to.equal(9);
  });

  it('a disk over 2 TiB: sectors at and past 2^32 are served (the header sector is a u64), past capacity still IOERR', async () => {
    const size = 3 * 2 ** 40; // sparse: 6·2^30 sectors, more than a u32 holds
    const r = await blkRig({ size: 4096, sparseSize: size });
    expect(r.guest.capacity).to.equal(size / 512);
    const high = 2 ** 32 + 8;
    const data = pattern(4096, 12);
    expect(await r.guest.write(high, data)).to.equal(OK);
    const back = await r.guest.read(high, 4096);
    expect(back.status).to.equal(OK);
    expect(back.data.equals(data)).to.equal(true);
    // the bytes are where sector 2^32 + 8 is, not where its low u32 (sector 8) is
    const fh = await open(r.img.path, 'r');
    const at = Buffer.alloc(4096);
    await fh.read(at, 0, 4096, high * 512);
    const low = Buffer.alloc(4096);
    await fh.read(low, 0, 4096, 8 * 512);
    await fh.close();
    expect(at.equals(data)).to.equal(true);
    expect(low.every((b) => b === 0)).to.equal(true);
    // a request across the 2^32 boundary, and DISCARD / WRITE_ZEROES segments up there
    expect(await r.guest.write(2 ** 32 - 4, pattern(4096, 13))).to.equal(OK);
    expect((await r.guest.read(2 ** 32 - 4, 4096)).data.equals(pattern(4096, 13))).to.equal(true);
    expect((await r.guest.submit([blkHeader(BlkRequestType.WRITE_ZEROES, 0), dwz(high, 4)], [1])).status).to.equal(OK);
    expect((await r.guest.submit([blkHeader(BlkRequestType.DISCARD, 0), dwz(high + 4, 4)], [1])).status).to.equal(OK);
    expect((await r.guest.read(high, 4096)).data.every((b) => b === 0)).to.equal(true);
    // the end is still the end
    const cap = size / 512;
    expect((await r.guest.read(cap - 1, 512)).status).to.equal(OK);
    expect((await r.guest.read(cap, 512)).status).to.equal(IOERR);
    expect((await r.guest.submit([blkHeader(BlkRequestType.WRITE_ZEROES, 0), dwz(cap - 1, 2)], [1])).status).to.equal(IOERR);
    expect(statSync(r.img.path).size).to.equal(size);
  });

  it('misaligned (not a multiple of 512 / blk_size) and oversize requests are IOERR', async () => {
    const r = await blkRig({ device: { blockSize: 4096, sizeMax: 4096, segMax: 4 } });
    expect(r.guest.blkSize).to.equal(4096);
    expect((await r.guest.submit([blkHeader(BlkRequestType.IN, 0)], [100, 1])).status).to.equal(IOERR);
    expect((await r.guest.submit([blkHeader(BlkRequestType.IN, 0)], [512, 1])).status).to.equal(IOERR); // < blk_size
    expect((await r.guest.submit([blkHeader(BlkRequestType.IN, 1)], [4096, 1])).status).to.equal(IOERR); // sector not on a block
    expect((await r.guest.submit([blkHeader(BlkRequestType.OUT, 8), pattern(4096 + 512, 9)], [1])).status).to.equal(IOERR);
    expect((await r.guest.submit([blkHeader(BlkRequestType.IN, 0)], [4096, 4096, 4096, 4096, 4096, 1])).status).to.equal(IOERR); // > 16 KiB
    expect((await r.guest.submit([blkHeader(BlkRequestType.IN, 8)], [4096, 4096, 4096, 4096, 1])).status).to.equal(OK);
    expect(r.device.stats.faults.misaligned).to.equal(4);
    expect(r.device.stats.faults.oversize).to.equal(1);
  });

  it('blk_size 4096 on an image that is not a multiple of it: the capacity is its whole blocks, also after a resize', async () => {
    // 3 blocks + 1536 bytes: three sectors of a fourth block that can never be read or written whole
    const r = await blkRig({ size: 3 * 4096 + 1536, device: { blockSize: 4096 } });
    expect(r.guest.capacity).to.equal(24);
    expect(r.device.capacitySectors).to.equal(24);
    expect((await r.guest.read(16, 4096)).status).to.equal(OK); // the last whole block
    expect((await r.guest.read(24, 4096)).status).to.equal(IOERR); // the partial one
    truncateSync(r.img.path, 5 * 4096 + 4095);
    expect(await r.device.resize()).to.equal(40);
    await until(() => r.guest.capacity === 40, 'the new capacity at the guest');
    expect((await r.guest.submit([blkHeader(BlkRequestType.WRITE_ZEROES, 0), dwz(40, 8)], [1])).status).to.equal(IOERR);
    expect(statSync(r.img.path).size).to.equal(5 * 4096 + 4095);
  });

  it('data in the wrong direction for the type is IOERR', async () => {
    const r = await blkRig();
    const cases: Array<[string, Uint8Array[], number[]]> = [
      ['IN with data-out', [blkHeader(BlkRequestType.IN, 0), pattern(512, 1)], [1]],
      ['IN with both', [blkHeader(BlkRequestType.IN, 0), pattern(512, 1)], [512, 1]],
      ['OUT with data-in', [blkHeader(BlkRequestType.OUT, 0)], [512, 1]],
      ['FLUSH with data-out', [blkHeader(BlkRequestType.FLUSH, 0), pattern(512, 1)], [1]],
      ['FLUSH with data-in', [blkHeader(BlkRequestType.FLUSH, 0)], [512, 1]],
      ['GET_ID without buffer', [blkHeader(BlkRequestType.GET_ID, 0)], [1]],
      ['GET_ID with data-out', [blkHeader(BlkRequestType.GET_ID, 0), pattern(20, 1)], [20, 1]],
      ['WRITE_ZEROES with data-in', [blkHeader(BlkRequestType.WRITE_ZEROES, 0), dwz(0, 1)], [512, 1]],
      ['header only 8 bytes', [blkHeader(BlkRequestType.IN, 0).subarray(0, 8)], [512, 1]],
    ];
    for (const [what, out, inLens] of cases) {
      expect((await r.guest.submit(out, inLens)).status, what).to.equal(IOERR);
    }
    expect(readFileSync(r.img.path).every((b) => b === 0)).to.equal(true);
    expect(r.needs).to.deep.equal([]);
  });

  it('GET_ID into a buffer shorter or longer than 20 bytes: OK, the serial cut to the buffer (as QEMU), no image I/O', async () => {
    const r = await blkRig({ seam: true, device: { serial: 'vshm-disk-0' } });
    const one = await r.guest.submit([blkHeader(BlkRequestType.GET_ID, 0)], [1, 1]);
    expect([one.status, one.len, Buffer.from(one.data).toString('latin1')]).to.deep.equal([OK, 2, 'v']);
    // a 64-byte buffer: the 20-byte NUL-padded ID at its start
    const big = await r.guest.submit([blkHeader(BlkRequestType.GET_ID, 0)], [64, 1]);
    expect(big.status).to.equal(OK);
    expect(Buffer.from(big.data.subarray(0, 20)).toString('latin1')).to.equal('vshm-disk-0'.padEnd(20, '\0'));
    expect(r.seam!.log).to.deep.equal([]); // no image I/O
  });

  it('DISCARD / WRITE_ZEROES segments of 0 sectors: OK without touching the image (no fallocate of 0 bytes); past the end still IOERR', async () => {
    const r = await blkRig({ seam: true, size: pattern(64 << 10, 21) });
    for (const t of [BlkRequestType.DISCARD, BlkRequestType.WRITE_ZEROES]) {
      expect((await r.guest.submit([blkHeader(t, 0), dwz(8, 0)], [1])).status, `type ${t}`).to.equal(OK);
      expect((await r.guest.submit([blkHeader(t, 0), dwz(128, 0)], [1])).status, `type ${t} at the end`).to.equal(OK);
      expect((await r.guest.submit([blkHeader(t, 0), dwz(129, 0)], [1])).status, `type ${t} past the end`).to.equal(IOERR);
    }
    expect(r.seam!.log).to.deep.equal([]);
    expect(readFileSync(r.img.path).equals(pattern(64 << 10, 21))).to.equal(true);
  });

  it('a DISCARD / WRITE_ZEROES payload with one bad segment applies none of them (the good ones neither)', async () => {
    const content = pattern(64 << 10, 22);
    const r = await blkRig({ seam: true, size: content, device: { blockSize: 4096 } });
    const cases: Array<[string, number, Uint8Array[], number]> = [
      ['past the end', BlkRequestType.WRITE_ZEROES, [dwz(0, 8), dwz(120, 16)], IOERR],
      ['misaligned to blk_size', BlkRequestType.DISCARD, [dwz(0, 8), dwz(12, 8)], IOERR],
      ['not whole blocks', BlkRequestType.WRITE_ZEROES, [dwz(16, 8), dwz(32, 4)], IOERR],
      ['above max_discard_sectors', BlkRequestType.DISCARD, [dwz(0, 8), dwz(8, 65536 + 8)], IOERR],
      ['unmap on DISCARD', BlkRequestType.DISCARD, [dwz(0, 8), dwz(8, 8, 1)], UNSUPP],
      ['an unknown flag', BlkRequestType.WRITE_ZEROES, [dwz(0, 8), dwz(8, 8, 4)], UNSUPP],
      ['9 segments (max_*_seg is 8)', BlkRequestType.DISCARD, Array.from({ length: 9 }, (_, i) => dwz(i * 8, 8)), IOERR],
      ['a payload of 24 bytes', BlkRequestType.WRITE_ZEROES, [dwz(0, 8), new Uint8Array(8)], IOERR],
      ['data-in too', BlkRequestType.DISCARD, [dwz(0, 8)], IOERR],
    ];
    for (const [what, type, segs, status] of cases) {
      const inLens = what === 'data-in too' ? [4096, 1] : [1];
      expect((await r.guest.submit([blkHeader(type, 0), ...segs], inLens)).status, what).to.equal(status);
    }
    expect(r.seam!.log).to.deep.equal([]);
    expect(readFileSync(r.img.path).equals(content)).to.equal(true);
    expect(r.needs).to.deep.equal([]);
  });

  it('a DISCARD whose second segment fails on an image error: IOERR, the first stays zeroed, nothing else changes (decisions, stop 27)', async () => {
    const content = pattern(64 << 10, 25);
    const r = await blkRig({ seam: true, size: content });
    const seam = r.seam!;
    seam.hold(16 * 512);
    const res = r.guest.submit([blkHeader(BlkRequestType.DISCARD, 0), dwz(0, 8), dwz(16, 8), dwz(40, 8)], [1]);
    await until(() => seam.waiting(16 * 512), 'the second segment at the image');
    seam.failNext = { op: 'zero', code: 'EIO' };
    seam.release(16 * 512);
    expect((await res).status).to.equal(IOERR);
    const want = Buffer.from(content);
    want.fill(0, 0, 8 * 512); // applied before the failure; not rolled back
    expect(readFileSync(r.img.path).equals(want)).to.equal(true);
    expect(seam.log.filter((l) => l.startsWith('zero-start'))).to.deep.equal(['zero-start 0 4096 discard', 'zero-start 8192 4096 discard']);
  });

  it('a status byte that is not the last writable byte: the device takes the last one (the spec\'s layout); nothing reaches the image', async () => {
    const content = pattern(64 << 10, 23);
    const r = await blkRig({ seam: true, size: content });
    // OUT whose driver put its status first and a data-in buffer after: data-in on an OUT, IOERR
    const out = await r.guest.submit([blkHeader(BlkRequestType.OUT, 0), pattern(512, 24)], [1, 512]);
    expect(out.status).to.equal(IOERR);
    // FLUSH with a writable buffer after its status: IOERR, and no fdatasync ran for it
    const fl = await r.guest.submit([blkHeader(BlkRequestType.FLUSH, 0)], [1, 16]);
    expect(fl.status).to.equal(IOERR);
    // IN with the status first: 1 + 511 data bytes and a misaligned length — IOERR; with 1 + 512, a
    // 512-byte read whose data lands one byte early (the driver's layout, not the device's)
    expect((await r.guest.submit([blkHeader(BlkRequestType.IN, 0)], [1, 511])).status).to.equal(IOERR);
    const shifted = await r.guest.submit([blkHeader(BlkRequestType.IN, 0)], [1, 512]);
    expect(shifted.status).to.equal(OK);
    expect(Buffer.from(shifted.data).equals(content.subarray(0, 512))).to.equal(true);
    expect(r.seam!.log.filter((l) => !l.startsWith('read'))).to.deep.equal([]);
    expect(readFileSync(r.img.path).equals(content)).to.equal(true);
  });

  it('a chain breaking the ring rules (readable after writable, §6.3.5) is the transport\'s: NEEDS_RESET, nothing written', async () => {
    const r = await blkRig({ seam: true, features: LINUX_BLK_FEATURES & ~VirtioFeatureMask.RING_INDIRECT_DESC });
    const q = r.guest.queue;
    q.add([blkHeader(BlkRequestType.OUT, 0), pattern(512, 1)], [1], null as never);
    // The chain is hdr → data → status; make the header device-writable: readable data follows a writable one.
    const dv = new DataView(r.feDev.window);
    const head = dv.getUint16(q.vring.avail + 4, true);
    const flags = q.vring.desc + 16 * head + 12;
    dv.setUint16(flags, dv.getUint16(flags, true) | VIRTQ_DESC_F_WRITE, true);
    q.kick();
    await until(() => r.needs.length > 0, 'DEVICE_NEEDS_RESET');
    expect((r.needs[0] as Error & { code: string }).code).to.equal('VSHM_ERR_DESC_ORDER');
    await until(() => !r.device.active, 'the session to end');
    expect(r.device.stats.lastEnd).to.equal('needs-reset');
    expect(r.seam!.log).to.deep.equal([]);
  });

  it('read-only: RO offered, OUT / WRITE_ZEROES / DISCARD are IOERR, reads and FLUSH work', async () => {
    const r = await blkRig({ size: pattern(64 << 10, 10), device: { readOnly: true } });
    expect(r.guest.readOnly).to.equal(true);
    expect(r.guest.features & featureBit(BlkFeature.DISCARD)).to.equal(0n);
    expect(await r.guest.write(0, pattern(512, 11))).to.equal(IOERR);
    expect((await r.guest.submit([blkHeader(BlkRequestType.WRITE_ZEROES, 0), dwz(0, 1)], [1])).status).to.not.equal(OK);
    expect((await r.guest.read(0, 4096)).data.equals(pattern(64 << 10, 10).subarray(0, 4096))).to.equal(true);
    expect(await r.guest.flush()).to.equal(OK);
    expect(readFileSync(r.img.path).equals(pattern(64 << 10, 10))).to.equal(true);
  });
});
