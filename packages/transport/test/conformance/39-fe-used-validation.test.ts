/**
 * §8 item 39 (transport, FE side): the FE rejects a used `id` not in flight and a used `len`
 * above the buffer size (§6.4) — the device is broken: in-flight requests fail, the driver is
 * removed, the device is reset and re-initialised, and the driver is probed again.
 * The test plays a hostile device by writing the used ring of a queue whose chains the real
 * back-end holds (never completes).
 */
import { expect } from 'chai';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import { VirtioBackend } from '../../src/virtio/backend.js';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import type { FrontendQueue } from '../../src/virtio/frontend-queues.js';
import { RingError } from '../../src/errors.js';
import { type EchoDevice, type RecordingDriver } from '../fixtures/transport-devices.js';
import { useEchoRigs } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

describe('§8 item 39: FE used-ring validation (§6.4)', () => {
  const rig = useEchoRigs();
  let be: IvshmemDevice;
  let fe: IvshmemDevice;
  let backend: VirtioBackend;
  let frontend: VirtioFrontend;
  let drv: RecordingDriver;
  let dev: EchoDevice;
  let errors: Error[];

  beforeEach(async () => {
    ({ be, fe, backend, frontend, drv, dev } = rig());
    backend.start();
    errors = [];
    frontend.on('error', (e: Error) => errors.push(e));
    await frontend.start();
  });

  /** Post two held requests on queue 1 (heads 0 and 2), then forge one used entry. */
  async function forge(entry: { id: number; len: number } | null, usedIdx = 1): Promise<void> {
    const q1 = drv.sessions[0].queues[1] as FrontendQueue;
    q1.add(Buffer.from('a'), 4, 'a'); // head 0 (+ desc 1 writable, 4 bytes)
    q1.add(Buffer.from('b'), 4, 'b'); // head 2
    q1.kick();
    await until(() => dev.held.length === 2, 'device holds both');
    const dv = new DataView(fe.window);
    const u = q1.rings.used;
    if (entry !== null) {
      dv.setUint32(u + 4, entry.id, true);
      dv.setUint32(u + 8, entry.len, true);
    }
    Atomics.store(new Uint16Array(fe.window), (u + 2) >>> 1, usedIdx);
    be.doorbell(1, q1.driverVector); // "used buffers" interrupt
  }

  async function expectBrokenAndRecovered(code: string): Promise<void> {
    await until(() => drv.sessions.length === 2, 'probe after recovery');
    expect(drv.used).to.have.length(0); // nothing delivered from the forged entry
    expect(drv.failed.map((f) => f.token).sort()).to.deep.equal(['a', 'b']);
    for (const f of drv.failed) {
      expect(f.err).to.be.instanceOf(RingError);
      expect((f.err as RingError).code).to.equal(code);
    }
    expect(drv.removed).to.have.length(1);
    expect(errors.map((e) => (e as RingError).code)).to.deep.equal([code]);
    // The new session works.
    const q0 = drv.sessions[1].queues[0];
    q0.add(Buffer.from('ok'), 8, 'ok');
    q0.kick();
    await until(() => drv.used.length === 1, 'echo after recovery');
    expect(drv.used[0].data.toString()).to.equal('ok');
  }

  it('rejects a used id that is not the head of a chain in flight', async () => {
    await forge({ id: 1, len: 0 }); // descriptor 1 is the writable tail of chain 0, not a head
    await expectBrokenAndRecovered('VSHM_ERR_USED_ID');
  });

  it('rejects a used id ≥ queue size', async () => {
    await forge({ id: 8, len: 0 });
    await expectBrokenAndRecovered('VSHM_ERR_USED_ID');
  });

  it('rejects a used len above the chain\'s writable length', async () => {
    await forge({ id: 0, len: 5 }); // chain 0 has 4 writable bytes
    await expectBrokenAndRecovered('VSHM_ERR_USED_LEN');
  });

  it('rejects used.idx more than the queue size ahead', async () => {
    await forge(null, 9);
    await expectBrokenAndRecovered('VSHM_ERR_USED_JUMP');
  });

  it('accepts a used len equal to the writable length', async () => {
    await forge({ id: 2, len: 4 });
    await until(() => drv.used.length === 1, 'delivery');
    expect(drv.used[0].token).to.equal('b');
    expect(drv.used[0].data.length).to.equal(4);
    expect(drv.removed).to.have.length(0);
  });
});
