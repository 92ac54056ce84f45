/**
 * §8 item 21: one-shot mode clears the enable bit per delivered interrupt; disabled events are not
 * delivered (§3).
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { drain, eventfdCount, record, useLoopbackPair, usePeerRig } from '../fixtures/device-rigs.js';
import { until } from '../fixtures/until.js';

const b = binding;

describe('§8 item 21: one-shot clears the enable bit per interrupt; disabled events are not delivered', function () {
  describe('IvshmemPeer with a fake server (§1.8, §3)', function () {
    const rig = usePeerRig();
    const { connect } = rig;

    it('discards events while disabled and clears the enable bit in one-shot mode (item 21)', async () => {
      const p = await connect();
      const got: number[] = [];
      p.onInterrupt = (v) => got.push(v);
      b.eventfdWrite(rig.efd[1][1], 1);
      await until(() => eventfdCount(rig.efd[1][1]) === 0, 'event consumed');
      p.interruptsEnabled = true;
      p.oneShot = true;
      b.eventfdWrite(rig.efd[1][2], 1);
      await until(() => got.length === 1, 'interrupt');
      expect(got).to.deep.equal([2]); // the discarded vector 1 was not latched
      expect(p.interruptsEnabled).to.equal(false);
      b.eventfdWrite(rig.efd[1][1], 1);
      await until(() => eventfdCount(rig.efd[1][1]) === 0, 'event consumed');
      p.interruptsEnabled = true;
      b.eventfdWrite(rig.efd[1][2], 1);
      await until(() => got.length === 2, 'second interrupt');
      expect(got).to.deep.equal([2, 2]);
    });
  });

  describe('loopback pair (§3 device model)', function () {
    const rig = useLoopbackPair();

    it('discards events while interrupts are disabled (not latched) (§8 item 21)', async () => {
      const [be, fe] = rig.pair;
      const got: number[] = [];
      be.onInterrupt = (v) => got.push(v);
      fe.doorbell(0, 1);
      await drain();
      be.interruptsEnabled = true;
      await drain();
      expect(got).to.deep.equal([]);
      fe.doorbell(0, 1);
      await drain();
      expect(got).to.deep.equal([1]);
    });

    it('one-shot mode clears the enable bit per delivered interrupt (§8 item 21)', async () => {
      const [be, fe] = rig.pair;
      const got = record(be);
      be.oneShot = true;
      fe.doorbell(0, 1);
      fe.doorbell(0, 2);
      await drain();
      expect(got).to.have.length(1);
      expect(be.interruptsEnabled).to.equal(false);
      fe.doorbell(0, 1);
      await drain();
      expect(got).to.have.length(1);
      be.interruptsEnabled = true;
      fe.doorbell(0, 2);
      await drain();
      expect(got).to.have.length(2);
      expect(got[1]).to.equal(2);
      expect(be.interruptsEnabled).to.equal(false);
    });
  });
});
