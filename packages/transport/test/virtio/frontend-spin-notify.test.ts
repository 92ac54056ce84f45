import { expect } from 'chai';
import { VIRTQ_AVAIL_F_NO_INTERRUPT } from 'virtio-spec-types';
import type { VirtioFrontend } from '../../src/virtio/frontend.js';
import type { FrontendQueue } from '../../src/virtio/frontend-queues.js';
import { MemoryView } from '../../src/ring/memory.js';
import { frontendPollable } from '../../src/virtio/spin.js';
import { useEchoRigs } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

// perf: FrontendQueue.setCallbacks / frontendPollable — interrupt suppression while the
// front-end spins (spin.ts, §4.9), over the real FE and BE on the loopback.
describe('FrontendQueue.setCallbacks (interrupt suppression during a spin)', () => {
  const echoRig = useEchoRigs();

  async function rig(): Promise<{ frontend: VirtioFrontend; q: FrontendQueue; mem: MemoryView; used: Uint8Array[] }> {
    const { fe, backend, frontend } = echoRig();
    backend.start();
    const session = await frontend.start();
    const q = session.queues[0] as FrontendQueue;
    const used: Uint8Array[] = [];
    q.onUsed = (_t, d) => used.push(Uint8Array.from(d));
    return { frontend, q, mem: new MemoryView(fe.window), used };
  }

  it('sets avail.flags NO_INTERRUPT while off and clears it when on again', async () => {
    const { q, mem } = await rig();
    const flags = (): number => mem.load16(q.rings.availFlagsOff);
    expect(flags() & VIRTQ_AVAIL_F_NO_INTERRUPT).to.equal(0);
    expect(q.setCallbacks(false)).to.equal(false);
    expect(flags() & VIRTQ_AVAIL_F_NO_INTERRUPT).to.equal(VIRTQ_AVAIL_F_NO_INTERRUPT);
    expect(q.setCallbacks(true)).to.equal(false);
    expect(flags() & VIRTQ_AVAIL_F_NO_INTERRUPT).to.equal(0);
  });

  it('a completion that arrived while off is reported on re-enable and collected by poll()', async () => {
    const { frontend, q, used } = await rig();
    const p = frontendPollable(frontend);
    p.setNotify!(false);
    expect(q.add(new Uint8Array([1, 2, 3]), 8, 'a')).to.equal(true);
    q.kick();
    // The BE answers on the loopback's next turn; with interrupts off nobody collects it.
    await until(() => hasUsed(q), 'used entry published');
    expect(used).to.have.length(0);
    expect(p.setNotify!(true)).to.equal(true);
    expect(p.poll()).to.equal(1);
    expect(Array.from(used[0])).to.deep.equal([1, 2, 3]);
  });

  it('frontendPollable does nothing without a session', () => {
    const p = frontendPollable({ poll: () => 0, session: null });
    expect(p.setNotify!(false)).to.equal(false);
    expect(p.setNotify!(true)).to.equal(false);
  });
});

/** Whether used.idx moved past what the queue delivered (reads the ring like a peer would). */
function hasUsed(q: FrontendQueue): boolean {
  return q.inFlight > 0 && (q as unknown as { engine: { hasUsed(): boolean } }).engine.hasUsed();
}
