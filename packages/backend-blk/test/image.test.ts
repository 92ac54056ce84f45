/**
 * The image's zeroRange (DISCARD / WRITE_ZEROES, issue 11 item 2): holes punched where the file
 * system can, zero-range in place for WRITE_ZEROES, zeroes written where neither works (for real
 * on tmpfs, and through the image's seam for each refusal code, EINVAL for one range only, a write
 * failing part way), and an I/O error that is not "unsupported" reported as such.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import binding from '@vshm/addon';
import { ImageError, openImage, type ImageFile, type ImageSeam } from '../src/image.js';

const MiB = 1 << 20;

describe('virtio-blk image: zeroRange', () => {
  const dirs: string[] = [];
  const images: ImageFile[] = [];
  afterEach(async () => {
    for (const i of images.splice(0)) await i.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** A 4 MiB image of 0xa5 bytes in `base`, fully allocated. */
  async function image(base: string, opts: { readOnly?: boolean; seam?: ImageSeam } = {}): Promise<{ path: string; img: ImageFile }> {
    const dir = mkdtempSync(join(base, 'vshm-blk-img-'));
    dirs.push(dir);
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(4 * MiB, 0xa5));
    const img = await openImage(path, opts);
    images.push(img);
    return { path, img };
  }
  const zeroed = (path: string, from: number, to: number): boolean => readFileSync(path).subarray(from, to).every((b) => b === 0);
  const untouched = (path: string, from: number, to: number): boolean => readFileSync(path).subarray(from, to).every((b) => b === 0xa5);

  it('discard punches a hole: the range reads as zeroes and its blocks are given back', async () => {
    const { path, img } = await image(tmpdir());
    const before = statSync(path).blocks;
    await img.zeroRange(MiB, 2 * MiB, 'discard');
    expect(statSync(path).size).to.equal(4 * MiB);
    expect(zeroed(path, MiB, 3 * MiB)).to.equal(true);
    expect(untouched(path, 0, MiB) && untouched(path, 3 * MiB, 4 * MiB)).to.equal(true);
    // 2 MiB = 4096 blocks of 512 bytes freed (a file system without hole punching would have
    // fallen back to writing zeroes and freed nothing).
    expect(before - statSync(path).blocks).to.be.at.least(4000);
  });

  it('zeroes keep the range allocated (write_zeroes_may_unmap is 0) and read as zeroes', async () => {
    const { path, img } = await image(tmpdir());
    const before = statSync(path).blocks;
    await img.zeroRange(4096, MiB + 100, 'zeroes');
    expect(zeroed(path, 4096, 4096 + MiB + 100)).to.equal(true);
    expect(untouched(path, 0, 4096) && untouched(path, 4096 + MiB + 100, 4 * MiB)).to.equal(true);
    expect(statSync(path).blocks).to.equal(before);
  });

  it('falls back to writing zeroes where the file system has no zero-range (tmpfs)', async function () {
    if (!existsSync('/dev/shm')) this.skip(); // no tmpfs to try the fallback on
    const { path, img } = await image('/dev/shm');
    await img.zeroRange(MiB - 7, 3 * MiB, 'zeroes'); // tmpfs refuses FALLOC_FL_ZERO_RANGE
    expect(zeroed(path, MiB - 7, 4 * MiB - 7)).to.equal(true);
    expect(untouched(path, 0, MiB - 7) && untouched(path, 4 * MiB - 7, 4 * MiB)).to.equal(true);
    await img.zeroRange(0, 100, 'zeroes'); // the second call goes straight to the fallback
    expect(zeroed(path, 0, 100)).to.equal(true);
  });

  it('every "unsupported" fallocate code takes the zero-writing fallback, and the mode is not asked again', async () => {
    for (const code of ['EOPNOTSUPP', 'ENOTSUP', 'ENOSYS', 'ENODEV']) {
      const asked: number[] = [];
      const { path, img } = await image(tmpdir(), {
        seam: { fallocate: (_fd, _mode, offset) => (asked.push(offset), Promise.reject(Object.assign(new Error(code), { code }))) },
      });
      await img.zeroRange(4096, 3 * MiB - 4096, 'discard'); // three zero chunks
      await img.zeroRange(3 * MiB + 512, 512, 'discard');
      expect(asked, code).to.deep.equal([4096]);
      expect(zeroed(path, 4096, 3 * MiB) && zeroed(path, 3 * MiB + 512, 3 * MiB + 1024), code).to.equal(true);
      expect(untouched(path, 0, 4096) && untouched(path, 3 * MiB, 3 * MiB + 512) && untouched(path, 3 * MiB + 1024, 4 * MiB), code).to.equal(true);
      await img.zeroRange(0, 512, 'zeroes'); // the other mode is still asked
      expect(asked, code).to.deep.equal([4096, 0]);
    }
  });

  it('EINVAL refuses that range only: zeroes written for it, fallocate asked again for the next', async () => {
    const asked: number[] = [];
    const { path, img } = await image(tmpdir(), {
      seam: {
        fallocate: (fd, mode, offset, length) => {
          asked.push(offset);
          return offset === 512 ? Promise.reject(Object.assign(new Error('EINVAL'), { code: 'EINVAL' })) : binding.fallocate(fd, mode, offset, length);
        },
      },
    });
    await img.zeroRange(512, 1024, 'zeroes');
    await img.zeroRange(MiB, MiB, 'zeroes');
    expect(asked).to.deep.equal([512, MiB]);
    expect(zeroed(path, 512, 1536) && zeroed(path, MiB, 2 * MiB)).to.equal(true);
    expect(untouched(path, 0, 512) && untouched(path, 1536, MiB) && untouched(path, 2 * MiB, 4 * MiB)).to.equal(true);
  });

  it('a write failing part way through the fallback: the chunks before it stay zeroed, the rest untouched, an ImageError of the write', async () => {
    const chunks: number[] = [];
    const { path, img } = await image(tmpdir(), {
      seam: {
        fallocate: () => Promise.reject(Object.assign(new Error('EOPNOTSUPP'), { code: 'EOPNOTSUPP' })),
        zeroWrite: async (position) => {
          chunks.push(position);
          if (chunks.length === 2) throw Object.assign(new Error('EIO: injected'), { code: 'EIO' });
        },
      },
    });
    let err: unknown;
    await img.zeroRange(100, 2 * MiB + 100, 'zeroes').catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(ImageError);
    expect((err as ImageError).syscall).to.equal('write');
    expect((err as ImageError).errnoCode).to.equal('EIO');
    expect(chunks).to.deep.equal([100, MiB + 100]);
    expect(zeroed(path, 100, MiB + 100)).to.equal(true);
    expect(untouched(path, 0, 100) && untouched(path, MiB + 100, 4 * MiB)).to.equal(true);
  });

  it('a failure that is not "unsupported" is an ImageError naming fallocate and the path', async () => {
    const { path, img } = await image(tmpdir(), { readOnly: true });
    let err: unknown;
    try {
      await img.zeroRange(0, 4096, 'discard');
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(ImageError);
    expect((err as ImageError).errnoCode).to.equal('EBADF');
    expect((err as ImageError).syscall).to.equal('fallocate');
    expect((err as ImageError).message).to.include(path);
    expect(untouched(path, 0, 4 * MiB)).to.equal(true);
  });
});

