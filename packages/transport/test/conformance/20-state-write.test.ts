/**
 * §8 item 20: a State write updates the entry and signals other peers' vector 0 only on change (§3).
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { drain, eventfdCount, record, useConsolePair, useLoopbackPair, usePeerRig, useTwoProcRig } from '../fixtures/device-rigs.js';

const b = binding;

describe('§8 item 20: a State write updates the entry and signals vector 0 of others only on change', function () {
  describe('IvshmemPeer with a fake server (§1.8, §3)', function () {
    const rig = usePeerRig();
    const { connect } = rig;

    it('setState stores the entry and signals vector 0 of other present peers only on change (item 20)', async () => {
      const p = await connect();
      p.setState(1);
      expect(Atomics.load(rig.table, 1)).to.equal(1);
      expect(p.state).to.equal(1);
      expect(b.eventfdRead(rig.efd[0][0])).to.equal(1);
      p.setState(1);
      expect(eventfdCount(rig.efd[0][0])).to.equal(0);
      p.setState(7);
      expect(Atomics.load(rig.table, 1)).to.equal(7);
      expect(eventfdCount(rig.efd[0][0])).to.equal(1);
      expect(rig.efd[0].slice(1).map(eventfdCount)).to.deep.equal([0, 0]);
    });
  });

  describe('IvshmemPeer with the real server, two processes', function () {
    const rig = useTwoProcRig();
    const pair = useConsolePair(rig);

    it('setState interrupts vector 0 of the other peer, which sees the state (item 20)', async () => {
      const irq = pair.fe.nextNew('interrupt');
      const st = pair.fe.nextNew('peer-state');
      await pair.be.request({ op: 'setState', value: 1 });
      expect((await irq).vector).to.equal(0);
      expect(await st).to.include({ id: 0, state: 1 });
      expect(await pair.fe.request({ op: 'peerState', id: 0 })).to.equal(1);
      expect(rig.server.stateEntry(0)).to.equal(1);
    });
  });

  describe('loopback pair (§3 device model)', function () {
    const rig = useLoopbackPair();

    it('setState updates the entry and signals vector 0 of the partner only on change (§8 item 20)', async () => {
      const [be, fe] = rig.pair;
      const got = record(fe);
      const seen: Array<[number, number]> = [];
      fe.on('peer-state', (id: number, s: number) => seen.push([id, s]));
      be.setState(1);
      expect(be.state).to.equal(1);
      expect(fe.peerState(0)).to.equal(1);
      await drain();
      expect(got).to.deep.equal([0]);
      expect(seen).to.deep.equal([[0, 1]]);
      be.setState(1); // no change: no signal
      await drain();
      expect(got).to.deep.equal([0]);
      be.setState(0);
      await drain();
      expect(got).to.deep.equal([0, 0]);
      expect(seen).to.deep.equal([[0, 1], [0, 0]]);
    });
  });
});
