/**
 * §8 item 7: a client that closes or writes data gets its state entry zeroed, and all others get
 * PEER_GONE (§1.6).
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 7: a departing client has its entry zeroed and the others get PEER_GONE', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, join } = rig;

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
  });
});
