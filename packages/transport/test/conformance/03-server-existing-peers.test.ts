/**
 * §8 item 3: existing peers get only EVENT_FD(new, 0 … V−1), in order. The "only" (nothing else
 * ever sent, read to EOF) is also asserted by 02-server-newcomer-burst.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { evs, sig, useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 3: existing peers get only EVENT_FD(new, 0 … V−1), in order', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, join } = rig;

    it('item 3: existing peers get exactly EVENT_FD(new, 0 … V−1) in order, each ringing the newcomer', async () => {
      await start({ maxPeers: 3, vectors: 4 });
      const a = await join(0, 4);
      const b = await join(1, 4);
      const forA = await a.c.take(4);
      expect(forA.map(sig)).to.deep.equal(evs(1, 4));
      const c = await join(2, 4);
      const forA2 = await a.c.take(4);
      const forB = await b.c.take(4);
      expect(forA2.map(sig)).to.deep.equal(evs(2, 4));
      expect(forB.map(sig)).to.deep.equal(evs(2, 4));
      // Vector v of the announcement is the newcomer's own vector v (its burst ends with its own).
      for (let v = 0; v < 4; v++) {
        binding.eventfdWrite(forA2[v].fds[0], v + 1);
        expect(binding.eventfdRead(c.burst[1 + 8 + v].fds[0])).to.equal(v + 1);
      }
      // Nothing else arrives: a departing client causes exactly one PEER_GONE, nothing before it.
      c.c.close();
      expect(sig(await a.c.next())).to.equal('GONE 2');
      expect(sig(await b.c.next())).to.equal('GONE 2');
    });
  });
});