/**
 * fallocate on a block device refuses with EINVAL a range not aligned to the device's logical
 * block size (or starting past its end): that is this request's fault, not a mode the device
 * lacks. A loop device with 4096-byte sectors over a fully allocated file shows it for real —
 * its discards punch holes in the backing file, so a later DISCARD that was still passed to
 * fallocate frees blocks there, one that fell back to writing zeroes frees none. Needs root and
 * losetup; skipped, with the reason, otherwise.
 */
describe('virtio-blk image: zeroRange on a block device with 4096-byte sectors', function () {
  this.timeout(30000);
  let dir = '';
  let backing = '';
  let loop = '';
  let img: ImageFile | null = null;

  beforeEach(function () {
    if (process.getuid?.() !== 0) this.skip(); // losetup needs root
    dir = mkdtempSync(join(tmpdir(), 'vshm-blk-loop-'));
    backing = join(dir, 'backing.img');
    writeFileSync(backing, Buffer.alloc(4 * MiB, 0xa5));
    try {
      loop = execFileSync('losetup', ['--find', '--show', '--sector-size', '4096', backing], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    } catch {
      rmSync(dir, { recursive: true, force: true });
      dir = '';
      this.skip(); // no loop devices here (a container without /dev/loop-control)
    }
  });
  afterEach(async () => {
    await img?.close();
    img = null;
    if (loop !== '') execFileSync('losetup', ['--detach', loop]);
    loop = '';
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  /** [from, to) of the device, read through the image. */
  async function bytes(from: number, to: number): Promise<Buffer> {
    const b = Buffer.alloc(to - from);
    await (img as ImageFile).read(b, from);
    return b;
  }

  /** The head of the device after a 512-aligned, 1024-byte zeroRange at 512: exactly that range is zero. */
  async function expectZeroedAt512(): Promise<void> {
    const head = await bytes(0, 8192);
    expect(head.subarray(0, 512).every((b) => b === 0xa5)).to.equal(true);
    expect(head.subarray(512, 1536).every((b) => b === 0)).to.equal(true);
    expect(head.subarray(1536).every((b) => b === 0xa5)).to.equal(true);
  }

  it('a 512-aligned discard zeroes exactly its range, and the next aligned discard still punches a hole', async () => {
    img = await openImage(loop);
    await img.zeroRange(512, 1024, 'discard'); // EINVAL from fallocate: misaligned for 4096-byte sectors
    await expectZeroedAt512();
    await img.datasync();
    const before = statSync(backing).blocks;
    await img.zeroRange(MiB, 2 * MiB, 'discard');
    expect((await bytes(MiB, 3 * MiB)).every((b) => b === 0)).to.equal(true);
    expect((await bytes(3 * MiB, 4 * MiB)).every((b) => b === 0xa5)).to.equal(true);
    // 2 MiB = 4096 blocks of 512 bytes given back by the backing file: fallocate was used.
    expect(before - statSync(backing).blocks).to.be.at.least(4000);
  });

  it('a 512-aligned zero-range zeroes exactly its range, and the next aligned one is still a zero-range', async function () {
    // The loop device turns a zero-range into FALLOC_FL_ZERO_RANGE on the backing file, whose
    // extents then show as unwritten (FIEMAP, read with filefrag); written zeroes would not.
    if (!existsSync('/usr/sbin/filefrag') && !existsSync('/sbin/filefrag')) this.skip();
    img = await openImage(loop);
    await img.zeroRange(512, 1024, 'zeroes');
    await expectZeroedAt512();
    await img.datasync();
    const filefrag = existsSync('/usr/sbin/filefrag') ? '/usr/sbin/filefrag' : '/sbin/filefrag';
    expect(execFileSync(filefrag, ['-v', backing], { encoding: 'utf8' })).not.to.include('unwritten');
    await img.zeroRange(MiB, MiB, 'zeroes');
    expect((await bytes(MiB, 2 * MiB)).every((b) => b === 0)).to.equal(true);
    expect((await bytes(2 * MiB, 4 * MiB)).every((b) => b === 0xa5)).to.equal(true);
    expect(execFileSync(filefrag, ['-v', backing], { encoding: 'utf8' })).to.include('unwritten');
  });
});
