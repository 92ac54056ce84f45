/**
 * §8 item 35: in-flight requests of a lost peer fail with an error — FE side (onFailed with
 * VSHM_ERR_BACKEND_LOST, then remove) and BE side (the device session ends with 'driver-gone').
 */
import { expect } from 'chai';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import { TransportError } from '../../src/errors.js';
import { echoDevice, recordingDriver } from '../fixtures/transport-devices.js';
import { echo, useRestartRig } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

describe('§8 item 35: in-flight requests of a lost peer fail with an error (§4.10)', () => {
  const rig = useRestartRig();

  it('items 34/35: a back-end restart fails in-flight requests with an error, then re-probes with a working session', async () => {
    const dev1 = echoDevice();
    const b1 = rig.startBackend(dev1);
    const drv = recordingDriver();
    const frontend = (rig.frontend = new VirtioFrontend(rig.fe, drv));
    const lost: Error[] = [];
    frontend.on('lost', (e: Error) => lost.push(e));
    const s1 = await frontend.start();
    expect((await echo(s1, drv, 'one')).toString()).to.equal('one');
    // Requests on queue 1 are held by the device: they are in flight when the BE goes away.
    for (const t of ['a', 'b', 'c']) s1.queues[1].add(Buffer.from(t), 0, t);
    s1.queues[1].kick();
    await until(() => dev1.held.length === 3, 'device holds 3 chains');

    await b1.close(); // BE: State := RESET
    const dev2 = echoDevice();
    rig.startBackend(dev2); // a new BE on the same device: waits for the FE entry RESET first
    await until(() => drv.sessions.length === 2, 'second probe');

    expect(drv.failed.map((f) => f.token).sort()).to.deep.equal(['a', 'b', 'c']);
    for (const f of drv.failed) {
      expect(f.err).to.be.instanceOf(TransportError);
      expect((f.err as TransportError).code).to.equal('VSHM_ERR_BACKEND_LOST');
    }
    expect(drv.removed).to.have.length(1);
    expect(lost).to.have.length(1);
    expect(s1.queues[1].inFlight).to.equal(0);
    expect(s1.queues[0].add(Buffer.from('stale'), 4, 'stale')).to.equal(false); // old session is dead

    const s2 = drv.sessions[1];
    expect(s2).to.not.equal(s1);
    expect(frontend.session).to.equal(s2);
    expect(dev2.sessions).to.have.length(1);
    expect((await echo(s2, drv, 'two')).toString()).to.equal('two');
    expect(dev1.ends).to.include('shutdown');
  });

  it('item 35 (BE side): when the FE leaves, the device session ends with driver-gone', async () => {
    const dev = echoDevice();
    rig.startBackend(dev);
    const drv = recordingDriver();
    const frontend = (rig.frontend = new VirtioFrontend(rig.fe, drv));
    const s = await frontend.start();
    s.queues[1].add(Buffer.from('x'), 0, 'x');
    s.queues[1].kick();
    await until(() => dev.held.length === 1, 'held');
    rig.fe.setState(0); // the FE "crashes" out of READY without a reset
    await until(() => dev.ends.length > 0, 'BE session end');
    expect(dev.ends[0]).to.equal('driver-gone');
  });

  it('a back-end device that disappears (PEER_GONE) is a back-end failure', async () => {
    rig.startBackend();
    const drv = recordingDriver();
    const frontend = (rig.frontend = new VirtioFrontend(rig.fe, drv));
    const s = await frontend.start();
    s.queues[1].add(Buffer.from('x'), 0, 'x');
    s.queues[1].kick();
    rig.be.close();
    await until(() => drv.removed.length === 1, 'remove');
    expect(drv.failed.map((f) => f.token)).to.deep.equal(['x']);
    await until(() => frontend.phase === 'waiting', 'FE waiting for a new BE');
    expect(rig.fe.state).to.equal(0);
  });
});
