import { expect } from 'chai';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import binding from '@vshm/addon';
import { expectSyscallError } from './helpers.js';

describe('addon: preadCached (preadv2 RWF_NOWAIT)', () => {
  let dir: string;
  let fd: number;
  const data = Buffer.alloc(10000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13 + 5) & 0xff;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-addon-pread-'));
    const path = join(dir, 'f');
    writeFileSync(path, data); // just written: in the page cache
    fd = openSync(path, 'r');
  });
  afterEach(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  it('fills the views in order, at most `length` bytes, from `position`', function () {
    const a = new Uint8Array(100);
    const b = new Uint8Array(1000).fill(0xee);
    const n = binding.preadCached(fd, [a, b], 600, 50);
    if (n === -1) this.skip(); // TMPDIR's file system cannot read without waiting
    expect(n).to.equal(600);
    expect(Buffer.from(a).equals(data.subarray(50, 150))).to.equal(true);
    expect(Buffer.from(b.subarray(0, 500)).equals(data.subarray(150, 650))).to.equal(true);
    expect(b[500]).to.equal(0xee); // past `length`: untouched
  });

  it('reads short at end of file and 0 past it; views of a shared ArrayBuffer work too', function () {
    const shared = new Uint8Array(new SharedArrayBuffer(8192));
    const n = binding.preadCached(fd, [shared.subarray(0, 4096), shared.subarray(4096)], 8192, 9000);
    if (n === -1) this.skip();
    expect(n).to.equal(1000);
    expect(Buffer.from(shared.subarray(0, 1000)).equals(data.subarray(9000))).to.equal(true);
    expect(binding.preadCached(fd, [shared], 8192, 20000)).to.equal(0);
    expect(binding.preadCached(fd, [], 8192, 0)).to.equal(0);
    expect(binding.preadCached(fd, [shared], 0, 0)).to.equal(0);
  });

  it('a view whose buffer is transferred away while the views are read is not written', function () {
    // The array's getters run JS in the middle of the call; a buffer detached there must count
    // as empty, not be written through a pointer taken before (that memory is no longer the view's).
    const victim = new Uint8Array(16);
    let moved: ArrayBuffer | undefined;
    const views: Uint8Array[] = [victim, new Uint8Array(0)];
    Object.defineProperty(views, 1, {
      get() {
        moved = structuredClone(victim.buffer, { transfer: [victim.buffer] });
        return new Uint8Array(16);
      },
    });
    const n = binding.preadCached(fd, views, 32, 0);
    if (n === -1) this.skip();
    expect(victim.length).to.equal(0);
    expect(n).to.equal(16); // only the second view
    expect([...new Uint8Array(moved!)]).to.deep.equal(new Array(16).fill(0));
  });

  it('returns -1 (stop asking) where the file system cannot read without waiting: procfs', () => {
    // procfs files do not support RWF_NOWAIT: preadv2 fails with EOPNOTSUPP, reported as -1.
    const p = openSync('/proc/self/status', 'r');
    try {
      const u = new Uint8Array(64).fill(7);
      expect(binding.preadCached(p, [u], 64, 0)).to.equal(-1);
      expect([...u]).to.deep.equal(new Array(64).fill(7));
    } finally {
      closeSync(p);
    }
  });

  it('checks its arguments before reading, and throws syscall errors', () => {
    const a = new Uint8Array(16).fill(7);
    expect(() => binding.preadCached(fd, [a, new Uint16Array(4) as unknown as Uint8Array], 32, 0)).to.throw(TypeError, /views\[1\]/);
    expect([...a]).to.deep.equal(new Array(16).fill(7)); // nothing was read
    expect(() => binding.preadCached(fd, 'x' as unknown as Uint8Array[], 1, 0)).to.throw(TypeError);
    expect(() => binding.preadCached(fd, [a], -1, 0)).to.throw(RangeError);
    expect(() => binding.preadCached(fd, [a], 1, -1)).to.throw(RangeError);
    expectSyscallError(() => binding.preadCached(-1, [a], 16, 0), 'EBADF', 9, 'preadv2');
  });
});

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
