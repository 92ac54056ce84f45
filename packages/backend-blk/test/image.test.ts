/**
 * The image's zeroRange (DISCARD / WRITE_ZEROES, issue 11 item 2): holes punched where the file
 * system can, zero-range in place for WRITE_ZEROES, zeroes written where neither works, and an
 * I/O error that is not "unsupported" reported as such.
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError, openImage, type ImageFile } from '../src/image.js';

const MiB = 1 << 20;

describe('virtio-blk image: zeroRange', () => {
  const dirs: string[] = [];
  const images: ImageFile[] = [];
  afterEach(async () => {
    for (const i of images.splice(0)) await i.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** A 4 MiB image of 0xa5 bytes in `base`, fully allocated. */
  async function image(base: string, opts: { readOnly?: boolean } = {}): Promise<{ path: string; img: ImageFile }> {
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
