/**
 * The §4.10 loop of VirtioFrontend classifies every expected failure inside itself; an exception
 * that escapes it anyway (a defect, not a peer's doing) must not become an unhandled rejection —
 * which ends a Node process — nor leave the transport half-alive: it is reported once through
 * 'error' (VSHM_ERR_TRANSPORT), a pending start() rejects, and the front-end closes.
 */
import { expect } from 'chai';
import type { TransportError } from '../../src/errors.js';
import { useEchoRigs } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

describe('VirtioFrontend: an exception escaping the §4.10 loop', () => {
  const echoRig = useEchoRigs();

  it('is one error event, a rejected start() and a closed front-end, not an unhandled rejection', async () => {
    const r = echoRig({ frontend: { readyPollMs: 5 } });
    const errors: TransportError[] = [];
    r.frontend.on('error', (e: TransportError) => errors.push(e));
    // A defect planted where no failure is expected: waiting for the back-end throws.
    (r.frontend as unknown as { waitBackendReady: () => Promise<boolean> }).waitBackendReady = () => Promise.reject(new Error('planted defect'));
    const err = (await r.frontend.start().then(
      () => expect.fail('start() resolved'),
      (e: unknown) => e,
    )) as TransportError;
    expect(err.code).to.equal('VSHM_ERR_TRANSPORT');
    expect(err.message).to.match(/planted defect/);
    await until(() => r.frontend.phase === 'closed', 'closed');
    expect(errors.map((e) => e.code)).to.deep.equal(['VSHM_ERR_TRANSPORT']);
    await r.frontend.close(); // idempotent, resolves
  });
});
