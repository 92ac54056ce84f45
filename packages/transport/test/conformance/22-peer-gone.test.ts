/**
 * §8 item 22: PEER_GONE closes that peer's eventfds and fires the own vector 0 (§3).
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { drain, eventfdCount, record, useConsolePair, useLoopbackPair, usePeerRig, useTwoProcRig } from '../fixtures/device-rigs.js';
import { until } from '../fixtures/until.js';

describe('§8 item 22: PEER_GONE closes the peer eventfds and fires the own vector 0', function () {
  describe('IvshmemPeer with a fake server (§1.8, §3)', function () {
    const rig = usePeerRig();
    const { connect } = rig;

    it('PEER_GONE closes the peer eventfds, emits peer-gone and fires the own vector 0 (item 22)', async () => {
      const p = await connect();
      const got = record(p);
      Atomics.store(rig.table, 0, 1);
      const before = rig.clientFds();
      const gone = once(p, 'peer-gone');
      rig.fake.peerGone(0);
      expect(await gone).to.deep.equal([0]);
      await until(() => got.length === 1, 'vector 0');
      expect(got).to.deep.equal([0]);
      expect(rig.clientFds()).to.equal(before - 3);
      expect(p.isPresent(0)).to.equal(false);
      expect(p.peerState(0)).to.equal(0); // absent peers read 0
      p.doorbell(0, 1);
      expect(eventfdCount(rig.efd[0][1])).to.equal(0);
    });
  });

  describe('IvshmemPeer with the real server, two processes', function () {
    const rig = useTwoProcRig();
    const pair = useConsolePair(rig);

    it('a killed peer gets its entry zeroed and the other sees peer-gone and vector 0 (§1.6, item 22)', async () => {
      const st = pair.be.nextNew('peer-state', { id: 1, state: 1 });
      await pair.fe.request({ op: 'setState', value: 1 });
      await st;
      const gone = pair.be.nextNew('peer-gone');
      const zero = pair.be.nextNew('peer-state', { id: 1, state: 0 });
      const irq = pair.be.nextNew('interrupt');
      pair.fe.kill();
      expect((await gone).id).to.equal(1);
      expect((await irq).vector).to.equal(0);
      await zero;
      expect(rig.server.stateEntry(1)).to.equal(0);
      expect(await pair.be.request({ op: 'peerState', id: 1 })).to.equal(0);
    });
  });

  describe('loopback pair (§3 device model)', function () {
    const rig = useLoopbackPair();

    it('close() emits close, zeroes the entry and delivers peer-gone + vector 0 to the partner (§8 item 22)', async () => {
      const [be, fe] = rig.pair;
      be.setState(1);
      await drain();
      const got = record(fe);
      const gone = once(fe, 'peer-gone');
      const closed = once(be, 'close');
      be.interruptsEnabled = true;
      be.close();
      expect(be.interruptsEnabled).to.equal(false);
      expect(be.state).to.equal(0);
      expect(fe.peerState(0)).to.equal(0);
      await closed;
      expect(await gone).to.deep.equal([0]);
      await drain();
      expect(got).to.deep.equal([0]);
      expect(fe.isPresent(0)).to.equal(false);
      expect(fe.isPresent(1)).to.equal(true);
      expect(be.isPresent(0)).to.equal(false);
      fe.doorbell(0, 1); // doorbell to a gone peer: no-op, no throw
      be.close(); // idempotent
    });
  });
});
