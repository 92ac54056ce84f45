/**
 * IvshmemServer in-process against raw clients, beyond the §8 checklist (whose items 1–12 are in
 * conformance/01–12): -m DIR, constructor checks, failed starts, a stalled peer's queue, fd
 * hygiene. Every wait is on an event or a message, bounded by a generous timeout; nothing sleeps.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import binding from '@vshm/addon';
import { ArgumentError } from '../../src/errors.js';
import { IvshmemServer } from '../../src/server/server.js';
import { countFds } from '../fixtures/raw-client.js';
import { evs, sig, useServerRig } from '../fixtures/server-rig.js';

describe('IvshmemServer (§1.3–1.7; §8 items 1–12 are in conformance/01–12)', function () {
  const rig = useServerRig();
  const { start, connect, join } = rig;

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
    rig.shmNames.push(name);
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
      rig.closeClients();
      void extra;
    };
    await cycle(); // warm up lazily created handles
    const before = countFds();
    for (let i = 0; i < 3; i++) await cycle();
    expect(countFds()).to.equal(before);
    expect(s.peerIds).to.deep.equal([]);
  });
});
