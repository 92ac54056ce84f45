/**
 * §8 item 17: a peer never writes to its socket; server EOF is reported (§1.8).
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { usePeerRig, useConsolePair, useTwoProcRig } from '../fixtures/device-rigs.js';
import { until } from '../fixtures/until.js';

describe('§8 item 17: a peer never writes to its socket; server EOF is reported', function () {
  describe('IvshmemPeer with a fake server (§1.8, §3)', function () {
    const rig = usePeerRig();
    const { connect } = rig;

    it('never writes to the socket (item 17)', async () => {
      const p = await connect();
      p.setState(1);
      p.doorbell(0, 1);
      rig.fake.peerGone(0);
      await once(p, 'peer-gone');
      expect(rig.fake.clientWrote()).to.equal(false);
      p.close();
      expect(rig.fake.clientWrote()).to.equal(false); // EOF only, never data
    });

    it('reports server EOF and treats the other peers as gone, keeping the mapping (item 17)', async () => {
      const p = await connect();
      const order: string[] = [];
      p.on('server-gone', () => order.push('server-gone'));
      p.on('peer-gone', (id: number) => order.push(`peer-gone ${id}`));
      rig.fake.hangUp();
      await until(() => order.length === 2, 'server-gone and peer-gone');
      expect(order).to.deep.equal(['server-gone', 'peer-gone 0']);
      expect(p.isPresent(0)).to.equal(false);
      expect(p.window.byteLength).to.equal(61440);
      p.setState(1); // the own state can still be written
      expect(Atomics.load(rig.table, 1)).to.equal(1);
    });
  });

  describe('IvshmemPeer with the real server, two processes', function () {
    const rig = useTwoProcRig();
    const pair = useConsolePair(rig);

    it("reports 'server-gone' when the server stops (§1.7, item 17)", async () => {
      const beGone = pair.be.nextNew('server-gone');
      const feGone = pair.fe.nextNew('server-gone');
      const bePeerGone = pair.be.nextNew('peer-gone', { id: 1 });
      await rig.server.stop();
      await Promise.all([beGone, feGone, bePeerGone]);
      expect(pair.fe.messages.some((m) => m.type === 'peer-gone' && m.id === 0)).to.equal(true);
    });
  });
});
