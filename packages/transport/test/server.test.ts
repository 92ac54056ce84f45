/**
 * IvshmemServer in-process against raw clients: §8 server checklist items 1–10 and 12 (the CLI
 * side of 8, 10 and 11 is in server-cli.test.ts). Every wait is on an event or a message, bounded
 * by a generous timeout; nothing sleeps.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import binding from '@vshm/addon';
import { ArgumentError } from '../src/errors.js';
import {
  encodeEventFd,
  encodeInit,
  encodePeerGone,
  MSG_EVENT_FD,
  MSG_INIT,
  type InitMessage,
} from '../src/ivshmem/protocol.js';
import { IvshmemServer, type IvshmemServerOptions } from '../src/ivshmem/server.js';
import { ServerError } from '../src/ivshmem/server-socket.js';
import { countFds, RawClient, removeIfExists, tmpPath, type RawMessage } from './helpers/raw-client.js';

/** Compact form of a message: 'INIT 0', 'EV 1.2', 'GONE 1' (and checks the fd count per type). */
function sig(m: RawMessage): string {
  const { msg } = m;
  if (msg.type === MSG_INIT) {
    expect(m.fds, 'INIT carries the memory fd').to.have.length(1);
    return `INIT ${(msg as InitMessage).id}`;
  }
  if (msg.type === MSG_EVENT_FD) {
    expect(m.fds, 'EVENT_FD carries one eventfd').to.have.length(1);
    const e = msg as { id: number; vector: number };
    return `EV ${e.id}.${e.vector}`;
  }
  expect(m.fds, 'PEER_GONE carries no fd').to.have.length(0);
  return `GONE ${(msg as { id: number }).id}`;
}

function evs(id: number, vectors: number): string[] {
  return Array.from({ length: vectors }, (_, v) => `EV ${id}.${v}`);
}

