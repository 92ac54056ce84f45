import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import binding from '@vshm/addon';

/** Awaits `p` and returns what it rejected with (fails if it resolved). */
async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; errno?: number; syscall?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('addon: fallocate', () => {
  let dir = '';
  let file = '';
  let fd = -1;
  const SIZE = 64 * 1024;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-falloc-'));
    file = join(dir, 'img');
    writeFileSync(file, Buffer.alloc(SIZE, 0xa5));
    fd = openSync(file, 'r+');
  });
  afterEach(() => {
    if (fd >= 0) closeSync(fd);
    fd = -1;
    rmSync(dir, { recursive: true, force: true });
  });

  /** The file's bytes [from, to) are all `v`. */
  const allAre = (from: number, to: number, v: number): boolean => readFileSync(file).subarray(from, to).every((b) => b === v);

  it('punches a hole that reads back as zeroes, keeping the size and the bytes around it', async () => {
    await binding.fallocate(fd, binding.FALLOC_FL_PUNCH_HOLE | binding.FALLOC_FL_KEEP_SIZE, 8192, 16384);
    expect(statSync(file).size).to.equal(SIZE);
    expect(allAre(0, 8192, 0xa5)).to.equal(true);
    expect(allAre(8192, 8192 + 16384, 0)).to.equal(true);
    expect(allAre(8192 + 16384, SIZE, 0xa5)).to.equal(true);
  });

  it('zero-range zeroes the range where supported, else rejects with EOPNOTSUPP', async () => {
    let err: unknown = null;
    try {
      await binding.fallocate(fd, binding.FALLOC_FL_ZERO_RANGE | binding.FALLOC_FL_KEEP_SIZE, 100, 1000);
    } catch (e) {
      err = e;
    }
    if (err === null) {
      expect(allAre(0, 100, 0xa5)).to.equal(true);
      expect(allAre(100, 1100, 0)).to.equal(true);
      expect(allAre(1100, SIZE, 0xa5)).to.equal(true);
    } else {
      expect((err as { code?: string }).code).to.equal('EOPNOTSUPP');
    }
  });

  it('rejects with a SyscallError from the kernel, throws on bad arguments', async () => {
    // PUNCH_HOLE without KEEP_SIZE is refused by the kernel: EOPNOTSUPP.
    const e = await rejection(binding.fallocate(fd, binding.FALLOC_FL_PUNCH_HOLE, 0, 4096));
    expect([e.code, e.errno, e.syscall]).to.deep.equal(['EOPNOTSUPP', 95, 'fallocate']);
    const ro = openSync(file, 'r');
    try {
      const e2 = await rejection(binding.fallocate(ro, binding.FALLOC_FL_PUNCH_HOLE | binding.FALLOC_FL_KEEP_SIZE, 0, 4096));
      expect(e2.code).to.equal('EBADF');
    } finally {
      closeSync(ro);
    }
    expect(() => binding.fallocate(fd, 0, 0, 0)).to.throw(RangeError);
    expect(() => binding.fallocate(fd, 0, -1, 10)).to.throw(RangeError);
    expect(allAre(0, SIZE, 0xa5), 'nothing changed by the failures').to.equal(true);
  });
});
