/**
 * §8 item 5: a client beyond `max_peers` is closed without a message; serving continues.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { evs, sig, useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 5: a client beyond max_peers is closed without a message', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, connect, join } = rig;

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
  });
});
