import { fstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import binding from '@vshm/addon';
import { expectSyscallError } from './helpers.js';

describe('addon: memory objects', () => {
  const fds: number[] = [];
  const track = (fd: number): number => (fds.push(fd), fd);
  afterEach(() => {
    for (const fd of fds.splice(0)) {
      try {
        binding.close(fd);
      } catch {
        // already closed by the test
      }
    }
  });

  it('memfd: ftruncate sets the size, seals stop shrink and grow with EPERM', () => {
    const fd = track(binding.memfdCreate('vshm-test', true));
    binding.ftruncate(fd, 8192);
    expect(binding.fstat(fd).size).to.equal(8192);
    expect(binding.getSeals(fd)).to.equal(0);
    binding.addSeals(fd, binding.F_SEAL_SHRINK | binding.F_SEAL_GROW);
    expect(binding.getSeals(fd)).to.equal(binding.F_SEAL_SHRINK | binding.F_SEAL_GROW);
    expectSyscallError(() => binding.ftruncate(fd, 4096), 'EPERM', 1, 'ftruncate');
    expectSyscallError(() => binding.ftruncate(fd, 16384), 'EPERM', 1, 'ftruncate');
    expect(binding.fstat(fd).size).to.equal(8192);
    binding.ftruncate(fd, 8192); // same size is neither shrink nor grow
  });

  it('memfd without sealing reports F_SEAL_SEAL and refuses new seals', () => {
    const fd = track(binding.memfdCreate('vshm-test', false));
    expect(binding.getSeals(fd)).to.equal(binding.F_SEAL_SEAL);
    expectSyscallError(() => binding.addSeals(fd, binding.F_SEAL_GROW), 'EPERM', 1, 'fcntl');
  });

  it('getSeals on an fd without sealing support throws EINVAL', () => {
    const [a, b] = binding.socketPair();
    track(a);
    track(b);
    expectSyscallError(() => binding.getSeals(a), 'EINVAL', 22, 'fcntl');
  });

  it('shmOpen/shmUnlink: O_EXCL, mode, unlink', () => {
    const name = `/vshm-test-${process.pid}-${Date.now()}`;
    const flags = binding.O_RDWR | binding.O_CREAT | binding.O_EXCL;
    const fd = track(binding.shmOpen(name, flags, 0o600));
    try {
      expect(binding.fstat(fd).mode & 0o777).to.equal(0o600);
      expectSyscallError(() => binding.shmOpen(name, flags, 0o600), 'EEXIST', 17, 'shm_open');
    } finally {
      binding.shmUnlink(name);
    }
    expectSyscallError(() => binding.shmUnlink(name), 'ENOENT', 2, 'shm_unlink');
  });

  it('openTmpfile: an empty regular file with the mode, and no name in the directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vshm-addon-'));
    try {
      const fd = track(binding.openTmpfile(dir, 0o600));
      const st = binding.fstat(fd);
      expect(st.size).to.equal(0);
      expect(st.mode & 0o170000).to.equal(0o100000); // S_IFREG
      expect(st.mode & 0o777).to.equal(0o600);
      expect(readdirSync(dir)).to.deep.equal([]);
      binding.ftruncate(fd, 4096);
      expect(binding.fstat(fd).size).to.equal(4096);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expectSyscallError(() => binding.openTmpfile('/nonexistent-vshm', 0o600), 'ENOENT', 2, 'open');
  });

  it('fstat: dev is st_dev as a bigint, the value node:fs reports (memfd, a file on disk)', () => {
    const mem = track(binding.memfdCreate('vshm-test', false));
    const dir = mkdtempSync(join(tmpdir(), 'vshm-addon-'));
    try {
      const file = track(binding.openTmpfile(dir, 0o600));
      for (const fd of [mem, file]) {
        const st = fstatSync(fd, { bigint: true });
        const ours = binding.fstat(fd);
        expect(typeof ours.dev).to.equal('bigint');
        expect([ours.dev, ours.ino]).to.deep.equal([st.dev, Number(st.ino)]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expectSyscallError(() => binding.fstat(-1), 'EBADF', 9, 'fstat');
  });

  it('dup returns a new fd for the same file', () => {
    const fd = track(binding.memfdCreate('vshm-test', false));
    const d = track(binding.dup(fd));
    expect(d).to.not.equal(fd);
    expect(binding.fstat(d).ino).to.equal(binding.fstat(fd).ino);
  });

  it('close: EBADF for -1 and for an already closed fd', () => {
    expectSyscallError(() => binding.close(-1), 'EBADF', 9, 'close');
    const fd = binding.memfdCreate('vshm-test', false);
    binding.close(fd);
    expectSyscallError(() => binding.close(fd), 'EBADF', 9, 'close');
  });

  it('error messages name the syscall and the errno', () => {
    try {
      binding.close(-1);
      expect.fail('close(-1) did not throw');
    } catch (err) {
      expect((err as Error).message).to.equal('close failed: EBADF (Bad file descriptor)');
    }
  });

  it('rejects bad JS arguments with TypeError/RangeError, not a crash', () => {
    const b = binding as unknown as Record<string, (...args: unknown[]) => unknown>;
    expect(() => b.ftruncate('3', 1)).to.throw(TypeError, /ftruncate: fd/);
    expect(() => b.ftruncate(3, -1)).to.throw(RangeError, /ftruncate: size/);
    expect(() => b.ftruncate(3, 1.5)).to.throw(RangeError);
    expect(() => b.ftruncate(3, 2 ** 53)).to.throw(RangeError);
    expect(() => b.ftruncate(3, NaN)).to.throw(RangeError);
    expect(() => b.close(2 ** 31)).to.throw(RangeError);
    expect(() => b.close()).to.throw(TypeError);
    expect(() => b.memfdCreate('x', 1)).to.throw(TypeError, /allowSealing/);
    expect(() => b.memfdCreate('a\0b', true)).to.throw(TypeError, /NUL/);
    expect(() => b.shmOpen('/x', 'rw', 0o600)).to.throw(TypeError);
  });
});
