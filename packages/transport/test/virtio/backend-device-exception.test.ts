/**
 * A device callback that throws is reported with its stack: 'device-exception' (err, callback)
 * before the 'needs-reset' it causes, so a CLI can print the stack by default (issue 10 item 5).
 */
import { expect } from 'chai';
import { echoOps } from '../fixtures/backend-devices.js';
import { kick, liveRig, queueRig, negotiate, LIVE, type QueueRig } from '../fixtures/backend-rig.js';
import { HDR_DEVICE_STATUS } from '../../src/virtio/header.js';
import { until } from '../fixtures/until.js';
import { createLoopbackPair } from '../../src/testing/loopback.js';
import { VirtioBackend } from '../../src/virtio/backend.js';

describe("VirtioBackend 'device-exception'", () => {
  let rig: QueueRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  it('a throwing onAvailable: the error with its stack and the callback name, then needs-reset', async () => {
    const ops = echoOps();
    const inner = ops.activate.bind(ops);
    ops.activate = (s) => {
      inner(s);
      const q = s.queues[0]!;
      q.onAvailable = function deviceOnAvailable() {
        if (q.pop() !== null) throw new Error('device bug');
      };
    };
    const { r, q0 } = await liveRig({}, ops);
    rig = r;
    const seen: [Error, string, number][] = [];
    r.backend.on('device-exception', (err: Error, cb: string) => seen.push([err, cb, r.needs.length]));
    q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
    kick(r, q0, 1);
    await until(() => r.needs.length === 1, 'needs-reset');
    expect(seen).to.have.length(1);
    const [err, cb, needsBefore] = seen[0];
    expect(err.message).to.equal('device bug');
    expect(err.stack).to.include('deviceOnAvailable');
    expect(cb).to.equal('onAvailable');
    expect(needsBefore, 'reported before needs-reset').to.equal(0);
  });

  it('a throwing initConfig is reported as initConfig; the header is still published (zero config)', async () => {
    const ops = echoOps();
    ops.initConfig = function deviceInitConfig() {
      throw new RangeError('initConfig bug');
    };
    const [be, fe] = createLoopbackPair({ protocol: 0x8000 | ops.deviceId });
    const backend = new VirtioBackend(be, ops);
    const seen: [Error, string][] = [];
    backend.on('device-exception', (err: Error, cb: string) => seen.push([err, cb]));
    try {
      backend.start(); // the front-end's entry reads RESET: the header is initialised at once
      expect(backend.phase).to.equal('wait-fe-ready');
      expect(seen.map(([e, cb]) => `${cb}: ${e.message}`)).to.deep.equal(['initConfig: initConfig bug']);
      expect(seen[0][0].stack).to.include('deviceInitConfig');
    } finally {
      await backend.close();
      fe.close();
      be.close();
    }
  });

  it('a throwing activate is reported as activate', async () => {
    const ops = echoOps();
    ops.activate = () => {
      throw new TypeError('activate bug');
    };
    const r = await queueRig({}, ops);
    rig = r;
    const seen: string[] = [];
    r.backend.on('device-exception', (err: Error, cb: string) => seen.push(`${cb}: ${err.message}`));
    await negotiate(r.fe, 1);
    await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
    await until(() => r.needs.length === 1, 'needs-reset');
    expect(seen).to.deep.equal(['activate: activate bug']);
  });
});
