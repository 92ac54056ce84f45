/**
 * DeviceQueueHandle.push takes only chains popped from that handle's queue. A device that mixes
 * up its queues (or keeps a chain across sessions) and pushes a chain of another queue must not
 * complete whatever chain happens to share its head number there: that request was never
 * processed, and its completion would tell the driver it was (a transmit never sent).
 */
import { expect } from 'chai';
import { echoOps } from '../fixtures/backend-devices.js';
import { kick, liveRig, type QueueRig } from '../fixtures/backend-rig.js';
import { ArgumentError } from '../../src/errors.js';
import type { DeviceChain } from '../../src/virtio/device-api.js';
import { until } from '../fixtures/until.js';

describe('DeviceQueueHandle.push of a chain from another queue', () => {
  let rig: QueueRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  it('is refused as a device fault (needs-reset) and completes nothing on the queue it was pushed to', async () => {
    const ops = echoOps();
    const inner = ops.activate.bind(ops);
    let held: DeviceChain | null = null;
    let pushed = false;
    ops.activate = (s) => {
      inner(s);
      const [h0, h1] = [s.queues[0]!, s.queues[1]!];
      h0.onAvailable = () => {
        held ??= h0.pop(); // queue 0's chain stays with the device, unprocessed
      };
      h1.onAvailable = () => {
        const c = h1.pop();
        if (c === null) return;
        h0.push(c, 0); // the mix-up: queue 1's chain (head 0) into queue 0 (head 0 in flight)
        h0.flush();
        pushed = true;
      };
    };
    const { r, q0, q1 } = await liveRig({}, ops);
    rig = r;
    q0.addChain([{ addr: 0x3000, len: 16, write: true }]);
    kick(r, q0, 1);
    await until(() => held !== null, 'queue 0 chain popped');
    expect(held!.head).to.equal(0);
    q1.addChain([{ addr: 0x3100, len: 16, write: true }]);
    kick(r, q1, 2);
    await until(() => pushed, 'the mixed-up push');
    expect(q0.usedIdx(), "queue 0's request completed although never processed").to.equal(0);
    // A device bug, handled like a push of a head not in flight: the device needs a reset.
    await until(() => r.needs.length === 1, 'needs-reset');
    expect(r.needs[0]).to.be.instanceOf(ArgumentError);
    expect(q0.usedIdx()).to.equal(0);
  });
});
