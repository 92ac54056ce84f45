/**
 * IvshmemServer policy against a fake binding: the send paths a real socket rarely
 * takes — INIT that cannot be sent, short sends, EAGAIN, send errors, queue overflow — and the fd
 * bookkeeping around them (§1.3 last paragraph, §1.6).
 */
import { expect } from 'chai';
import type { Binding, FdWatcher, WatchCallback } from '@vshm/addon';
import { encodeEventFd, encodeInit, encodePeerGone } from '../../src/ivshmem/protocol.js';
import { IvshmemServer } from '../../src/server/server.js';
import { MAX_QUEUED_FDS, queuedFdLimit } from '../../src/server/connection.js';
import { tmpPath } from '../fixtures/raw-client.js';

interface Sent {
  fd: number;
  hex: string;
  /** Which fd was attached, as the fake's identity of the *original* object (dups resolved). */
  fds: number[];
}

type SendHook = (fd: number, data: Uint8Array, fds: number[]) => number | undefined;

const READABLE = 1;
const WRITABLE = 2;
const DISCONNECT = 4;

/** A minimal in-memory Binding: fds are numbers, dups remember their origin. */
class FakeBinding {
  private nextFd = 100;
  readonly open = new Map<number, number>(); // fd → origin fd (itself unless a dup)
  readonly watchers = new Map<number, { cb: WatchCallback; events: number; closed: boolean }>();
  readonly sent: Sent[] = [];
  readonly accepts: number[] = [];
  /** Server-side sockets whose client has hung up (what poll(2) would say, watcher or not). */
  readonly hungUp = new Set<number>();
  table: ArrayBuffer | undefined;
  onSend: SendHook | undefined;
  listenFd = -1;

  private alloc(origin?: number): number {
    const fd = this.nextFd++;
    this.open.set(fd, origin ?? fd);
    return fd;
  }

  /** Queue a client connection; returns the server-side fd it will get. */
  incoming(): number {
    const fd = this.alloc();
    this.accepts.push(fd);
    return fd;
  }

  fire(fd: number, events: number): void {
    const w = this.watchers.get(fd);
    if (!w || w.closed) throw new Error(`no active watcher on ${fd}`);
    w.cb(0, events);
  }

  /** Let the server accept everything queued. */
  accept(): void {
    this.fire(this.listenFd, READABLE);
  }

  sentTo(fd: number): string[] {
    return this.sent.filter((s) => s.fd === fd).map((s) => s.hex);
  }

  binding(): Binding {
    const self = this;
    const check = (fd: number): void => {
      if (!self.open.has(fd)) throw Object.assign(new Error(`EBADF ${fd}`), { code: 'EBADF' });
    };
    const b: Partial<Binding> = {
      PROT_READ: 1,
      PROT_WRITE: 2,
      F_SEAL_SEAL: 1,
      F_SEAL_SHRINK: 2,
      F_SEAL_GROW: 4,
      O_RDWR: 2,
      O_CREAT: 0o100,
      O_EXCL: 0o200,
      POLL_READABLE: READABLE,
      POLL_WRITABLE: WRITABLE,
      POLL_DISCONNECT: DISCONNECT,
      memfdCreate: () => self.alloc(),
      ftruncate: (fd) => check(fd),
      addSeals: (fd) => check(fd),
      fstat: (fd) => (check(fd), { size: 65536, mode: 0o100600, ino: 1, dev: 1n }),
      mmap: () => (self.table = new ArrayBuffer(4096)),
      munmap: () => undefined,
      fence: () => undefined,
      close: (fd) => {
        check(fd);
        self.open.delete(fd);
      },
      dup: (fd) => (check(fd), self.alloc(self.open.get(fd))),
      eventfd: () => self.alloc(),
      socketListen: () => (self.listenFd = self.alloc()),
      socketAccept: () => self.accepts.shift() ?? -1,
      setNonBlocking: (fd) => check(fd),
      // Every client is of our own uid: the uid rule has its own test (server-peer-uid.test.ts).
      peerCred: (fd) => (check(fd), { pid: 1, uid: process.geteuid?.() ?? 0, gid: 0 }),
      pollNow: (fd) => (check(fd), self.hungUp.has(fd) ? DISCONNECT : 0),
      sendMsg: (fd, data, fds) => {
        check(fd);
        for (const f of fds) check(f);
        const r = self.onSend?.(fd, data, fds);
        const n = r ?? data.length;
        if (n > 0) {
          self.sent.push({ fd, hex: Buffer.from(data.subarray(0, n)).toString('hex'), fds: fds.map((f) => self.open.get(f)!) });
        }
        return n;
      },
      createWatcher: (fd, cb): FdWatcher => {
        const w = { cb, events: 0, closed: false };
        self.watchers.set(fd, w);
        return {
          start: (events) => void (w.events = events),
          stop: () => void (w.events = 0),
          ref: () => undefined,
          unref: () => undefined,
          close: () => void (w.closed = true),
        };
      },
    };
    return b as Binding;
  }
}

