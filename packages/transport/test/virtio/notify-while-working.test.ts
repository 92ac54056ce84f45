import { expect } from 'chai';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY } from 'virtio-spec-types';
import type { FrontendQueue } from '../../src/virtio/frontend-queues.js';
import type { DeviceQueueHandle } from '../../src/virtio/device-api.js';
import { MemoryView } from '../../src/ring/memory.js';
import { useEchoRigs } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

// perf (issue 12 item 2): notification suppression while a side is at work (§4.9). The driver
// keeps used-buffer interrupts off while poll() delivers completions, the device keeps kicks off
// while onAvailable works on chains it took; both turn them on again afterwards (fence, re-check),
// so nothing that arrives meanwhile is lost. Over the real FE and BE on the loopback.
describe('notification suppression while at work', () => {
  const echoRig = useEchoRigs();

  async function rig() {
    const { fe, backend, frontend, dev: device } = echoRig();
    backend.start();
    const session = await frontend.start();
    const q = session.queues[0] as FrontendQueue;
    const mem = new MemoryView(fe.window);
    let doorbells = 0;
    const ring = fe.doorbell.bind(fe);
    fe.doorbell = (target: number, vector: number): void => {
      doorbells++;
      ring(target, vector);
    };
    await until(() => device.sessions.length === 1, 'device session');
    const dq = device.sessions[0].queues[0] as DeviceQueueHandle;
    return { q, mem, dq, kicks: () => doorbells };
  }

  it('driver: interrupts are off while poll() delivers, on again after', async () => {
    const { q, mem } = await rig();
    const flags = (): number => mem.load16(q.rings.availFlagsOff) & VIRTQ_AVAIL_F_NO_INTERRUPT;
    const seen: number[] = [];
    q.onUsed = () => seen.push(flags());
    let batchFlags = -1;
    q.onUsedBatch = () => {
      batchFlags = flags();
    };
    expect(q.add(new Uint8Array([1, 2, 3]), 8, 'a')).to.equal(true);
    q.kick();
    await until(() => seen.length === 1, 'completion');
    expect(seen).to.deep.equal([VIRTQ_AVAIL_F_NO_INTERRUPT]);
    expect(batchFlags).to.equal(VIRTQ_AVAIL_F_NO_INTERRUPT);
    expect(flags()).to.equal(0);
  });

  it('driver: a poll under a spin (interrupts already off) leaves them off', async () => {
    const { q, mem } = await rig();
    const flags = (): number => mem.load16(q.rings.availFlagsOff) & VIRTQ_AVAIL_F_NO_INTERRUPT;
    let got = 0;
    q.onUsed = () => got++;
    q.setCallbacks(false);
    expect(q.add(new Uint8Array([1]), 8, 'a')).to.equal(true);
    q.kick();
    await until(() => q.poll() === 1 || got === 1, 'completion collected by polling');
    expect(flags()).to.equal(VIRTQ_AVAIL_F_NO_INTERRUPT);
    expect(q.setCallbacks(true)).to.equal(false);
  });

  it('device: kicks are off once onAvailable took a chain, on again after; chains posted meanwhile are served without a kick', async () => {
    const { q, mem, dq, kicks } = await rig();
    const flags = (): number => mem.load16(q.rings.usedFlagsOff) & VIRTQ_USED_F_NO_NOTIFY;
    const log: string[] = [];
    let addedInside = false;
    const served: number[] = [];
    dq.onAvailable = () => {
      log.push(`start ${flags()}`);
      for (let c = dq.pop(); c !== null; c = dq.pop()) {
        log.push(`took ${flags()}`);
        const b = new Uint8Array(c.readableLength);
        c.read(b);
        served.push(b[0]);
        dq.push(c, 0);
      }
      dq.flush();
      if (!addedInside) {
        // The driver posts while the device is still at work: its kick is suppressed.
        addedInside = true;
        const before = kicks();
        expect(q.add(new Uint8Array([2]), 0, 'b')).to.equal(true);
        q.kick();
        expect(kicks()).to.equal(before);
      }
    };
    expect(q.add(new Uint8Array([1]), 0, 'a')).to.equal(true);
    q.kick();
    await until(() => served.length === 2, 'both requests served');
    expect(served).to.deep.equal([1, 2]);
    expect(log[0]).to.equal('start 0');
    expect(log[1]).to.equal(`took ${VIRTQ_USED_F_NO_NOTIFY}`);
    await until(() => flags() === 0, 'kicks on again');
  });
});
