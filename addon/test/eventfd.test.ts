import { expect } from 'chai';
import binding from '@vshm/addon';
import type { FdWatcher } from '@vshm/addon';
import { fileURLToPath } from 'node:url';
import { expectSyscallError, runChild } from './helpers.js';

describe('addon: eventfd', () => {
  const fds: number[] = [];
  afterEach(() => {
    for (const fd of fds.splice(0)) binding.close(fd);
  });

  it('accumulates writes; read returns the sum, then 0 (EAGAIN)', () => {
    const fd = binding.eventfd(0, true);
    fds.push(fd);
    expect(binding.eventfdRead(fd)).to.equal(0);
    expect(binding.eventfdWrite(fd, 1)).to.equal(true);
    expect(binding.eventfdWrite(fd, 1)).to.equal(true);
    expect(binding.eventfdRead(fd)).to.equal(2);
    expect(binding.eventfdRead(fd)).to.equal(0);
  });

  it('honours the initial value', () => {
    const fd = binding.eventfd(7, true);
    fds.push(fd);
    expect(binding.eventfdRead(fd)).to.equal(7);
  });

  it('throws EBADF on a closed fd and RangeError on bad values', () => {
    const fd = binding.eventfd(0, true);
    binding.close(fd);
    expectSyscallError(() => binding.eventfdRead(fd), 'EBADF', 9, 'read');
    expectSyscallError(() => binding.eventfdWrite(fd, 1), 'EBADF', 9, 'write');
    expect(() => binding.eventfdWrite(0, -1)).to.throw(RangeError);
  });
});

