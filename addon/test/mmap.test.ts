import { expect } from 'chai';
import binding from '@vshm/addon';
import { expectSyscallError, runChild } from './helpers.js';

const PAGE = binding.PAGE_SIZE;
const RW = binding.PROT_READ | binding.PROT_WRITE;

describe('addon: mmap', () => {
  let fd = -1;
  const maps: ArrayBuffer[] = [];
  beforeEach(() => {
    fd = binding.memfdCreate('vshm-mmap-test', true);
    binding.ftruncate(fd, 4 * PAGE);
  });
  afterEach(() => {
    for (const m of maps.splice(0)) {
      if (m.byteLength > 0) binding.munmap(m);
    }
    binding.close(fd);
  });
  const map = (offset: number, length: number, prot = RW): ArrayBuffer => {
    const m = binding.mmap(fd, offset, length, prot);
    maps.push(m);
    return m;
  };

  it('PAGE_SIZE is a power of two', () => {
    expect(PAGE).to.be.greaterThan(0);
    expect(PAGE & (PAGE - 1)).to.equal(0);
  });

  it('two mappings of one memfd see each other’s writes', () => {
    const a = map(0, 4 * PAGE);
    const b = map(0, 4 * PAGE);
    expect(a.byteLength).to.equal(4 * PAGE);
    new Uint32Array(a)[10] = 0xdeadbeef;
    expect(new Uint32Array(b)[10]).to.equal(0xdeadbeef);
    Atomics.store(new Int32Array(b), 100, 42);
    expect(Atomics.load(new Int32Array(a), 100)).to.equal(42);
  });

  it('maps at a page offset, exactly the requested length', () => {
    const whole = map(0, 4 * PAGE);
    const part = map(PAGE, 100);
    expect(part.byteLength).to.equal(100);
    new Uint8Array(part)[0] = 7;
    expect(new Uint8Array(whole)[PAGE]).to.equal(7);
  });

  it('munmap detaches the buffer and its views; a second munmap throws EINVAL', () => {
    const a = map(0, PAGE);
    const view = new Uint8Array(a);
    binding.munmap(a);
    expect(a.byteLength).to.equal(0);
    expect(view.length).to.equal(0);
    expectSyscallError(() => binding.munmap(a), 'EINVAL', 22, 'munmap');
  });

  it('munmap/mprotect of an ArrayBuffer not from mmap throws EINVAL', () => {
    expectSyscallError(() => binding.munmap(new ArrayBuffer(PAGE)), 'EINVAL', 22, 'munmap');
    expectSyscallError(
      () => binding.mprotect(new ArrayBuffer(PAGE), 0, PAGE, binding.PROT_READ),
      'EINVAL',
      22,
      'mprotect',
    );
    const b = binding as unknown as Record<string, (...args: unknown[]) => unknown>;
    expect(() => b.munmap(new Uint8Array(8))).to.throw(TypeError);
    expect(() => b.munmap(undefined)).to.throw(TypeError);
  });

  it('rejects unaligned offsets and ranges outside the mapping', () => {
    expectSyscallError(() => binding.mmap(fd, 1, PAGE, RW), 'EINVAL', 22, 'mmap');
    const a = map(0, 2 * PAGE);
    expectSyscallError(() => binding.mprotect(a, 1, PAGE, binding.PROT_READ), 'EINVAL', 22, 'mprotect');
    expectSyscallError(
      () => binding.mprotect(a, PAGE, 2 * PAGE, binding.PROT_READ),
      'EINVAL',
      22,
      'mprotect',
    );
    expectSyscallError(() => binding.mprotect(a, 3 * PAGE, 0, binding.PROT_READ), 'EINVAL', 22, 'mprotect');
    expect(() => binding.mmap(fd, 0, 0, RW)).to.throw(RangeError);
    expectSyscallError(() => binding.mmap(-1, 0, PAGE, RW), 'EBADF', 9, 'mmap');
  });

  it('mprotect back to read-write keeps the data writable', () => {
    const a = map(0, 2 * PAGE);
    binding.mprotect(a, PAGE, PAGE, binding.PROT_READ);
    binding.mprotect(a, PAGE, PAGE, RW);
    new Uint8Array(a)[PAGE] = 1;
    expect(new Uint8Array(a)[PAGE]).to.equal(1);
  });

  it('a mapping that is only dropped (no munmap) is unmapped by GC without harm', () => {
    for (let i = 0; i < 16; i++) new Uint8Array(binding.mmap(fd, 0, PAGE, RW))[0] = i;
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) gc();
    expect(new Uint8Array(map(0, PAGE))[0]).to.equal(15);
  });

  it('fence() runs', () => {
    expect(binding.fence()).to.equal(undefined);
  });

  it('GC unmaps dropped mappings, and never a range munmap() already released', async () => {
    const r = await runChild(
      `
      import { readFileSync } from 'node:fs';
      const count = () => readFileSync('/proc/self/maps', 'utf8').split('\\n')
        .filter((l) => l.includes('memfd:vshm-gc')).length;
      const tick = () => new Promise((r) => setImmediate(r));
      const fd = binding.memfdCreate('vshm-gc', false);
      binding.ftruncate(fd, binding.PAGE_SIZE);
      const RW = binding.PROT_READ | binding.PROT_WRITE;
      (() => { for (let i = 0; i < 8; i++) new Uint8Array(binding.mmap(fd, 0, binding.PAGE_SIZE, RW))[0] = 1; })();
      const before = count();
      // Unmapped explicitly, then collected: its finalizer must leave the new mapping alone,
      // even if the kernel hands out the same address again.
      (() => { const a = binding.mmap(fd, 0, binding.PAGE_SIZE, RW); binding.munmap(a); })();
      const keep = new Uint8Array(binding.mmap(fd, 0, binding.PAGE_SIZE, RW));
      for (let i = 0; i < 3; i++) { globalThis.gc(); await tick(); await tick(); }
      keep[0] = 9;
      console.log(JSON.stringify({ before, after: count(), value: keep[0] }));
      `,
      ['--expose-gc'],
    );
    expect(r.code, r.stderr).to.equal(0);
    const { before, after, value } = JSON.parse(r.stdout) as { before: number; after: number; value: number };
    expect(before).to.be.at.least(8);
    expect(after).to.equal(1); // only `keep`
    expect(value).to.equal(9);
  });

  it('a mapping longer than an ArrayBuffer can be throws RangeError, unmapped, and the process lives on', async function () {
    // A server may size the memory above what this Node.js can wrap in one ArrayBuffer
    // (buffer.constants.MAX_LENGTH, 4 GiB on Node 20); Node then runs the buffer's finalizer
    // inside the failing create call. Where the limit is beyond what mmap could reserve, skip.
    const { constants } = await import('node:buffer');
    const size = constants.MAX_LENGTH + PAGE;
    if (size > 2 ** 44) this.skip();
    const r = await runChild(
      `
      import { readFileSync } from 'node:fs';
      const count = () => readFileSync('/proc/self/maps', 'utf8').split('\\n')
        .filter((l) => l.includes('memfd:vshm-huge')).length;
      const fd = binding.memfdCreate('vshm-huge', true);
      binding.ftruncate(fd, ${size});
      const out = [];
      for (let i = 0; i < 3; i++) {
        try {
          binding.mmap(fd, 0, ${size}, binding.PROT_READ | binding.PROT_WRITE);
          out.push('mapped');
        } catch (e) {
          out.push(e.constructor.name + ':' + /^mmap: /.test(e.message));
        }
      }
      const small = new Uint8Array(binding.mmap(fd, 0, binding.PAGE_SIZE, binding.PROT_READ | binding.PROT_WRITE));
      small[0] = 5;
      console.log(JSON.stringify({ out, maps: count(), value: small[0] }));
      `,
    );
    expect(r.code, `signal ${r.signal}; ${r.stderr}`).to.equal(0);
    const { out, maps, value } = JSON.parse(r.stdout) as { out: string[]; maps: number; value: number };
    expect(out).to.deep.equal(['RangeError:true', 'RangeError:true', 'RangeError:true']);
    expect(maps, 'the failed mappings were released').to.equal(1);
    expect(value).to.equal(5);
  });

  describe('faults (in a child process)', () => {
    const isFault = (signal: string | null): boolean => signal === 'SIGSEGV' || signal === 'SIGBUS';

    it('a write to a page made PROT_READ by mprotect kills the writer', async () => {
      const r = await runChild(`
        const fd = binding.memfdCreate('child', false);
        binding.ftruncate(fd, 2 * binding.PAGE_SIZE);
        const m = binding.mmap(fd, 0, 2 * binding.PAGE_SIZE, binding.PROT_READ | binding.PROT_WRITE);
        const u8 = new Uint8Array(m);
        u8[0] = 1;
        binding.mprotect(m, binding.PAGE_SIZE, binding.PAGE_SIZE, binding.PROT_READ);
        u8[1] = 2; // page 0 is still writable
        console.log('before-fault', u8[binding.PAGE_SIZE]);
        u8[binding.PAGE_SIZE] = 3;
        console.log('survived');
      `);
      expect(r.stdout, r.stderr).to.contain('before-fault 0');
      expect(r.stdout).to.not.contain('survived');
      expect(isFault(r.signal), `signal ${r.signal}, code ${r.code}`).to.equal(true);
    });

    it('a write to a PROT_READ mapping kills the writer', async () => {
      const r = await runChild(`
        const fd = binding.memfdCreate('child', false);
        binding.ftruncate(fd, binding.PAGE_SIZE);
        const m = binding.mmap(fd, 0, binding.PAGE_SIZE, binding.PROT_READ);
        const u8 = new Uint8Array(m);
        console.log('read-ok', u8[0]);
        u8[0] = 1;
        console.log('survived');
      `);
      expect(r.stdout, r.stderr).to.contain('read-ok 0');
      expect(r.stdout).to.not.contain('survived');
      expect(isFault(r.signal), `signal ${r.signal}, code ${r.code}`).to.equal(true);
    });
  });
});
