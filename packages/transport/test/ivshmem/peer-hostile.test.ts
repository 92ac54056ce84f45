/**
 * IvshmemPeer against a hostile or unusual server (spec §1.8, §2, §3): descriptors that are not
 * eventfds must end in a reported error, never an uncaught exception, and the smallest legal
 * memory (S = 4096, RW = 0, §2 "RW MAY be 0") must be accepted.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { spawnSync } from 'node:child_process';
import { constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProtocolError } from '../../src/errors.js';
import { IvshmemPeer } from '../../src/ivshmem/peer.js';
import { notAnEventfd } from '../../src/ivshmem/peer-reader.js';
import { FakeServer } from '../fixtures/peer-fake-server.js';
import { usePeerRig } from '../fixtures/device-rigs.js';
import { until } from '../fixtures/until.js';

const b = binding;

/**
 * A named pipe opened read-write (Node has no pipe(2)): it takes a doorbell's 8 bytes like any
 * pipe, and its type bits say FIFO. Made in a directory of its own, removed at once.
 */
function openFifo(): number {
  const dir = mkdtempSync(join(tmpdir(), 'vshm-fifo-'));
  try {
    const path = join(dir, 'fifo');
    const made = spawnSync('mkfifo', ['-m', '600', path]);
    if (made.status !== 0) throw new Error(`mkfifo: ${made.stderr?.toString() ?? made.error}`);
    return openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('IvshmemPeer with a hostile server (spec §1.8, §3)', () => {
  let fake: FakeServer;
  let peer: IvshmemPeer | undefined;
  const extra: number[] = [];
  beforeEach(() => {
    fake = new FakeServer(b);
    peer = undefined;
  });
  afterEach(() => {
    peer?.close();
    for (const fd of extra.splice(0)) {
      try {
        b.close(fd);
      } catch {
        // already closed by the test
      }
    }
    fake.close();
  });

  it('an own eventfd whose read fails is an error event, not an uncaught exception', async () => {
    const mem = fake.memfd(65536);
    const own = fake.eventfd();
    fake.init({ id: 1, maxPeers: 2, vectors: 1 }, mem);
    fake.eventFd(0, 0, fake.eventfd());
    fake.eventFd(1, 0, own);
    // Real eventfds always read 8 bytes: the failure comes from a binding double.
    const failing = { ...b, eventfdRead: () => { throw Object.assign(new Error('read: short read'), { code: 'EIO' }); } } as typeof b;
    peer = await IvshmemPeer.fromSocket(fake.cli, { binding: failing });
    const events: string[] = [];
    peer.on('error', () => events.push('error'));
    peer.on('close', () => events.push('close'));
    b.eventfdWrite(own, 1); // the fake server's copy: the peer's watcher fires and reads
    await until(() => events.length === 2, 'error and close');
    expect(events).to.deep.equal(['error', 'close']);
  });

  it('a foreign eventfd whose write fails does not throw out of setState() or close()', async () => {
    const mem = fake.memfd(65536);
    fake.init({ id: 1, maxPeers: 2, vectors: 1 }, mem);
    fake.eventFd(0, 0, fake.eventfd());
    fake.eventFd(1, 0, fake.eventfd());
    const failing = { ...b, eventfdWrite: () => { throw Object.assign(new Error('write: EIO'), { code: 'EIO' }); } } as typeof b;
    peer = await IvshmemPeer.fromSocket(fake.cli, { binding: failing });
    let err: unknown;
    peer.on('error', (e) => (err = e));
    expect(() => peer!.setState(1)).not.to.throw();
    await until(() => err !== undefined, 'error');
    expect(peer.window.byteLength).to.equal(0); // released
    expect(() => peer!.close()).not.to.throw();
  });

  for (const [what, make] of [
    ['a regular file (memfd)', () => fake.memfd(4096)],
    ['a socket', () => {
      const [a, c] = b.socketPair();
      extra.push(c);
      return a;
    }],
    ['a directory', () => openSync(fileURLToPath(new URL('.', import.meta.url)), 'r')],
    ['/dev/null', () => openSync('/dev/null', 'r+')],
    ['a pipe (FIFO)', openFifo],
  ] as const) {
    for (const whose of ['own', 'foreign'] as const) {
      it(`${what} as ${whose === 'own' ? 'an own' : 'a foreign'} "eventfd" is VSHM_ERR_EVENTFD_KIND at its EVENT_FD: a doorbell would write into it`, async () => {
        const mem = fake.memfd(65536);
        fake.init({ id: 1, maxPeers: 2, vectors: 1 }, mem);
        const bogus = make();
        fake.eventFd(0, 0, whose === 'foreign' ? bogus : fake.eventfd());
        if (whose === 'own') fake.eventFd(1, 0, bogus);
        b.close(bogus); // the peer holds its own copy
        const err = await IvshmemPeer.fromSocket(fake.cli, { binding: b }).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(ProtocolError).with.property('code', 'VSHM_ERR_EVENTFD_KIND');
        expect((err as Error).message).to.contain(`EVENT_FD(${whose === 'own' ? 1 : 0}, 0) carries no eventfd`);
      });
    }
  }

  it('an own eventfd that cannot be watched rejects connect() with VSHM_ERR_EVENTFD (fuzz seed 67)', async () => {
    const mem = fake.memfd(65536);
    fake.init({ id: 0, maxPeers: 2, vectors: 1 }, mem);
    fake.eventFd(0, 0, fake.eventfd());
    // Past the kind check, a watcher can still fail (where /proc cannot name the fd, a regular
    // file passes for an eventfd, and epoll refuses it with EPERM): a binding double here.
    const failing = {
      ...b,
      createWatcher: (fd: number, cb: Parameters<typeof b.createWatcher>[1]) => {
        if (fd === fake.cli) return b.createWatcher(fd, cb); // the server socket's
        throw Object.assign(new Error('uv_poll_init: EPERM'), { code: 'EPERM' });
      },
    } as typeof b;
    const err = await IvshmemPeer.fromSocket(fake.cli, { binding: failing }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ProtocolError).with.property('code', 'VSHM_ERR_EVENTFD');
  });

  it('without /proc only the type bits tell: a directory, socket, pipe or device is refused, an eventfd or a regular file passes', () => {
    const noProc = (): string => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    };
    const efd = fake.eventfd();
    const file = fake.memfd(4096);
    const [sock, peerEnd] = b.socketPair();
    const dir = openSync(fileURLToPath(new URL('.', import.meta.url)), 'r');
    const nul = openSync('/dev/null', 'r+');
    const fifo = openFifo();
    extra.push(sock, peerEnd, dir, nul, fifo);
    expect(notAnEventfd(b, efd, noProc)).to.equal(null);
    expect(notAnEventfd(b, file, noProc)).to.equal(null);
    for (const fd of [sock, dir, nul, fifo]) expect(notAnEventfd(b, fd, noProc)).to.match(/^mode 0o\d+$/);
    // With /proc: only an eventfd passes.
    expect(notAnEventfd(b, efd)).to.equal(null);
    expect(notAnEventfd(b, file)).to.match(/^\/memfd:/);
  });

  it('a memory fd that is no regular file (a directory of 4096 bytes) is VSHM_ERR_INIT_MEMORY, not a bare mmap ENODEV (fuzz seed 7099)', async function () {
    const dir = openSync(fileURLToPath(new URL('.', import.meta.url)), 'r');
    extra.push(dir);
    if (b.fstat(dir).size < 4096) this.skip(); // the size check would refuse it first
    fake.init({ id: 0, maxPeers: 1, vectors: 1 }, dir);
    fake.eventFd(0, 0, fake.eventfd());
    const err = await IvshmemPeer.fromSocket(fake.cli, { binding: b }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ProtocolError).with.property('code', 'VSHM_ERR_INIT_MEMORY');
  });

  it('a server that resets the connection (ECONNRESET) is gone like one that closed it (fuzz seed 2)', async () => {
    // Unread bytes in the server end's receive queue turn its close into a reset for the client.
    b.sendMsg(fake.cli, Buffer.from('x'), []);
    fake.init({ id: 1, maxPeers: 2, vectors: 1 }, fake.memfd(65536));
    fake.eventFd(0, 0, fake.eventfd());
    fake.eventFd(1, 0, fake.eventfd());
    peer = await IvshmemPeer.fromSocket(fake.cli, { binding: b });
    const events: string[] = [];
    for (const e of ['server-gone', 'peer-gone', 'error', 'close']) peer.on(e, () => events.push(e));
    fake.hangUp();
    await until(() => events.length >= 2, 'server-gone');
    expect(events).to.deep.equal(['server-gone', 'peer-gone']);
  });

  it('a reset before the burst completes rejects connect() with VSHM_ERR_SERVER_EOF', async () => {
    b.sendMsg(fake.cli, Buffer.from('x'), []);
    fake.init({ id: 1, maxPeers: 2, vectors: 1 }, fake.memfd(65536));
    fake.hangUp();
    const err = await IvshmemPeer.fromSocket(fake.cli, { binding: b }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ProtocolError).with.property('code', 'VSHM_ERR_SERVER_EOF');
  });

  it('accepts the smallest memory, S = 4096 (RW 0, no output sections, §2)', async () => {
    const mem = fake.memfd(4096);
    fake.init({ id: 1, maxPeers: 2, vectors: 1 }, mem);
    fake.eventFd(0, 0, fake.eventfd());
    fake.eventFd(1, 0, fake.eventfd());
    peer = await IvshmemPeer.fromSocket(fake.cli, { binding: b });
    expect(peer.layout.rwSize).to.equal(0);
    expect(peer.window.byteLength).to.equal(0);
    peer.setState(1);
    expect(peer.state).to.equal(1);
    peer.close();
  });
});

describe('IvshmemPeer closed from inside a server message handler', () => {
  const rig = usePeerRig();

  it('reads no further from its socket number after close() in a peer-gone listener (fd reuse)', async () => {
    const p = await rig.connect();
    const sock = rig.fake.cli;
    const [s1, s2] = b.socketPair();
    const dups: number[] = [];
    try {
      b.sendMsg(s2, Buffer.from([9, 9, 9, 9, 9, 9, 9, 9]), []);
      let gone = false;
      p.on('peer-gone', () => {
        gone = true;
        p.close();
        // Someone else in the process opens an fd right away: it gets the lowest free number.
        for (let i = 0; i < 64; i++) {
          const d = b.dup(s1);
          dups.push(d);
          if (d === sock) break;
        }
      });
      rig.fake.peerGone(0);
      await until(() => gone, 'peer-gone');
      expect(dups).to.include(sock);
      const r = b.recvMsg(s1, 8, 0);
      expect(r?.bytes.length).to.equal(8); // nobody else consumed these bytes
    } finally {
      for (const d of dups) b.close(d);
      b.close(s1);
      b.close(s2);
    }
  });

  it('a server whose listen backlog is full: connect gives up after timeoutMs instead of blocking the event loop', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vshm-backlog-'));
    const path = join(dir, 'stalled.sock');
    const fds = [b.socketListen(path, 0o600, 0)]; // a server that never accepts
    for (let c = b.socketConnect(path, true); c >= 0; c = b.socketConnect(path, true)) fds.push(c);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5); // runs only if the event loop is not blocked
    try {
      const err = await IvshmemPeer.connect(path, { timeoutMs: 300 }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(ProtocolError).with.property('code', 'VSHM_ERR_CONNECT_TIMEOUT');
      expect(ticks).to.be.greaterThan(0);
    } finally {
      clearInterval(timer);
      for (const fd of fds) b.close(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
