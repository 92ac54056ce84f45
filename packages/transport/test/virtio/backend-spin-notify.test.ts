import { expect } from 'chai';
import { VIRTQ_USED_F_NO_NOTIFY } from 'virtio-spec-types';
import { AdaptiveSpin } from '../../src/virtio/spin.js';
import { liveRig, type QueueRig } from '../fixtures/backend-rig.js';
import { until } from '../fixtures/until.js';

// perf: VirtioBackend.setNotify — kick suppression while a bounded spin polls (spin.ts, §4.9).
const rigs: QueueRig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.close();
});

describe('VirtioBackend.setNotify (kick suppression during a spin)', () => {
  it('sets used.flags NO_NOTIFY while off and clears it when on again', async () => {
    const { r, a0 } = await liveRig();
    rigs.push(r);
    const flags = (): number => r.mem.load16(a0.used);
    expect(flags() & VIRTQ_USED_F_NO_NOTIFY).to.equal(0);
    expect(r.backend.setNotify(false)).to.equal(false);
    expect(flags() & VIRTQ_USED_F_NO_NOTIFY).to.equal(VIRTQ_USED_F_NO_NOTIFY);
    expect(r.backend.setNotify(true)).to.equal(false); // nothing arrived meanwhile
    expect(flags() & VIRTQ_USED_F_NO_NOTIFY).to.equal(0);
  });

  it('re-enabling reports a chain published without a kick, and poll() serves it', async () => {
    const { r, q0 } = await liveRig();
    rigs.push(r);
    r.backend.setNotify(false);
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    q0.publish(); // a driver honouring NO_NOTIFY does not kick
    expect(r.backend.setNotify(true)).to.equal(true);
    expect(r.backend.poll()).to.be.greaterThan(0);
    await until(() => q0.usedIdx() === 1, 'used entry');
  });

  it('an AdaptiveSpin over the backend leaves kicks enabled when it ends', async () => {
    const { r, q0, a0 } = await liveRig();
    rigs.push(r);
    let t = 0;
    const spin = new AdaptiveSpin(r.backend, { spinUs: 20, now: () => (t += 0.001) });
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    q0.publish();
    expect(spin.spin()).to.be.greaterThan(0);
    expect(r.mem.load16(a0.used) & VIRTQ_USED_F_NO_NOTIFY).to.equal(0);
    await until(() => q0.usedIdx() === 1, 'used entry');
  });

  it('without a live session it does nothing', async () => {
    const { r } = await liveRig();
    rigs.push(r);
    await r.backend.close();
    expect(r.backend.setNotify(false)).to.equal(false);
    expect(r.backend.setNotify(true)).to.equal(false);
  });
});