describe('IvshmemServer (§1.3–1.7, §8 server items)', function () {
  let server: IvshmemServer | undefined;
  let clients: RawClient[] = [];
  let paths: string[] = [];
  let shmNames: string[] = [];

  async function start(opts: IvshmemServerOptions = {}): Promise<IvshmemServer> {
    const socketPath = tmpPath('srv');
    paths.push(socketPath);
    server = new IvshmemServer({ socketPath, memorySize: 65536, ...opts });
    await server.start();
    return server;
  }

  function connect(opts: { paused?: boolean } = {}): RawClient {
    const c = RawClient.connect(binding, server!.socketPath, opts);
    clients.push(c);
    return c;
  }

  /** Connect and read the whole initial burst (INIT + (peers + 1)·vectors EVENT_FDs). */
  async function join(existing: number, vectors: number): Promise<{ c: RawClient; burst: RawMessage[]; id: number }> {
    const c = connect();
    const burst = await c.take(1 + (existing + 1) * vectors);
    return { c, burst, id: (burst[0].msg as InitMessage).id };
  }

  afterEach(async () => {
    for (const c of clients) c.close();
    clients = [];
    await server?.stop();
    server = undefined;
    for (const p of paths) removeIfExists(p);
    paths = [];
    for (const n of shmNames) {
      try {
        binding.shmUnlink(n);
      } catch {
        // already unlinked by the server (§1.7)
      }
    }
    shmNames = [];
  });

  it('item 1: sends exactly 40/16/12-byte messages with the golden contents and fds', async () => {
    const s = await start({ vectors: 3, protocol: 0x1234, outputSectionSize: 4096 });
    const a = await join(0, 3);
    expect(a.burst[0].bytes.toString('hex')).to.equal(
      encodeInit({ id: 0, maxPeers: 2, vectors: 3, protocol: 0x1234, outputSectionSize: 4096 }).toString('hex'),
    );
    expect(a.burst[0].bytes.readUInt32LE(8)).to.equal(2); // version
    expect(a.burst[0].bytes.readUInt32LE(12)).to.equal(2); // compatible_version
    expect(binding.fstat(a.burst[0].fds[0]).size).to.equal(s.memorySize);
    for (let v = 0; v < 3; v++) {
      const m = a.burst[1 + v];
      expect(m.bytes.length).to.equal(16);
      expect(m.bytes.toString('hex')).to.equal(encodeEventFd(0, v).toString('hex'));
      // It is an eventfd: a write is read back as the counter.
      expect(binding.eventfdWrite(m.fds[0], 3)).to.equal(true);
      expect(binding.eventfdRead(m.fds[0])).to.equal(3);
    }
    const b = await join(1, 3);
    await a.c.take(3);
    b.c.close();
    const gone = await a.c.next();
    expect(gone.bytes.toString('hex')).to.equal(encodePeerGone(1).toString('hex'));
    expect(gone.bytes.length).to.equal(12);
    expect(gone.fds).to.deep.equal([]);
  });

  it('items 2, 3, 8: connection order for 1, 2 and 3 peers, existing peers get only EVENT_FD(new), shutdown order', async () => {
    const s = await start({ maxPeers: 3, vectors: 2, protocol: 0x10 });
    const a = await join(0, 2);
    expect(a.burst.map(sig)).to.deep.equal(['INIT 0', ...evs(0, 2)]);
    const b = await join(1, 2);
    expect(b.burst.map(sig)).to.deep.equal(['INIT 1', ...evs(0, 2), ...evs(1, 2)]);
    expect((await a.c.take(2)).map(sig)).to.deep.equal(evs(1, 2));
    const c = await join(2, 2);
    expect(c.burst.map(sig)).to.deep.equal(['INIT 2', ...evs(0, 2), ...evs(1, 2), ...evs(2, 2)]);
    expect((await a.c.take(2)).map(sig)).to.deep.equal(evs(2, 2));
    expect((await b.c.take(2)).map(sig)).to.deep.equal(evs(2, 2));
    expect(s.peerIds).to.deep.equal([0, 1, 2]);

    // Owner and others hold the same eventfd (§1.3): B's copy of (0, 1) rings A's own (0, 1).
    binding.eventfdWrite(b.burst[2].fds[0], 7);
    expect(binding.eventfdRead(a.burst[2].fds[0])).to.equal(7);
    // C's copy of (1, 0) rings B's own (1, 0).
    binding.eventfdWrite(c.burst[3].fds[0], 5);
    expect(binding.eventfdRead(b.burst[3].fds[0])).to.equal(5);

    // §1.7: peers are dropped in list order; the remaining ones get PEER_GONE for each. Reading
    // to EOF proves nothing else was ever sent (item 3: "only").
    await s.stop();
    expect((await a.c.untilEof()).map(sig)).to.deep.equal([]);
    expect((await b.c.untilEof()).map(sig)).to.deep.equal(['GONE 0']);
    expect((await c.c.untilEof()).map(sig)).to.deep.equal(['GONE 0', 'GONE 1']);
    expect(existsSync(s.socketPath), 'socket removed').to.equal(false);
  });

  it('item 4: IDs are lowest-free and reused; the list stays in connection order', async () => {
    const s = await start({ maxPeers: 3, vectors: 1 });
    const a = await join(0, 1);
    const b = await join(1, 1);
    const c = await join(2, 1);
    expect([a.id, b.id, c.id]).to.deep.equal([0, 1, 2]);
    await a.c.take(2);
    await b.c.take(1);
    const gone = once(s, 'peer-gone');
    b.c.close();
    expect((await gone)[0]).to.equal(1);
    expect((await a.c.next()).msg).to.deep.include({ type: 2, id: 1 });
    expect((await c.c.next()).msg).to.deep.include({ type: 2, id: 1 });

    // D takes the freed ID 1; its foreign fds follow the list order A(0), C(2), then its own.
    const d = await join(2, 1);
    expect(d.burst.map(sig)).to.deep.equal(['INIT 1', 'EV 0.0', 'EV 2.0', 'EV 1.0']);
    expect(s.peerIds).to.deep.equal([0, 2, 1]);
    a.c.close();
    expect((await d.c.next()).msg).to.deep.include({ type: 2, id: 0 });
    const e = await join(2, 1);
    expect(e.burst.map(sig)).to.deep.equal(['INIT 0', 'EV 2.0', 'EV 1.0', 'EV 0.0']);
  });

  it('item 5: a client beyond max_peers is closed without a message and serving continues', async () => {
    const s = await start({ maxPeers: 2, vectors: 2 });
    const a = await join(0, 2);
    const b = await join(1, 2);
    await a.c.take(2);
    const refused = once(s, 'peer-refused');
    const extra = connect();
    expect(await extra.untilEof(), 'no message before EOF').to.deep.equal([]);
    await refused;
    expect(s.peerIds).to.deep.equal([0, 1]);
    // Still serving: after a departure the next client gets the freed ID.
    b.c.close();
    expect((await a.c.next()).msg).to.deep.include({ type: 2, id: 1 });
    const d = await join(1, 2);
    expect(d.id).to.equal(1);
    expect(d.burst.map(sig)).to.deep.equal(['INIT 1', ...evs(0, 2), ...evs(1, 2)]);
    // A saw only EVENT_FD(1, *) for D: nothing about the refused client.
    expect((await a.c.take(2)).map(sig)).to.deep.equal(evs(1, 2));
  });

  for (const [p, p0, p1] of [
    [0x8003, 0xc003, 0x8003],
    [0xc003, 0xc003, 0x8003],
    [0x1234, 0x1234, 0x1234],
  ] as const) {
    it(`item 6: -P 0x${p.toString(16)} gives peer 0 0x${p0.toString(16)} and peer 1 0x${p1.toString(16)}`, async () => {
      await start({ protocol: p });
      const a = await join(0, 1);
      const b = await join(1, 1);
      expect((a.burst[0].msg as InitMessage).protocol).to.equal(p0);
      expect((b.burst[0].msg as InitMessage).protocol).to.equal(p1);
      expect(b.burst[0].bytes.readUInt32LE(28)).to.equal(p1);
    });
  }

  for (const how of ['closes', 'writes a byte'] as const) {
    it(`item 7: a client that ${how} gets its state entry zeroed and the others get PEER_GONE`, async () => {
      const s = await start({ maxPeers: 3, vectors: 1 });
      const a = await join(0, 1);
      const b = await join(1, 1);
      const c = await join(2, 1);
      await a.c.take(2);
      await b.c.take(1);
      const table = binding.mmap(a.burst[0].fds[0], 0, 4096, binding.PROT_READ | binding.PROT_WRITE);
      try {
        const u32 = new Uint32Array(table);
        Atomics.store(u32, 0, 0x11);
        Atomics.store(u32, 1, 0xdead);
        Atomics.store(u32, 2, 0x22);
        expect(s.stateEntry(1)).to.equal(0xdead);
        if (how === 'closes') b.c.close();
        else b.c.write(Buffer.from([1]));
        expect((await a.c.next()).msg).to.deep.include({ type: 2, id: 1 });
        expect((await c.c.next()).msg).to.deep.include({ type: 2, id: 1 });
        // Zeroed before PEER_GONE left (§1.6), so it reads 0 now; the others are untouched.
        expect(Atomics.load(u32, 1)).to.equal(0);
        expect(Atomics.load(u32, 0)).to.equal(0x11);
        expect(Atomics.load(u32, 2)).to.equal(0x22);
        if (how === 'writes a byte') expect(await b.c.untilEof()).to.deep.equal([]);
        expect(s.peerIds).to.deep.equal([0, 2]);
      } finally {
        binding.munmap(table);
      }
    });
  }

  it('item 9: -l 60K yields a 65536-byte memfd sealed against shrink and grow (and further seals)', async () => {
    const s = await start({ memorySize: 60 * 1024 });
    expect(s.memorySize).to.equal(65536);
    const a = await join(0, 1);
    const fd = a.burst[0].fds[0];
    expect(binding.fstat(fd).size).to.equal(65536);
    const seals = binding.getSeals(fd);
    expect(seals & binding.F_SEAL_SHRINK).to.not.equal(0);
    expect(seals & binding.F_SEAL_GROW).to.not.equal(0);
    expect(seals & binding.F_SEAL_SEAL).to.not.equal(0);
    expect(() => binding.ftruncate(fd, 4096)).to.throw().with.property('code', 'EPERM');
  });

  it('item 10: the socket has mode 0600', async () => {
    const s = await start();
    const st = statSync(s.socketPath);
    expect(st.isSocket()).to.equal(true);
    expect(st.mode & 0o777).to.equal(0o600);
  });

  it('item 10: a stale socket is replaced', async () => {
    const socketPath = tmpPath('stale');
    paths.push(socketPath);
    binding.close(binding.socketListen(socketPath, 0o600, 1));
    expect(statSync(socketPath).isSocket()).to.equal(true);
    await start({ socketPath });
    const a = await join(0, 1);
    expect(a.id).to.equal(0);
  });

  it('item 10: a live socket is refused without connecting to it', async () => {
    const live = await start();
    let connected = 0;
    live.on('peer-connected', () => connected++);
    const second = new IvshmemServer({ socketPath: live.socketPath, memorySize: 65536 });
    let err: unknown;
    await second.start().catch((e) => (err = e));
    expect(err).to.be.instanceOf(ServerError);
    expect((err as ServerError).code).to.equal('VSHM_ERR_SOCKET_IN_USE');
    // A probe would sit in the backlog ahead of this client and take ID 0 first.
    const a = await join(0, 1);
    expect(a.id).to.equal(0);
    expect(connected).to.equal(1);
    expect(statSync(live.socketPath).isSocket()).to.equal(true);
  });

  it('item 10: a non-socket at the path is refused and left alone', async () => {
    const socketPath = tmpPath('file');
    paths.push(socketPath);
    writeFileSync(socketPath, 'keep me');
    const s = new IvshmemServer({ socketPath, memorySize: 65536 });
    let err: unknown;
    await s.start().catch((e) => (err = e));
    expect((err as ServerError).code).to.equal('VSHM_ERR_NOT_SOCKET');
    expect(readFileSync(socketPath, 'utf8')).to.equal('keep me');
  });

  it('item 12: the state table is zero after start even for a reused -M object, which is unlinked at stop', async () => {
    const name = `/vshm-test-${process.pid}-${Date.now().toString(36)}`;
    shmNames.push(name);
    const fd = binding.shmOpen(name, binding.O_RDWR | binding.O_CREAT, 0o600);
    binding.ftruncate(fd, 65536);
    const junk = binding.mmap(fd, 0, 8192, binding.PROT_READ | binding.PROT_WRITE);
    new Uint8Array(junk).fill(0xa5);
    binding.munmap(junk);
    binding.close(fd);

    const s = await start({ memory: { kind: 'shm', name } });
    const a = await join(0, 1);
    const view = binding.mmap(a.burst[0].fds[0], 0, 8192, binding.PROT_READ);
    try {
      const bytes = new Uint8Array(view);
      expect(bytes.subarray(0, 4096).every((x) => x === 0), 'state table zeroed').to.equal(true);
      expect(bytes[4096], 'data sections untouched').to.equal(0xa5);
    } finally {
      binding.munmap(view);
    }
    await s.stop();
    expect(() => binding.shmOpen(name, binding.O_RDWR, 0)).to.throw().with.property('code', 'ENOENT');
  });

  it('-m DIR: an unlinked file of the rounded size', async () => {
    const s = await start({ memory: { kind: 'tmpfile', dir: tmpdir() }, memorySize: 100000 });
    const a = await join(0, 1);
    const st = binding.fstat(a.burst[0].fds[0]);
    expect(st.size).to.equal(131072);
    expect(s.memorySize).to.equal(131072);
  });

  it('refuses bad options in the constructor, creating nothing', () => {
    expect(() => new IvshmemServer({ vectors: 65 })).to.throw(ArgumentError);
    expect(() => new IvshmemServer({ maxPeers: 3, protocol: 0x8003 })).to.throw(ArgumentError);
  });

  it('a failed start removes what it created (socket dir missing, -M object created)', async () => {
    const name = `/vshm-test-${process.pid}-${Date.now().toString(36)}-f`;
    shmNames.push(name);
    const s = new IvshmemServer({ socketPath: '/nonexistent-dir/x.sock', memory: { kind: 'shm', name } });
    let err: unknown;
    await s.start().catch((e) => (err = e));
    expect(err).to.have.property('code', 'ENOENT');
    expect(() => binding.shmOpen(name, binding.O_RDWR, 0)).to.throw().with.property('code', 'ENOENT');
  });

  it('queues messages for a peer whose socket is full and delivers them completely and in order', async () => {
    const V = 64;
    const s = await start({ vectors: V });
    const stalled = connect({ paused: true });
    const expected = ['INIT 0', ...evs(0, V)];
    let cycles = 0;
    // Churn a second peer until the stalled peer's socket is full and the server queues, then a
    // few more cycles so the queue holds fds of peers that are long gone.
    let extra = 3;
    while (extra > 0) {
      if (cycles > 200) throw new Error('the socket never filled up');
      const b = await join(1, V);
      expect(b.id).to.equal(1);
      const gone = once(s, 'peer-gone');
      b.c.close();
      await gone;
      expected.push(...evs(1, V), 'GONE 1');
      cycles++;
      if (s.queuedMessages(0) > 0) extra--;
    }
    expect(s.peerIds).to.deep.equal([0]);
    stalled.resume();
    const got = await stalled.take(expected.length);
    expect(got.map(sig)).to.deep.equal(expected);
    // The queued fds are real eventfds (dups kept alive until sent).
    expect(binding.eventfdWrite(got[got.length - 2].fds[0], 1)).to.equal(true);
    expect(s.queuedMessages(0)).to.equal(0);
  });

  it('leaks no fds as clients come, get refused and go', async () => {
    const s = await start({ maxPeers: 2, vectors: 4 });
    const cycle = async (): Promise<void> => {
      const a = await join(0, 4);
      const b = await join(1, 4);
      await a.c.take(4);
      const refused = once(s, 'peer-refused');
      const extra = connect();
      await refused;
      const goneA = once(s, 'peer-gone');
      a.c.close();
      await goneA;
      await b.c.next();
      const goneB = once(s, 'peer-gone');
      b.c.write(Buffer.from([0]));
      await goneB;
      for (const c of clients) c.close();
      clients = [];
      void extra;
    };
    await cycle(); // warm up lazily created handles
    const before = countFds();
    for (let i = 0; i < 3; i++) await cycle();
    expect(countFds()).to.equal(before);
    expect(s.peerIds).to.deep.equal([]);
  });
});
