/**
 * §8 item 2: a newcomer gets INIT, foreign fds per peer in connection order with ascending vectors,
 * then its own. The same in-process test also proves item 3 (existing peers get only
 * EVENT_FD(new)) and the in-process side of item 8 (shutdown order).
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import binding from '@vshm/addon';
import { evs, sig, useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 2: newcomer burst — INIT, foreign fds in connection order, then its own', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, join } = rig;

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
  });
});
