/**
 * §8 item 18: mappings stay within the fd; writes to the state table or a foreign output section
 * fault (§2). The faults are proven in child processes (a fault kills the writer).
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import binding from '@vshm/addon';
import { IvshmemPeer } from '../../src/ivshmem/peer.js';
import { usePeerRig, useTwoProcRig } from '../fixtures/device-rigs.js';

const b = binding;

describe('§8 item 18: mappings stay within the fd; state-table and foreign-section writes fault', function () {
  describe('IvshmemPeer with a fake server (§1.8, §3)', function () {
    const rig = usePeerRig();

    it('item 18: every mapping of the memory object lies within its fstat size', async () => {
      const { size, ino } = b.fstat(rig.mem);
      const ours = (): string[][] =>
        readFileSync('/proc/self/maps', 'utf8')
          .split('\n')
          .map((l) => l.split(/\s+/))
          .filter((f) => f.length >= 5 && f[4] === String(ino));
      const before = ours().length; // the rig's own view of the state table
      rig.sendBurst({ outputSectionSize: 8192 });
      rig.peer = await IvshmemPeer.fromSocket(rig.fake.cli, { binding: b });
      expect(rig.peer.layout.size).to.equal(size);
      expect(rig.peer.window.byteLength).to.equal(size - 4096);
      const maps = ours();
      expect(maps.length, 'the peer mapped the memory object').to.be.greaterThan(before);
      for (const [range, , offset] of maps) {
        const [start, end] = range.split('-').map((h) => parseInt(h, 16));
        expect(parseInt(offset, 16) + (end - start), `${range} at offset ${offset}`).to.be.at.most(size);
      }
    });
  });

  describe('IvshmemPeer with the real server, two processes', function () {
    const rig = useTwoProcRig();
    const { startServer, child } = rig;

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
        expect(rig.server.stateEntry(1)).to.equal(0);
      });
    });

    it('an in-process peer releases every fd after close (item 18/22 hygiene)', async () => {
      const path = await startServer({ memorySize: 65536, vectors: 3 });
      const count = (): number => readdirSync('/proc/self/fd').length;
      const before = count();
      const p = await IvshmemPeer.connect(path, { binding });
      expect(count()).to.be.greaterThan(before);
      const serverSawIt = once(rig.server, 'peer-gone');
      p.close();
      await serverSawIt;
      expect(count()).to.equal(before);
      expect(p.window.byteLength).to.equal(0);
    });
  });
});