const hex = (b: Buffer): string => b.toString('hex');

describe('IvshmemServer send policy (fake binding)', () => {
  let fake: FakeBinding;
  let server: IvshmemServer;

  beforeEach(async () => {
    fake = new FakeBinding();
    server = new IvshmemServer({ binding: fake.binding(), socketPath: tmpPath('fake'), memorySize: 65536, vectors: 2 });
    await server.start();
  });

  afterEach(async () => {
    await server.stop();
  });

  /** Connect a client and return its server-side fd. */
  function join(): number {
    const fd = fake.incoming();
    fake.accept();
    return fd;
  }

  it('closes a connection whose INIT cannot be sent, and keeps its ID free', () => {
    const warnings: Error[] = [];
    server.on('warning', (e: Error) => warnings.push(e));
    const before = fake.open.size;
    fake.onSend = () => -1; // EAGAIN on a fresh socket
    const fd = join();
    expect(fake.open.has(fd), 'socket closed').to.equal(false);
    expect(fake.open.size, 'eventfds closed too').to.equal(before);
    expect(server.peerIds).to.deep.equal([]);
    expect(warnings.map((w) => (w as { code?: string }).code)).to.deep.equal(['VSHM_ERR_INIT_SEND']);
    fake.onSend = undefined;
    join();
    expect(server.peerIds).to.deep.equal([0]);
  });

  it('queues the rest of a short send without the fd, then the next messages with dups, flushing on POLL_WRITABLE', () => {
    const a = join();
    const aOwn = fake.sent.filter((s) => s.fd === a).slice(1).map((s) => s.fds[0]);
    // The next send to A takes 5 bytes, then the socket is full.
    let budget = 5;
    fake.onSend = (fd, data) => {
      if (fd !== a) return undefined;
      if (budget === 0) return -1;
      const n = Math.min(budget, data.length);
      budget -= n;
      return n;
    };
    const b = join();
    expect(server.queuedMessages(0)).to.equal(2);
    expect(fake.watchers.get(a)!.events & WRITABLE, 'waits for writability').to.not.equal(0);
    const bEventfds = fake.sent.filter((s) => s.fd === b).slice(-2).map((s) => s.fds[0]);
    // B leaves before A drains: its eventfds are closed, the queued dup must survive.
    fake.fire(b, READABLE);
    expect(server.peerIds).to.deep.equal([0]);
    expect(server.queuedMessages(0)).to.equal(3);

    fake.onSend = undefined;
    fake.fire(a, WRITABLE);
    expect(server.queuedMessages(0)).to.equal(0);
    expect(fake.watchers.get(a)!.events & WRITABLE).to.equal(0);
    const toA = fake.sent.filter((s) => s.fd === a).slice(3);
    const whole = hex(encodeEventFd(1, 0));
    expect(toA.map((s) => s.hex)).to.deep.equal([
      whole.slice(0, 10),
      whole.slice(10),
      hex(encodeEventFd(1, 1)),
      hex(encodePeerGone(1)),
    ]);
    expect(toA.map((s) => s.fds)).to.deep.equal([[bEventfds[0]], [], [bEventfds[1]], []]);
    expect(aOwn).to.have.length(2);
    // Every dup was closed after sending: only originals (listen, memory, A's socket and
    // eventfds) remain open.
    expect([...fake.open.entries()].every(([fd, origin]) => fd === origin)).to.equal(true);
  });

  it('drops a peer whose send fails: entry zeroed, PEER_GONE to the others, its fds closed', () => {
    const a = join();
    const b = join();
    new Uint32Array(fake.table!)[0] = 9;
    fake.onSend = (fd) => {
      if (fd === a) throw Object.assign(new Error('EPIPE'), { code: 'EPIPE' });
      return undefined;
    };
    const gone: number[] = [];
    server.on('peer-gone', (id: number) => gone.push(id));
    // B leaves; announcing it to A fails, so A is dropped too (§1.3: undeliverable → dropped).
    fake.fire(b, READABLE);
    expect(gone).to.deep.equal([1, 0]);
    expect(server.peerIds).to.deep.equal([]);
    expect(new Uint32Array(fake.table!)[0]).to.equal(0);
    expect(fake.open.has(a)).to.equal(false);
  });

  it('drops an existing peer that fails during a newcomer sequence; the newcomer gets PEER_GONE after its burst', () => {
    const a = join();
    fake.onSend = (fd) => {
      if (fd === a) throw Object.assign(new Error('EPIPE'), { code: 'EPIPE' });
      return undefined;
    };
    const b = join();
    expect(server.peerIds).to.deep.equal([1]);
    expect(fake.sentTo(b)).to.deep.equal([
      hex(encodeInit({ id: 1, maxPeers: 2, vectors: 2, protocol: 0, outputSectionSize: 0 })),
      hex(encodeEventFd(0, 0)),
      hex(encodeEventFd(0, 1)),
      hex(encodeEventFd(1, 0)),
      hex(encodeEventFd(1, 1)),
      hex(encodePeerGone(0)),
    ]);
    expect(fake.open.has(a)).to.equal(false);
  });

  it('drops a peer that does not read once its queue holds queuedFdLimit() dups, and closes them', () => {
    const limit = queuedFdLimit(2, 2); // -n 2 (default) -V 2: 4 + MAX_QUEUED_FDS
    const a = join();
    fake.onSend = (fd) => (fd === a ? -1 : undefined);
    let dropped = false;
    server.on('peer-gone', (id: number) => (dropped ||= id === 0));
    const dupsHeld = (): number => [...fake.open.entries()].filter(([fd, origin]) => fd !== origin).length;
    let most = 0;
    let joins = 0;
    // Each newcomer owes A its two eventfds (and, on leaving, a PEER_GONE without fd).
    for (; !dropped && joins < 4 * MAX_QUEUED_FDS; joins++) {
      const b = join();
      most = Math.max(most, dupsHeld());
      fake.fire(b, DISCONNECT);
    }
    expect(dropped).to.equal(true);
    expect(most, 'dups the server held at once').to.be.at.most(limit);
    expect(joins, 'dropped as soon as the cap is reached').to.equal(limit / 2 + 1);
    expect(server.peerIds).to.deep.equal([]);
    expect(dupsHeld(), 'queued dups closed').to.equal(0);
  });

  it('treats a poll error like a departure', () => {
    const a = join();
    join();
    fake.watchers.get(a)!.cb(-9, 0);
    expect(server.peerIds).to.deep.equal([1]);
  });

  it('a newcomer does not lose the race against a departure its watcher has not seen yet', () => {
    const a = join();
    const b = join();
    // A hangs up and a new client connects; the accept runs first in this loop turn.
    fake.hungUp.add(a);
    const c = join();
    expect(server.peerIds, 'A dropped, the newcomer takes its id').to.deep.equal([1, 0]);
    expect(fake.open.has(a), "A's socket closed").to.equal(false);
    expect(fake.sentTo(c)[0]).to.equal(hex(encodeInit({ id: 0, maxPeers: 2, vectors: 2, protocol: 0, outputSectionSize: 0 })));
    expect(fake.sentTo(b)).to.include(hex(encodePeerGone(0)));
    // With nobody hung up, a third client is still refused without a message (§1.4).
    const d = join();
    expect(fake.open.has(d)).to.equal(false);
    expect(fake.sentTo(d)).to.deep.equal([]);
    expect(server.peerIds).to.deep.equal([1, 0]);
  });
});
