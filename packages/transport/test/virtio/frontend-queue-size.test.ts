/**
 * §4.6 step 3 (issue 9 item 2): the driver may pick any power of two ≤ the offered maximum. The
 * front-end takes the largest whose rings — and the buffers the driver keeps posted
 * (`queueBuffers`) — fit the shared memory, keeping room for a 1-entry ring of every later
 * queue, and refuses the device with one VSHM_ERR_NO_MEMORY line only when not even size 1 fits.
 * Region 64 KiB here: a 60 KiB R/W section of 64-byte chunks (§5.1), 128 bytes of header.
 */
import { expect } from 'chai';
import { TransportError } from '../../src/errors.js';
import type { QueueBuffers } from '../../src/virtio/device-api.js';
import { echoDevice, recordingDriver, until, type RecordingDriver } from '../fixtures/transport-devices.js';
import { echo, useEchoRigs } from '../fixtures/transport-rigs.js';

/** A recording driver that declares `perQueue(index, size)` as its posted buffers. */
function driverWithBuffers(perQueue: (index: number, size: number) => QueueBuffers): RecordingDriver & { asked: [number, number][] } {
  const drv = recordingDriver() as RecordingDriver & { asked: [number, number][]; queueBuffers: (i: number, n: number) => QueueBuffers };
  drv.asked = [];
  drv.queueBuffers = (i, n) => {
    drv.asked.push([i, n]);
    return perQueue(i, n);
  };
  return drv;
}

describe('VirtioFrontend picks queue sizes that fit the shared memory (§4.6 step 3)', () => {
  const rig = useEchoRigs();

  it('rings only: a 1024 offer on 64 KiB gives queue 0 its 1024 and queue 1 the largest size left (512)', async () => {
    const r = rig({ dev: echoDevice({ queueMax: 1024 }) });
    r.backend.start();
    const session = await r.frontend.start();
    // 1024 takes 16 KiB descriptors + 4 KiB avail + 16 KiB used (chunk-rounded): 36 KiB. A second
    // 1024 would need 36 KiB more of the 60 KiB; 512 (18 KiB) fits.
    expect(session.queues.map((q) => q.size)).to.deep.equal([1024, 512]);
    expect((await echo(session, r.drv, 'fits')).toString()).to.equal('fits');
  });

  it("leaves room for the buffers the driver declares: 4 KiB receive buffers shrink queue 0 to 8", async () => {
    const drv = driverWithBuffers((i, n) => (i === 0 ? { writable: { bytes: 4096, count: n } } : { readable: { bytes: 2048, count: 1 } }));
    const r = rig({ dev: echoDevice({ queueMax: 1024 }), drv });
    r.backend.start();
    const session = await r.frontend.start();
    const [q0, q1] = session.queues;
    expect(q0.size).to.equal(8); // 16 × 4 KiB would be all 60 KiB
    expect(q1.size).to.be.at.least(1);
    // Every declared receive buffer can really be posted after probe, and transmission still works.
    let posted = 0;
    while (q0.add(null, 4096, `rx${posted}`)) posted++;
    expect(posted).to.equal(8);
    expect(q1.add(Buffer.alloc(2048, 1), 0, 'tx')).to.equal(true);
    // Sizes were tried from the top down, and the later queue was checked at size 1.
    expect(drv.asked[0]).to.deep.equal([0, 1024]);
    expect(drv.asked).to.deep.include([1, 1]);
  });

  it('refuses the device with one VSHM_ERR_NO_MEMORY line when not even size 1 fits', async () => {
    const drv = driverWithBuffers((i) => (i === 0 ? { writable: { bytes: 64 * 1024, count: 1 } } : {}));
    const r = rig({ dev: echoDevice({ queueMax: 1024 }), drv });
    r.backend.start();
    const errors: Error[] = [];
    r.frontend.on('error', (e: Error) => errors.push(e));
    const err = await r.frontend.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(TransportError).with.property('code', 'VSHM_ERR_NO_MEMORY');
    expect((err as Error).message).to.equal(
      'queue 0: the 61440-byte R/W section cannot hold even a 1-entry ring and its buffers (offered size 1024); give the server more shared memory (-l)',
    );
    expect((err as Error).message).to.not.include('\n');
    await until(() => errors.length === 1, "the 'error' event");
    expect(drv.sessions).to.have.length(0);
  });

  it('rejects a malformed queueBuffers answer as a driver error', async () => {
    const drv = driverWithBuffers(() => ({ writable: { bytes: 0, count: 1 } }));
    const r = rig({ drv });
    r.backend.start();
    const err = await r.frontend.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(TransportError).with.property('code', 'VSHM_ERR_QUEUE');
  });
});
