/**
 * VirtioFrontend.close() in every phase (§4.10 orderly shutdown): whenever the FE's State is
 * READY (the header is in use and a status may have been written) it resets the device and awaits
 * completion before State := RESET, so the back-end sees a driver reset — status 0 — and not a
 * driver that vanished mid-initialisation. Before READY it only leaves.
 */
import { expect } from 'chai';
import { PEER_STATE_READY } from '../../src/ivshmem/device.js';
import type { TransportError } from '../../src/errors.js';
import { echoDevice, recordingDriver } from '../fixtures/transport-devices.js';
import { useEchoRigs, type EchoRig } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

interface Rig extends EchoRig {
  /** The BE's `device_status` at the moment it saw the FE entry leave READY (null: never). */
  statusAtDeparture: () => number | null;
}

describe('VirtioFrontend.close() in every phase (§4.10 orderly shutdown)', () => {
  const echoRig = useEchoRigs();

  function rig(dev = echoDevice(), drv = recordingDriver()): Rig {
    const r = echoRig({ dev, drv, frontend: { readyPollMs: 5 } });
    let feWasReady = false;
    let status: number | null = null;
    // Runs before the back-end's own listener: what the BE finds when the FE leaves.
    r.be.prependListener('peer-state', (id: number, s: number) => {
      if (id !== r.fe.id) return;
      if (s === PEER_STATE_READY) feWasReady = true;
      else if (feWasReady && status === null) status = r.backend.status;
    });
    return { ...r, statusAtDeparture: () => status };
  }

  it('while waiting for the back-end: no transaction, State stays RESET, start() rejects', async () => {
    const { frontend, fe } = rig();
    const started = frontend.start().catch((e: unknown) => e);
    await until(() => frontend.phase === 'waiting', 'waiting');
    await frontend.close();
    expect(((await started) as TransportError).code).to.equal('VSHM_ERR_CLOSED');
    expect(frontend.transactionsCompleted).to.equal(0);
    expect(fe.state).to.equal(0);
    expect(frontend.phase).to.equal('closed');
  });

  it('mid-initialisation (after FEATURES_OK): resets the device before leaving READY', async () => {
    const drv = recordingDriver();
    const r = rig(echoDevice(), drv);
    let closing: Promise<void> | null = null;
    let statusSeen = -1;
    drv.queueCount = () => {
      statusSeen = r.backend.status;
      closing = r.frontend.close(); // e.g. SIGTERM while the queues are being set up
      return 2;
    };
    r.backend.start();
    const started = r.frontend.start().catch((e: unknown) => e);
    await until(() => closing !== null, 'queueCount');
    await closing;
    expect(statusSeen).to.equal(0x0b); // ACKNOWLEDGE | DRIVER | FEATURES_OK: the header was in use
    expect(((await started) as TransportError).code).to.equal('VSHM_ERR_CLOSED');
    expect(r.backend.status).to.equal(0);
    expect(r.fe.state).to.equal(0);
    expect(r.fe.interruptsEnabled).to.equal(false);
    expect(r.frontend.phase).to.equal('closed');
    expect(drv.sessions).to.have.length(0);
    await until(() => r.statusAtDeparture() !== null, 'the BE saw the FE leave');
    expect(r.statusAtDeparture()).to.equal(0);
  });

  /** A live session whose device holds one request ('h' on queue 1) without completing it. */
  async function liveWithHeldRequest(): Promise<Rig> {
    const r = rig();
    r.backend.start();
    const session = await r.frontend.start();
    session.queues[1].add(Buffer.from('held'), 0, 'h');
    session.queues[1].kick();
    await until(() => r.dev.held.length === 1, 'the device holds the request');
    return r;
  }

  it('while live: fails in-flight requests, resets, then leaves READY', async () => {
    const r = await liveWithHeldRequest();
    await r.frontend.close();
    expect(r.drv.failed.map((f) => (f.err as TransportError).code)).to.deep.equal(['VSHM_ERR_CLOSED']);
    expect(r.dev.ends).to.deep.equal(['driver-reset']);
    await until(() => r.statusAtDeparture() !== null, 'the BE saw the FE leave');
    expect(r.statusAtDeparture()).to.equal(0);
    expect(r.fe.state).to.equal(0);
  });

  it('while live: resets first, so a request the device completes meanwhile is delivered, not failed (§4.10)', async () => {
    const r = await liveWithHeldRequest();
    // The device finishes the request a moment after close() was called — before it sees the reset.
    const q = r.dev.sessions[0].queues[1]!;
    const chain = r.dev.held[0];
    setImmediate(() => {
      q.push(chain, 0);
      q.flush();
    });
    await r.frontend.close();
    // Its used entry is the device's acknowledgement: the driver must get the completion, not an
    // error for a request the device carried out (a block write reported failed, then retried).
    expect(r.drv.used.map((u) => u.token)).to.deep.equal(['h']);
    expect(r.drv.failed).to.deep.equal([]);
    expect(r.dev.ends).to.deep.equal(['driver-reset']);
    expect(r.fe.state).to.equal(0);
  });

  it('while live, against a back-end that stopped answering: one reset attempt, not two', async () => {
    const r = echoRig({ frontend: { transactionTimeoutMs: 100 } });
    r.backend.start();
    await r.frontend.start();
    // The BE stays READY but no longer serves anything (a frozen process).
    r.be.onInterrupt = null;
    r.be.removeAllListeners('peer-state');
    r.be.removeAllListeners('peer-gone');
    const txn = (r.frontend as unknown as { txn: { write: (off: number, w: number, v: number) => Promise<void> } }).txn;
    const write = txn.write.bind(txn);
    const resets: number[] = [];
    txn.write = (off, w, v) => {
      if (off === 0x44 && v === 0) resets.push(off);
      return write(off, w, v);
    };
    await r.frontend.close();
    expect(resets).to.have.length(1);
    expect(r.fe.state).to.equal(0);
    expect(r.frontend.phase).to.equal('closed');
  });

  it('after a refusal (status FAILED written, waiting for the BE to leave): resets before leaving READY', async () => {
    const dev = echoDevice();
    dev.acceptFeatures = () => false; // FEATURES_OK is cleared: the FE refuses the device
    const r = rig(dev);
    const errors: Error[] = [];
    r.frontend.on('error', (e: Error) => errors.push(e));
    r.backend.start();
    const started = await r.frontend.start().catch((e: unknown) => e);
    expect(started).to.be.instanceOf(Error);
    await until(() => (r.backend.status & 0x80) !== 0, 'status FAILED');
    expect(r.fe.state).to.equal(PEER_STATE_READY);
    await r.frontend.close();
    expect(errors).to.have.length(1);
    expect(r.backend.status).to.equal(0);
    expect(r.fe.state).to.equal(0);
    await until(() => r.statusAtDeparture() !== null, 'the BE saw the FE leave');
    expect(r.statusAtDeparture()).to.equal(0);
  });

  it('the device closed right after the back-end was lost (mapping detached): the session still ends, close() resolves', async () => {
    const r = await liveWithHeldRequest();
    const lost: Error[] = [];
    r.frontend.on('lost', (e: Error) => lost.push(e));
    // An application that closes its ivshmem device when the partner leaves, in the same turn as
    // the PEER_GONE (or a server message after it that fails the peer): IvshmemPeer.close()
    // unmaps, which detaches the window — the loopback does not, so detach it by transfer.
    let described: unknown = null;
    r.fe.once('peer-gone', () => {
      structuredClone(r.fe.window, { transfer: [r.fe.window] });
      r.fe.close();
      // A status report in that turn (the session has not ended yet) reads nothing either.
      try {
        described = r.frontend.describe();
      } catch (err) {
        described = err;
      }
    });
    r.be.close();
    await r.frontend.close(); // awaits the front-end's loop: it must not have died on the mapping
    expect(lost).to.have.length(1);
    expect(r.drv.failed).to.have.length(1);
    expect(r.drv.removed).to.have.length(1);
    expect(r.frontend.phase).to.equal('closed');
    expect(described).to.include({ phase: 'live', status: 0 });
  });

  it('twice at once: one shutdown', async () => {
    const r = rig();
    r.backend.start();
    await r.frontend.start();
    const before = r.frontend.transactionsCompleted;
    await Promise.all([r.frontend.close(), r.frontend.close()]);
    expect(r.frontend.transactionsCompleted).to.equal(before + 1); // one reset
    expect(r.dev.ends).to.deep.equal(['driver-reset']);
  });
});
