/**
 * §8 item 25: the BE fills `device_features` before completing a select, and clears
 * `write_transaction` only after its side effects: every device callback a transaction causes
 * runs while the transaction is still pending, and its results are visible at completion.
 */
import { expect } from 'chai';
import { HDR_CONFIG, HDR_DEVICE_FEATURES, HDR_DEVICE_FEATURES_SEL, HDR_DEVICE_STATUS, HDR_QUEUE_SEL, HDR_QUEUE_SIZE } from '../../src/virtio/header.js';
import { LIVE, negotiate, queueRig, type QueueRig } from '../fixtures/backend-rig.js';
import { consoleLikeOps } from '../fixtures/backend-devices.js';

describe('conformance 25 (transport): completion after side effects', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it('results are in place in the same poll that clears write_transaction', async () => {
    r = await queueRig({}, consoleLikeOps());
    const fe = r.fe;
    r.feDev.interruptsEnabled = true;
    r.be.interruptsEnabled = false; // drive the BE by hand: no interrupt races the checks
    fe.begin(HDR_DEVICE_FEATURES_SEL, 4, 1);
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(1); // not yet
    expect(r.backend.poll()).to.equal(1);
    expect(fe.pending()).to.equal(false);
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(0x13);
    fe.begin(HDR_QUEUE_SEL, 4, 5);
    r.backend.poll();
    expect([fe.pending(), fe.r16(HDR_QUEUE_SIZE)]).to.deep.equal([false, 0]);
  });

  it('device callbacks run while their transaction is still pending', async () => {
    const ops = consoleLikeOps();
    const pendingAt: Record<string, boolean> = {};
    r = await queueRig({}, ops);
    const fe = r.fe;
    ops.acceptFeatures = () => ((pendingAt.acceptFeatures = fe.pending()), true);
    ops.activate = () => void (pendingAt.activate = fe.pending());
    ops.configWritten = () => void (pendingAt.configWritten = fe.pending());
    ops.deactivate = () => void (pendingAt.deactivate = fe.pending());
    await negotiate(fe, 1);
    await fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
    await fe.txn(HDR_CONFIG + 8, 4, 0x41);
    await fe.txn(HDR_DEVICE_STATUS, 4, 0);
    expect(pendingAt).to.deep.equal({ acceptFeatures: true, activate: true, configWritten: true, deactivate: true });
  });
});
