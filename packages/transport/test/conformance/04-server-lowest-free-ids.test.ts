/**
 * §8 item 4: IDs are lowest-free and reused.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { sig, useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 4: IDs are lowest-free and reused', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, join } = rig;

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
  });
});
