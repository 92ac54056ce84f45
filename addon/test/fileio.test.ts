import { expect } from 'chai';
import { mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
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
