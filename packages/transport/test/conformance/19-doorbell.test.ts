/**
 * §8 item 19: a doorbell increments the target eventfd; absent targets and vectors out of range are
 * ignored (§3).
 */
import { expect } from 'chai';
import { drain, eventfdCount, record, useConsolePair, useLoopbackPair, usePeerRig, useTwoProcRig } from '../fixtures/device-rigs.js';

describe('§8 item 19: doorbells increment the target eventfd; absent targets and bad vectors are ignored', function () {
  describe('IvshmemPeer with a fake server (§1.8, §3)', function () {
    const rig = usePeerRig();
    const { connect } = rig;

    it('doorbell writes 1 to exactly the target eventfd; absent targets and bad vectors are ignored (item 19)', async () => {
      const p = await connect();
      p.doorbell(0, 1);
      p.doorbell(0, 3);
      p.doorbell(0, -1);
      p.doorbell(2, 0);
      p.doorbell(7, 1);
      p.doorbell(0, 0.5);
      expect(rig.efd[0].map(eventfdCount)).to.deep.equal([0, 1, 0]);
      p.doorbell(0, 1);
      expect(eventfdCount(rig.efd[0][1])).to.equal(2);
    });
  });

  describe('IvshmemPeer with the real server, two processes', function () {
    const rig = useTwoProcRig();
    const pair = useConsolePair(rig);

    it('a doorbell wakes only the targeted vector of the other process (item 19)', async () => {
      const got = pair.be.nextNew('interrupt');
      await pair.fe.request({ op: 'doorbell', target: 0, vector: 2 });
      expect((await got).vector).to.equal(2);
      expect(pair.be.interrupts()).to.deep.equal([2]);
      const back = pair.fe.nextNew('interrupt');
      await pair.be.request({ op: 'doorbell', target: 1, vector: 1 });
      expect((await back).vector).to.equal(1);
      expect(pair.fe.interrupts()).to.deep.equal([1]);
      expect(pair.be.interrupts()).to.deep.equal([2]);
    });
  });

  describe('loopback pair (§3 device model)', function () {
    const rig = useLoopbackPair();

    it('a doorbell wakes only the targeted vector, asynchronously (§8 item 19)', async () => {
      const [be, fe] = rig.pair;
      const got = record(be);
      const feGot = record(fe);
      fe.doorbell(0, 2);
      expect(got).to.deep.equal([]); // never synchronous
      await drain();
      expect(got).to.deep.equal([2]);
      expect(feGot).to.deep.equal([]);
      be.doorbell(1, 1);
      await drain();
      expect(feGot).to.deep.equal([1]);
      expect(got).to.deep.equal([2]);
    });

    it('ignores vectors out of range and absent targets', async () => {
      const [be, fe] = rig.pair;
      const got = record(be);
      fe.doorbell(0, 3);
      fe.doorbell(0, -1);
      fe.doorbell(5, 0);
      fe.doorbell(0, 1.5);
      await drain();
      expect(got).to.deep.equal([]);
    });
  });
});