describe('addon: FdWatcher', () => {
  const fds: number[] = [];
  const watchers: FdWatcher[] = [];
  const efd = (): number => {
    const fd = binding.eventfd(0, true);
    fds.push(fd);
    return fd;
  };
  const watch = (fd: number, cb: (status: number, events: number) => void): FdWatcher => {
    const w = binding.createWatcher(fd, cb);
    watchers.push(w);
    return w;
  };
  afterEach(() => {
    for (const w of watchers.splice(0)) w.close();
    for (const fd of fds.splice(0)) binding.close(fd);
  });

  // Resolves on the next callback of a fresh watcher on a fresh eventfd that is made readable
  // now, followed by a setImmediate: by then every fd that was readable at the same time had its
  // chance in that same poll phase (level-triggered epoll reports them together).
  function pollRound(): Promise<void> {
    const fd = efd();
    return new Promise((resolve) => {
      const w = watch(fd, () => {
        w.close();
        setImmediate(resolve);
      });
      w.start(binding.POLL_READABLE);
      binding.eventfdWrite(fd, 1);
    });
  }

  it('fires on readable with status 0 and POLL_READABLE', async () => {
    const fd = efd();
    const got = await new Promise<[number, number, number]>((resolve) => {
      const w = watch(fd, (status, events) => {
        w.stop();
        resolve([status, events, binding.eventfdRead(fd)]);
      });
      w.start(binding.POLL_READABLE);
      binding.eventfdWrite(fd, 3);
    });
    expect(got).to.deep.equal([0, binding.POLL_READABLE, 3]);
  });

  it('stop() stops callbacks; start() resumes them', async () => {
    const fd = efd();
    let calls = 0;
    const w = watch(fd, () => {
      calls++;
    });
    w.start(binding.POLL_READABLE);
    w.stop();
    binding.eventfdWrite(fd, 1);
    await pollRound();
    expect(calls).to.equal(0);
    w.start(binding.POLL_READABLE);
    await pollRound();
    expect(calls).to.be.greaterThan(0);
  });

  it('close() is idempotent and no callback runs after it', async () => {
    const fd = efd();
    let calls = 0;
    const w = watch(fd, () => {
      calls++;
    });
    w.start(binding.POLL_READABLE);
    binding.eventfdWrite(fd, 1);
    w.close();
    w.close();
    w.stop(); // no-ops after close
    w.ref();
    w.unref();
    await pollRound();
    expect(calls).to.equal(0);
    expectSyscallError(() => w.start(binding.POLL_READABLE), 'EBADF', 9, 'uv_poll_start');
  });

  it('a watcher closed by another callback in the same poll round is not called', async () => {
    const a = efd();
    const b = efd();
    let calls = 0;
    const both: FdWatcher[] = [];
    const done = new Promise<void>((resolve) => {
      const cb = (): void => {
        calls++;
        for (const w of both) w.close();
        setImmediate(resolve);
      };
      both.push(watch(a, cb), watch(b, cb));
    });
    for (const w of both) w.start(binding.POLL_READABLE);
    binding.eventfdWrite(a, 1);
    binding.eventfdWrite(b, 1);
    await done;
    await pollRound();
    expect(calls).to.equal(1);
  });

  it('reports POLL_WRITABLE for a writable socket', async () => {
    const [s1, s2] = binding.socketPair();
    fds.push(s1, s2);
    const events = await new Promise<number>((resolve) => {
      const w = watch(s1, (_status, ev) => {
        w.stop();
        resolve(ev);
      });
      w.start(binding.POLL_WRITABLE);
    });
    expect(events & binding.POLL_WRITABLE).to.equal(binding.POLL_WRITABLE);
  });

  it('rejects bad fds and arguments without crashing', () => {
    expectSyscallError(() => binding.createWatcher(-1, () => {}), 'EBADF', 9, 'uv_poll_init');
    const b = binding as unknown as Record<string, (...args: unknown[]) => unknown>;
    expect(() => b.createWatcher(efd(), 'nope')).to.throw(TypeError);
    const w = watch(efd(), () => {});
    expect(() => w.start(0)).to.throw(RangeError);
    expect(() => w.start(64)).to.throw(RangeError);
  });

  it('refuses a second watcher on the same fd (EEXIST)', () => {
    const fd = efd();
    watch(fd, () => {});
    expectSyscallError(() => binding.createWatcher(fd, () => {}), 'EEXIST', 17, 'uv_poll_init');
  });

  it('after close() the fd can be watched again at once', async () => {
    const fd = efd();
    const first = watch(fd, () => {});
    first.start(binding.POLL_READABLE);
    first.close();
    const got = await new Promise<number>((resolve) => {
      const again = watch(fd, () => {
        again.stop();
        resolve(binding.eventfdRead(fd));
      });
      again.start(binding.POLL_READABLE);
      binding.eventfdWrite(fd, 2);
    });
    expect(got).to.equal(2);
  });

  it('start() on an fd closed behind its back and reused for another file throws EBADF instead of aborting', async () => {
    // fd numbers are reused lowest-first, so "closed" usually means "now something else": a
    // regular file there made libuv's epoll_ctl fail with EPERM, which aborts the process.
    const r = await runChild(`
      import { openSync, closeSync } from 'node:fs';
      const out = [];
      const fd = binding.eventfd(0, true);
      const w = binding.createWatcher(fd, () => {});
      binding.close(fd);
      const f = openSync(${JSON.stringify(fileURLToPath(import.meta.url))}, 'r');
      out.push(f === fd ? 'reused' : 'not reused');
      try { w.start(binding.POLL_READABLE); out.push('started'); } catch (e) { out.push(e.code + ' ' + e.syscall); }
      // Two loop turns: by the second poll phase libuv has applied what start() asked for.
      for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
      w.close();
      closeSync(f);
      const [s1, s2] = binding.socketPair();
      const w2 = binding.createWatcher(s1, () => {});
      w2.start(binding.POLL_READABLE);
      binding.close(s1);
      const [t1, t2] = binding.socketPair(); // another socket under the same number
      out.push(t1 === s1 ? 'reused' : 'not reused');
      try { w2.start(binding.POLL_READABLE | binding.POLL_WRITABLE); out.push('started'); } catch (e) { out.push(e.code + ' ' + e.syscall); }
      w2.close();
      setImmediate(() => console.log(JSON.stringify(out)));
    `);
    expect(r.code, `signal ${r.signal}; ${r.stderr}`).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal(['reused', 'EBADF uv_poll_start', 'reused', 'EBADF uv_poll_start']);
  });

  it('start() on an fd closed behind its back throws EBADF instead of aborting', () => {
    const fd = binding.eventfd(0, true);
    const w = watch(fd, () => {});
    binding.close(fd);
    expectSyscallError(() => w.start(binding.POLL_READABLE), 'EBADF', 9, 'uv_poll_start');
  });
});
