/**
 * The front-end reacts to State events, not samples (issue 9 item 3; §4.9: every State change
 * raises vector 0 at the partner). The fallback poll is set to an hour here, so only events can
 * move the front-end on:
 * - a refused header, then a back-end that goes READY → RESET → READY within one turn (its entry
 *   never reads anything but READY when sampled): the front-end retries at once;
 * - after a transaction timeout the front-end holds its own RESET until the back-end shows it
 *   saw it (here: the same fast flip), instead of re-initialising at once over a back-end that
 *   may not have looked; bounded, so a hung back-end is still retried.
 */
import { expect } from 'chai';
import { createLoopbackPair } from '../../src/testing/loopback.js';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import { TransportError } from '../../src/errors.js';
import { ScriptedBackend } from '../fixtures/transport-scripted-backend.js';
import { recordingDriver, until } from '../fixtures/transport-devices.js';

const HOUR = 3_600_000;
const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('VirtioFrontend reacts to State events (§4.9, §4.10)', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function pair() {
    const [be, fe] = createLoopbackPair();
    cleanups.push(() => be.close(), () => fe.close());
    return { be, fe };
  }

  it('retries a refused back-end that re-initialised between two samples (READY → RESET → READY)', async () => {
    const { be, fe } = pair();
    new ScriptedBackend(be, { revision: 0 }).start();
    const drv = recordingDriver();
    const frontend = new VirtioFrontend(fe, drv, { readyPollMs: HOUR });
    cleanups.push(() => frontend.close());
    const err = await frontend.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(TransportError).with.property('code', 'VSHM_ERR_HEADER');
    expect(fe.state, 'a refused header: never READY').to.equal(0);
    // A new back-end: RESET, a good header, READY — all before the front-end looks again.
    be.setState(0);
    new ScriptedBackend(be).start();
    expect(be.state).to.equal(1);
    await until(() => drv.sessions.length === 1, 'a probe after the fast re-initialisation');
    expect(frontend.phase).to.equal('live');
  });

  it('after a transaction timeout, holds RESET until the back-end reacts, then re-initialises', async () => {
    const { be, fe } = pair();
    const first = new ScriptedBackend(be);
    first.hold = true; // READY, but it never completes a transaction
    first.start();
    const drv = recordingDriver();
    const frontend = new VirtioFrontend(fe, drv, { readyPollMs: HOUR, resetHoldMs: HOUR, transactionTimeoutMs: 50 });
    cleanups.push(() => frontend.close());
    const lost = new Promise<Error>((resolve) => frontend.once('lost', resolve));
    const started = frontend.start();
    expect(await lost).to.have.property('code', 'VSHM_ERR_TXN_TIMEOUT');
    await until(() => fe.state === 0, 'our RESET');
    await turns(200);
    expect(fe.state, 'RESET held while the back-end has not reacted').to.equal(0);
    expect(frontend.phase).to.equal('recovering');
    // The back-end notices: RESET, re-initialise, READY within one turn.
    be.setState(0);
    const second = new ScriptedBackend(be);
    second.start();
    await started;
    expect(drv.sessions).to.have.length(1);
    expect(second.status & 0x04, 'DRIVER_OK on the new back-end').to.equal(0x04);
  });

  it('the hold is bounded: a back-end that never reacts is retried (and times out again)', async () => {
    const { be, fe } = pair();
    const stuck = new ScriptedBackend(be);
    stuck.hold = true;
    stuck.start();
    const frontend = new VirtioFrontend(fe, recordingDriver(), { readyPollMs: HOUR, resetHoldMs: 1, transactionTimeoutMs: 50 });
    cleanups.push(() => frontend.close());
    const losses: string[] = [];
    frontend.on('lost', (e: TransportError) => losses.push(e.code));
    void frontend.start().catch(() => undefined);
    await until(() => losses.length >= 2, 'a second timed-out attempt');
    expect(losses.slice(0, 2)).to.deep.equal(['VSHM_ERR_TXN_TIMEOUT', 'VSHM_ERR_TXN_TIMEOUT']);
  });

  it('checks resetHoldMs', () => {
    const { fe } = pair();
    expect(() => new VirtioFrontend(fe, recordingDriver(), { resetHoldMs: -1 })).to.throw(/resetHoldMs must be ≥ 0/);
  });
});
