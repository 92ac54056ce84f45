// fd hygiene: full create/use/close cycles of every kind of fd the addon makes leave the fd
// table as it was, including on error paths (failed bind, failed connect, ctrunc).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import binding from '@vshm/addon';
import { countFds } from './helpers.js';

describe('addon: fd hygiene', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-fds-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function cycle(i: number): void {
    const mfd = binding.memfdCreate('vshm-fds', true);
    binding.ftruncate(mfd, binding.PAGE_SIZE);
    const m = binding.mmap(mfd, 0, binding.PAGE_SIZE, binding.PROT_READ | binding.PROT_WRITE);
    binding.munmap(m);
    const tfd = binding.openTmpfile(dir, 0o600);
    const e1 = binding.eventfd(0, true);
    const e2 = binding.eventfd(0, true);
    const [a, b] = binding.socketPair();
    binding.sendMsg(a, Buffer.from('xy'), [mfd, e1, e2]);
    const trunc = binding.recvMsg(b, 1, 1); // ctrunc: the kernel closes what did not fit
    binding.sendMsg(a, Buffer.from('z'), [e1]);
    const full = binding.recvMsg(b, 2, 4);
    const path = join(dir, `s${i}.sock`);
    const l = binding.socketListen(path, 0o600, 4);
    expect(() => binding.socketListen(path, 0o600, 4)).to.throw(); // EADDRINUSE path
    expect(() => binding.socketConnect(join(dir, 'missing.sock'))).to.throw(); // ENOENT path
    const c = binding.socketConnect(path);
    const s = binding.socketAccept(l);
    const d = binding.dup(e1);
    const w = binding.createWatcher(e1, () => {});
    w.start(binding.POLL_READABLE);
    w.close();
    for (const fd of [mfd, tfd, e1, e2, a, b, l, c, s, d, ...trunc!.fds, ...full!.fds]) {
      binding.close(fd);
    }
    rmSync(path);
  }

  it('create/use/close cycles leak no fds', () => {
    cycle(0); // warm-up: lazily opened fds of Node itself are not ours
    const before = countFds();
    for (let i = 1; i <= 20; i++) cycle(i);
    expect(countFds()).to.equal(before);
  });

  it('the counter sees a leak when there is one', () => {
    const before = countFds();
    const fd = binding.eventfd(0, false);
    try {
      expect(countFds()).to.equal(before + 1);
    } finally {
      binding.close(fd);
    }
  });
});
