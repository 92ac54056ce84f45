/**
 * §8 item 30: the FE picks per-queue, shared or single mode from `vectors` (§4.9), and data
 * moves on every queue in each mode. Console shape: 2 queues, D = 3.
 */
import { expect } from 'chai';
import type { FrontendQueue } from '../../src/virtio/frontend-queues.js';
import { echoDevice } from '../fixtures/transport-devices.js';
import { useEchoRigs } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

const CASES = [
  { vectors: 3, mode: 'per-queue', driverVectors: [1, 2], deviceVectors: [1, 2] },
  { vectors: 2, mode: 'shared', driverVectors: [1, 1], deviceVectors: [0, 0] },
  { vectors: 1, mode: 'single', driverVectors: [0, 0], deviceVectors: [0, 0] },
  { vectors: 5, mode: 'per-queue', driverVectors: [1, 2], deviceVectors: [1, 2] },
] as const;

describe('§8 item 30: FE vector modes (§4.9)', () => {
  const rig = useEchoRigs();

  for (const c of CASES) {
    it(`vectors ${c.vectors}: ${c.mode} mode, driver vectors ${c.driverVectors.join('/')}, data on both queues`, async () => {
      const { be, backend, frontend, drv } = rig({ loopback: { vectors: c.vectors }, dev: echoDevice({ echoAll: true }) });
      backend.start();
      const vectorsRung: number[] = [];
      const orig = be.doorbell.bind(be);
      be.doorbell = (target: number, vector: number) => {
        vectorsRung.push(vector);
        orig(target, vector);
      };
      const session = await frontend.start();
      expect(frontend.vectorMode).to.equal(c.mode);
      const qs = session.queues as FrontendQueue[];
      expect(qs.map((q) => q.driverVector)).to.deep.equal(c.driverVectors);
      expect(qs.map((q) => q.deviceVector)).to.deep.equal(c.deviceVectors);
      for (let round = 0; round < 3; round++) {
        for (const [i, q] of qs.entries()) {
          q.add(Buffer.from(`q${i}r${round}`), 16, `q${i}r${round}`);
          q.kick();
        }
        await until(() => drv.used.length === 2 * (round + 1), `round ${round}`);
      }
      expect(drv.used.map((u) => `${u.queue}:${u.data.toString()}`).sort()).to.deep.equal(
        ['0:q0r0', '0:q0r1', '0:q0r2', '1:q1r0', '1:q1r1', '1:q1r2'],
      );
      // The BE signalled used buffers only on the vectors this mode assigned.
      const usedVectors = new Set(vectorsRung.filter((v) => v !== 0 || c.mode === 'single'));
      for (const v of usedVectors) expect(c.driverVectors).to.include(v);
    });
  }

  it('config events reach the driver in single mode (vector 0: config part, then queue part)', async () => {
    const { backend, frontend, dev, drv } = rig({ loopback: { vectors: 1 } });
    backend.start();
    const session = await frontend.start();
    const before = drv.configEvents;
    session.queues[0].add(Buffer.from('z'), 4, 'z');
    session.queues[0].kick();
    dev.sessions[0].notifyConfig();
    await until(() => drv.configEvents > before && drv.used.length === 1, 'config event and completion');
  });
});
