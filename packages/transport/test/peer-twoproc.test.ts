/**
 * IvshmemPeer against the real IvshmemServer, one peer per child process (spec §1.8, §2, §3;
 * checklist items 17–22). Children are fixtures/peer-child.ts, driven over IPC.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import binding from '@vshm/addon';
import { IvshmemPeer } from '../src/ivshmem/peer.js';
import { IvshmemServer } from '../src/ivshmem/server.js';
import { ChildPeer } from './fixtures/peer-harness.js';

describe('IvshmemPeer with the real server, two processes (spec §2, §3)', () => {
  let dir: string;
  let server: IvshmemServer;
  let children: ChildPeer[];

  async function startServer(opts: { memorySize: number; outputSectionSize?: number; vectors: number; protocol?: number }): Promise<string> {
    const socketPath = join(dir, 'ivshmem.sock');
    server = new IvshmemServer({ socketPath, maxPeers: 2, ...opts });
    await server.start();
    return socketPath;
  }

  /** Start a child peer and wait until its connect() resolved; children connect in order. */
  async function child(path: string, mode = ''): Promise<[ChildPeer, Record<string, unknown>]> {
    const c = new ChildPeer(path, mode);
    children.push(c);
    const ready = await c.ready();
    expect(ready.type, String(ready.message)).to.equal('ready');
    return [c, ready];
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-peer-'));
    children = [];
  });
  afterEach(async () => {
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.exit));
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('virtio console layout (-l 64K -V 3 -P 0x8003)', () => {
    let be: ChildPeer;
    let fe: ChildPeer;
    beforeEach(async () => {
      const path = await startServer({ memorySize: 65536, vectors: 3, protocol: 0x8003 });
      let info;
      [be, info] = await child(path);
      expect(info).to.include({ id: 0, protocol: 0xc003, vectors: 3, windowSize: 61440 });
      [fe, info] = await child(path);
      expect(info).to.include({ id: 1, protocol: 0x8003 });
      await be.request({ op: 'enable' });
      await fe.request({ op: 'enable' });
    });

    it('a doorbell wakes only the targeted vector of the other process (item 19)', async () => {
      const got = be.nextNew('interrupt');
      await fe.request({ op: 'doorbell', target: 0, vector: 2 });
      expect((await got).vector).to.equal(2);
      expect(be.interrupts()).to.deep.equal([2]);
      const back = fe.nextNew('interrupt');
      await be.request({ op: 'doorbell', target: 1, vector: 1 });
      expect((await back).vector).to.equal(1);
      expect(fe.interrupts()).to.deep.equal([1]);
      expect(be.interrupts()).to.deep.equal([2]);
    });

    it('setState interrupts vector 0 of the other peer, which sees the state (item 20)', async () => {
      const irq = fe.nextNew('interrupt');
      const st = fe.nextNew('peer-state');
      await be.request({ op: 'setState', value: 1 });
      expect((await irq).vector).to.equal(0);
      expect(await st).to.include({ id: 0, state: 1 });
      expect(await fe.request({ op: 'peerState', id: 0 })).to.equal(1);
      expect(server.stateEntry(0)).to.equal(1);
    });

    it('a killed peer gets its entry zeroed and the other sees peer-gone and vector 0 (§1.6, item 22)', async () => {
      const st = be.nextNew('peer-state', { id: 1, state: 1 });
      await fe.request({ op: 'setState', value: 1 });
      await st;
      const gone = be.nextNew('peer-gone');
      const zero = be.nextNew('peer-state', { id: 1, state: 0 });
      const irq = be.nextNew('interrupt');
      fe.kill();
      expect((await gone).id).to.equal(1);
      expect((await irq).vector).to.equal(0);
      await zero;
      expect(server.stateEntry(1)).to.equal(0);
      expect(await be.request({ op: 'peerState', id: 1 })).to.equal(0);
    });

    it("reports 'server-gone' when the server stops (§1.7, item 17)", async () => {
      const beGone = be.nextNew('server-gone');
      const feGone = fe.nextNew('server-gone');
      const bePeerGone = be.nextNew('peer-gone', { id: 1 });
      await server.stop();
      await Promise.all([beGone, feGone, bePeerGone]);
      expect(fe.messages.some((m) => m.type === 'peer-gone' && m.id === 0)).to.equal(true);
    });

    it('a peer that closes leaves no fds behind and is announced to the other', async () => {
      const gone = be.nextNew('peer-gone', { id: 1 });
      const ready = fe.messages.find((m) => m.type === 'ready')!;
      const after = await fe.request({ op: 'close' });
      expect(after).to.equal(ready.fdsBeforeConnect);
      await gone;
    });
  });

  describe('isolated layout (-l 256K -o 64K): protections (§2, item 18)', () => {
    let path: string;
    let info0: Record<string, unknown>;
    beforeEach(async () => {
      path = await startServer({ memorySize: 262144, outputSectionSize: 65536, vectors: 1 });
      [, info0] = await child(path);
      expect(info0).to.include({ id: 0, rwSize: 262144 - 4096 - 131072, fullProtection: true });
    });

    it('the own output section and the R/W section are writable', async () => {
      const [p1] = await child(path);
      const rw = info0.rwSize as number;
      expect(await p1.request({ op: 'write', offset: 0, value: 11 })).to.equal(11);
      expect(await p1.request({ op: 'write', offset: rw - 1, value: 12 })).to.equal(12);
      expect(await p1.request({ op: 'write', offset: rw + 65536, value: 13 })).to.equal(13); // own section
      expect(await p1.request({ op: 'write', offset: rw + 131071, value: 14 })).to.equal(14);
      expect(await p1.request({ op: 'read', offset: rw + 65535 })).to.equal(0); // foreign: readable
    });

    it("a write to the other peer's output section faults in the writer", async () => {
      const [p1] = await child(path);
      const rw = info0.rwSize as number;
      const r = await p1.crash({ op: 'write', offset: rw + 100, value: 1 });
      expect(r.replied).to.equal(false);
      expect(['SIGSEGV', 'SIGBUS']).to.include(r.signal);
    });

    it('a write through the public state-table view faults', async () => {
      const [p1] = await child(path);
      const r = await p1.crash({ op: 'writeStateTable', value: 5 });
      expect(r.replied).to.equal(false);
      expect(['SIGSEGV', 'SIGBUS']).to.include(r.signal);
      expect(server.stateEntry(1)).to.equal(0);
    });
  });

  it('an in-process peer releases every fd after close (item 18/22 hygiene)', async () => {
    const path = await startServer({ memorySize: 65536, vectors: 3 });
    const count = (): number => readdirSync('/proc/self/fd').length;
    const before = count();
    const p = await IvshmemPeer.connect(path, { binding });
    expect(count()).to.be.greaterThan(before);
    const serverSawIt = once(server, 'peer-gone');
    p.close();
    await serverSawIt;
    expect(count()).to.equal(before);
    expect(p.window.byteLength).to.equal(0);
  });
});
