/**
 * §8 item 31: during a config update `config_generation` is odd; afterwards `config_event` and
 * vector 0 fire.
 */
import { expect } from 'chai';
import { HDR_CONFIG, HDR_CONFIG_EVENT, HDR_CONFIG_GENERATION, HDR_DEVICE_STATUS } from '../../src/virtio/header.js';
import { LIVE, negotiate, queueRig, type QueueRig } from '../fixtures/backend-rig.js';
import { consoleLikeOps } from '../fixtures/backend-devices.js';
import { until } from '../fixtures/until.js';

describe('conformance 31 (transport): config generation rule', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it('odd while updating, even after, then config_event and a vector-0 doorbell', async () => {
    const ops = consoleLikeOps();
    r = await queueRig({}, ops);
    await negotiate(r.fe, 1);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
    const fe = r.fe;
    const session = ops.sessions[0];
    const seen: number[] = [];
    fe.irqs.length = 0;
    session.updateConfig((c) => {
      seen.push(fe.r32(HDR_CONFIG_GENERATION));
      c.write(0, 2, 132);
      seen.push(fe.r32(HDR_CONFIG_GENERATION));
      c.write(2, 2, 43);
      expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(0); // not before the update is complete
    });
    expect(seen.every((g) => g % 2 === 1)).to.equal(true);
    expect(fe.r32(HDR_CONFIG_GENERATION)).to.equal(seen[0] + 1);
    expect([fe.r16(HDR_CONFIG), fe.r16(HDR_CONFIG + 2)]).to.deep.equal([132, 43]);
    expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(1);
    await until(() => fe.irqs.includes(0), 'vector 0');
    // notifyConfig: event without a generation change.
    fe.store(HDR_CONFIG_EVENT, 1, 0);
    fe.irqs.length = 0;
    session.notifyConfig();
    expect(fe.r32(HDR_CONFIG_GENERATION) % 2).to.equal(0);
    expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(1);
    await until(() => fe.irqs.includes(0), 'vector 0 again');
  });
});
