/**
 * §8 item 33: the BE serves only while the FE entry is READY and re-initialises after the FE
 * leaves (State RESET → header re-initialised → READY).
 */
import { expect } from 'chai';
import { HDR_DEVICE_FEATURES, HDR_DEVICE_FEATURES_SEL, HDR_DEVICE_STATUS, HDR_REVISION } from '../../src/virtio/header.js';
import type { BackendPhase } from '../../src/virtio/backend.js';
import { kick, liveRig, type QueueRig } from '../fixtures/backend-rig.js';
import { until, turn } from '../fixtures/until.js';

describe('conformance 33 (transport): serve only while the FE is READY', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it('stops serving when the FE leaves READY, re-initialises, and serves the next FE', async () => {
    const live = await liveRig();
    r = live.r;
    const phases: BackendPhase[] = [];
    const beStates: number[] = [];
    r.backend.on('phase', (p: BackendPhase) => {
      phases.push(p);
      beStates.push(r!.feDev.peerState(0));
    });
    r.fe.store(HDR_REVISION, 4, 0x99); // junk in the header: must be rewritten
    r.feDev.setState(0);
    await until(() => phases.includes('wait-fe-ready'), 're-initialisation');
    expect(phases).to.deep.equal(['wait-fe-reset', 'wait-fe-ready']);
    expect(beStates).to.deep.equal([0, 1]); // State RESET, then READY after the header init
    expect(r.ends).to.deep.equal(['driver-gone']);
    expect(r.fe.r32(HDR_REVISION)).to.equal(1);
    expect(r.fe.r32(HDR_DEVICE_STATUS)).to.equal(0);

    // Not READY: kicks on the old ring are ignored, and a transaction is completed without its
    // action (a Linux FE's driver unbind stores State := 0 first, then spins on its reset and
    // queue-teardown transactions; see docs/decisions.md).
    live.q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    kick(r, live.q0, 1);
    r.fe.begin(HDR_DEVICE_FEATURES_SEL, 4, 1);
    for (let i = 0; i < 5; i++) await turn();
    await until(() => !r!.fe.pending(), 'completion without action');
    expect(r.backend.poll()).to.equal(0);
    expect(live.q0.usedIdx()).to.equal(0);
    expect(r.fe.r32(HDR_DEVICE_FEATURES_SEL)).to.equal(0); // the select was not acted on
    expect(r.backend.phase).to.equal('wait-fe-ready');

    // A front-end that comes back READY is served.
    r.feDev.setState(1);
    await r.fe.txn(HDR_DEVICE_FEATURES_SEL, 4, 1);
    expect(r.backend.phase).to.equal('serving');
    expect(r.fe.r32(HDR_DEVICE_FEATURES) & 1).to.equal(1); // bits 32–63 shown: VERSION_1
    expect(live.q0.usedIdx()).to.equal(0); // the old ring stays untouched
  });

  it('treats a departed FE (PEER_GONE, entry 0) like one that left READY', async () => {
    const live = await liveRig();
    r = live.r;
    r.feDev.close();
    await until(() => r!.ends.length === 1, 'session end');
    expect(r.ends).to.deep.equal(['driver-gone']);
    await until(() => r!.backend.phase === 'wait-fe-ready', 'waiting for the next FE');
  });
});
