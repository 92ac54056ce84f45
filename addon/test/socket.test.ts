import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import binding from '@vshm/addon';
import type { RecvResult } from '@vshm/addon';
import { expectSyscallError } from './helpers.js';

const ADDON_DIR = dirname(dirname(fileURLToPath(import.meta.url)));

describe('addon: UNIX sockets', () => {
  const fds: number[] = [];
  const track = <T extends number[]>(...xs: T): T => (fds.push(...xs), xs);
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-sock-'));
  });
  afterEach(() => {
    for (const fd of fds.splice(0)) {
      try {
        binding.close(fd);
      } catch {
        // closed by the test
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const pair = (): [number, number] => {
    const [a, b] = binding.socketPair();
    track(a, b);
    return [a, b];
  };
  const efd = (): number => track(binding.eventfd(0, true))[0];
  const recv = (fd: number, len: number, maxFds: number): RecvResult => {
    const r = binding.recvMsg(fd, len, maxFds);
    expect(r, 'recvMsg returned null (EAGAIN)').to.not.equal(null);
    track(...r!.fds);
    return r!;
  };

  it('passes two fds that work on the receiving side', () => {
    const [a, b] = pair();
    const e1 = efd();
    const e2 = efd();
    expect(binding.sendMsg(a, Buffer.from('hi'), [e1, e2])).to.equal(2);
    const r = recv(b, 2, 2);
    expect(r.bytes.toString()).to.equal('hi');
    expect(r.ctrunc).to.equal(false);
    expect(r.fds).to.have.length(2);
    expect(r.fds).to.not.include(e1);
    binding.eventfdWrite(e1, 5);
    binding.eventfdWrite(r.fds[1], 6);
    expect(binding.eventfdRead(r.fds[0])).to.equal(5);
    expect(binding.eventfdRead(e2)).to.equal(6);
  });

  it('keeps back-to-back messages and their fds apart when read with exact lengths', () => {
    const [a, b] = pair();
    const e1 = efd();
    const e2 = efd();
    binding.sendMsg(a, Buffer.from('first'), [e1]);
    binding.sendMsg(a, Buffer.from('second'), [e2]);
    const r1 = recv(b, 5, 4);
    const r2 = recv(b, 6, 4);
    expect(r1.bytes.toString()).to.equal('first');
    expect(r2.bytes.toString()).to.equal('second');
    expect(r1.fds).to.have.length(1);
    expect(r2.fds).to.have.length(1);
    expect(binding.fstat(r1.fds[0]).ino).to.equal(binding.fstat(e1).ino);
    expect(binding.fstat(r2.fds[0]).ino).to.equal(binding.fstat(e2).ino);
  });

  it('never reads more than the requested length', () => {
    const [a, b] = pair();
    binding.sendMsg(a, Buffer.from('abcdef'), []);
    expect(recv(b, 2, 0).bytes.toString()).to.equal('ab');
    expect(recv(b, 100, 0).bytes.toString()).to.equal('cdef');
  });

  it('sets ctrunc when more fds arrive than maxFds, returning the ones that fit', () => {
    const [a, b] = pair();
    binding.sendMsg(a, Buffer.from('x'), [efd(), efd()]);
    const r = recv(b, 1, 1);
    expect(r.ctrunc).to.equal(true);
    expect(r.fds.length).to.be.at.most(1);
    for (const fd of r.fds) binding.fstat(fd); // valid, closed in afterEach
    binding.sendMsg(a, Buffer.from('y'), [efd()]);
    const r0 = recv(b, 1, 0);
    expect(r0.ctrunc).to.equal(true);
    expect(r0.fds).to.deep.equal([]);
  });

  it('recvMsg: null on EAGAIN, empty bytes at EOF', () => {
    const [a, b] = pair();
    expect(binding.recvMsg(b, 16, 1)).to.equal(null);
    binding.close(a);
    const r = recv(b, 16, 1);
    expect(r.bytes.length).to.equal(0);
    expect(r.fds).to.deep.equal([]);
  });

  it('sendMsg to a closed peer throws EPIPE (no SIGPIPE)', () => {
    const [a, b] = pair();
    binding.close(b);
    expectSyscallError(() => binding.sendMsg(a, Buffer.from('x'), []), 'EPIPE', 32, 'sendmsg');
  });

  it('sendMsg returns -1 when the socket buffer is full', () => {
    const [a] = pair();
    const chunk = Buffer.alloc(65536);
    let n = 0;
    let sent = 0;
    while ((sent = binding.sendMsg(a, chunk, [])) > 0) {
      n += sent;
      expect(n, 'socket buffer never filled').to.be.below(64 * 1024 * 1024);
    }
    expect(sent).to.equal(-1);
  });

  it('shutdown makes the peer see EOF', () => {
    const [a, b] = pair();
    binding.shutdown(a);
    expect(recv(b, 4, 0).bytes.length).to.equal(0);
  });

  it('pollNow reports what is ready right now: writable, then readable, then the hang-up', () => {
    const [a, b] = pair();
    const { POLL_READABLE: R, POLL_WRITABLE: W, POLL_DISCONNECT: D } = binding;
    expect(binding.pollNow(a, R | W | D)).to.equal(W);
    expect(binding.pollNow(a, R | D)).to.equal(0);
    binding.sendMsg(b, Buffer.from('x'), []);
    expect(binding.pollNow(a, R | D)).to.equal(R);
    binding.close(b);
    expect(binding.pollNow(a, R | D) & D).to.equal(D);
    // A hang-up is reported even when only writability was asked for.
    expect(binding.pollNow(a, W) & D).to.equal(D);
    const dead = binding.dup(a);
    binding.close(dead);
    expectSyscallError(() => binding.pollNow(dead, R), 'EBADF', 9, 'poll');
    expect(() => binding.pollNow(a, -1)).to.throw(RangeError);
  });

  it('pollNow on a negative fd throws EBADF (poll(2) would skip it and report nothing ready)', () => {
    // A caller holding -1 for "no fd" must not read "not ready yet" and wait for ever.
    expectSyscallError(() => binding.pollNow(-1, binding.POLL_READABLE), 'EBADF', 9, 'poll');
    expectSyscallError(() => binding.pollNow(-2147483648, binding.POLL_WRITABLE), 'EBADF', 9, 'poll');
  });

  it('socketListen creates the socket file with the mode; accept/connect; peerCred', () => {
    const path = join(dir, 'ctl.sock');
    const [l] = track(binding.socketListen(path, 0o600, 10));
    const st = statSync(path);
    expect(st.isSocket()).to.equal(true);
    expect(st.mode & 0o777).to.equal(0o600);
    expect(binding.socketAccept(l)).to.equal(-1);
    const [c] = track(binding.socketConnect(path));
    const s = binding.socketAccept(l);
    expect(s).to.be.at.least(0);
    track(s);
    expect(binding.peerCred(s)).to.deep.include({ pid: process.pid, uid: process.getuid!() });
    expect(binding.peerCred(c).pid).to.equal(process.pid);
    // The connected fd is non-blocking: nothing to read → null, not a hang.
    expect(binding.recvMsg(c, 4, 0)).to.equal(null);
    binding.sendMsg(c, Buffer.from('ping'), []);
    expect(recv(s, 4, 0).bytes.toString()).to.equal('ping');
  });

  it('socketConnect(path, true) never blocks: a full backlog gives -1, a free one a socket', () => {
    // In a child with a deadline: a blocking connect would hang this process (the call is
    // synchronous, mocha's timeout could not fire), so the test fails instead of hanging.
    const script = `
      import binding from '@vshm/addon';
      const path = ${JSON.stringify(join(dir, 'full.sock'))};
      const l = binding.socketListen(path, 0o600, 0); // backlog 0: one pending connection
      const first = [];
      let c = binding.socketConnect(path, true);
      while (c >= 0 && first.length < 8) {
        first.push(c);
        c = binding.socketConnect(path, true);
      }
      const s = binding.socketAccept(l); // make room
      const again = binding.socketConnect(path, true);
      process.stdout.write(JSON.stringify({ full: c, first: first.length, accepted: s, again }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ADDON_DIR,
      encoding: 'utf8',
      timeout: 30_000,
      killSignal: 'SIGKILL',
    });
    expect(r.signal, 'the child blocked in socketConnect and was killed').to.equal(null);
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { full: number; first: number; accepted: number; again: number };
    expect(out.full).to.equal(-1); // the backlog filled up: would block
    expect(out.first).to.be.at.least(1);
    expect(out.accepted).to.be.at.least(0);
    expect(out.again).to.be.at.least(0);
  });

  it('socketConnect: a noWait that is not a boolean is a TypeError, not a (possibly blocking) connect', () => {
    const path = join(dir, 'nowait-type.sock');
    const l = binding.socketListen(path, 0o600, 4);
    const b = binding as unknown as Record<string, (...args: unknown[]) => unknown>;
    try {
      for (const bad of [1, 'yes', {}, null]) {
        let fd: unknown;
        expect(() => (fd = b.socketConnect(path, bad)), String(bad)).to.throw(TypeError, /noWait/);
        if (typeof fd === 'number' && fd >= 0) binding.close(fd);
      }
      expect(binding.socketAccept(l)).to.equal(-1); // no connection was made
      const c = b.socketConnect(path, undefined) as number; // omitted: a blocking connect
      expect(c).to.be.at.least(0);
      binding.close(c);
    } finally {
      binding.close(l);
    }
  });

  it('socketListen honours modes the umask would strip', () => {
    const path = join(dir, 'wide.sock');
    track(binding.socketListen(path, 0o666, 1));
    expect(statSync(path).mode & 0o777).to.equal(0o666);
  });

  it('socketListen on an existing path throws EADDRINUSE; connect to nothing ENOENT', () => {
    const path = join(dir, 'dup.sock');
    track(binding.socketListen(path, 0o600, 1));
    expectSyscallError(() => binding.socketListen(path, 0o600, 1), 'EADDRINUSE', 98, 'bind');
    expectSyscallError(() => binding.socketConnect(join(dir, 'none.sock')), 'ENOENT', 2, 'connect');
    expectSyscallError(() => binding.socketConnect('/x'.repeat(60)), 'ENAMETOOLONG', 36, 'connect');
  });

  it('setNonBlocking toggles O_NONBLOCK (blocking recv waits for data already queued)', () => {
    const [a, b] = pair();
    binding.setNonBlocking(b, false);
    binding.sendMsg(a, Buffer.from('z'), []);
    expect(recv(b, 1, 0).bytes.toString()).to.equal('z');
    binding.setNonBlocking(b, true);
    expect(binding.recvMsg(b, 1, 0)).to.equal(null);
  });

  it('sendMsg never sends from a data buffer transferred away while the fds are read', () => {
    // The fds array's getters run JS in the middle of the call; data detached there is empty
    // (so fds cannot go: RangeError), never bytes read through a pointer taken before.
    const [x, y] = pair();
    const data = new Uint8Array(8).fill(0x61);
    const fds: number[] = [];
    Object.defineProperty(fds, 0, {
      enumerable: true,
      get() {
        const moved = structuredClone(data.buffer, { transfer: [data.buffer] });
        new Uint8Array(moved).fill(0x62);
        return x;
      },
    });
    expect(() => binding.sendMsg(x, data, fds)).to.throw(RangeError, /must not be empty/);
    expect(binding.recvMsg(y, 16, 2)).to.equal(null); // nothing was sent
  });

  it('rejects bad arguments and closed fds without crashing', () => {
    const b = binding as unknown as Record<string, (...args: unknown[]) => unknown>;
    const [x] = pair();
    expect(() => b.sendMsg(x, 'str', [])).to.throw(TypeError);
    expect(() => b.sendMsg(x, Buffer.from('a'), [1.5])).to.throw(TypeError);
    expect(() => b.sendMsg(x, Buffer.alloc(0), [0])).to.throw(RangeError);
    expect(() => b.sendMsg(x, Buffer.from('a'), new Array(254).fill(0))).to.throw(RangeError);
    expect(() => b.recvMsg(x, 0, 0)).to.throw(RangeError);
    expect(() => b.recvMsg(x, 1, 254)).to.throw(RangeError);
    expectSyscallError(() => binding.recvMsg(-1, 1, 0), 'EBADF', 9, 'recvmsg');
    expectSyscallError(() => binding.sendMsg(-1, Buffer.from('a'), []), 'EBADF', 9, 'sendmsg');
    expectSyscallError(() => binding.sendMsg(x, Buffer.from('a'), [123456]), 'EBADF', 9, 'sendmsg');
    expectSyscallError(() => binding.peerCred(-1), 'EBADF', 9, 'getsockopt');
  });
});
