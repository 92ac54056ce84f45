/**
 * How a front-end session ends, per failure kind (§4.10; the kinds are described in frontend.ts):
 * - lost: stop touching shared structures, clear both event bytes, fail in-flight requests,
 *   remove(), 'lost', and only then State := RESET (the BE re-initialises on seeing it);
 * - broken: fail in-flight requests, remove(), 'error', reset the device and await it (the BE
 *   then touches no old ring, §4.5) while staying READY;
 * - refused: 'error', start() rejects, status FAILED (best effort), wait for the BE to leave
 *   READY, State := RESET;
 * - close: fail in-flight requests, start() rejects; close() does the orderly reset itself.
 * A close() that arrives during a broken or refused recovery leaves State READY so that close()
 * still resets the device before leaving READY.
 */
import createDebug from 'debug';
import { DeviceStatus } from 'virtio-spec-types';
import { RingError } from '../errors.js';
import { PEER_STATE_READY, PEER_STATE_RESET, type IvshmemDevice } from '../ivshmem/device.js';
import type { VirtioDriverOps } from './device-api.js';
import type { FrontendHeader } from './frontend-header.js';
import { asError, type VectorDispatch } from './frontend-interrupts.js';
import type { FrontendSession } from './frontend-session.js';
import { writeStatus } from './frontend-setup.js';
import { backendLost, isBackendFailure, type TransactionWriter } from './frontend-transactions.js';

const log = createDebug('vshm:virtio:fe');

export type FailureKind = 'lost' | 'broken' | 'refused' | 'close';
export interface Failure {
  kind: FailureKind;
  err: Error;
}

/** The failure kind of an error thrown by an initialisation. */
export function classify(err: unknown): Failure {
  const e = asError(err, 'initialisation failed');
  if (isBackendFailure(e)) return { kind: 'lost', err: e };
  if (e instanceof RingError) return { kind: 'broken', err: e };
  return { kind: 'refused', err: e };
}

/** What recovery needs from the front-end that owns it. */
export interface RecoveryHost {
  readonly name: string;
  readonly device: IvshmemDevice;
  readonly header: FrontendHeader;
  readonly txn: TransactionWriter;
  readonly ops: VirtioDriverOps;
  readonly dispatch: VectorDispatch;
  /** close() was called (or the device closed). */
  readonly closing: boolean;
  /** Detach the current session (null afterwards); null if none was built. */
  takeSession(): FrontendSession | null;
  /** Forget the recorded failure, so that transactions of the recovery itself may run. */
  clearFailure(): void;
  emit(event: 'lost' | 'error', err: Error): void;
  rejectStart(err: Error): void;
  backendReady(): boolean;
  /** Resolves once `cond()` holds or the front-end closes. */
  waitFor(cond: () => boolean): Promise<void>;
}

/** End the session per failure kind (file comment). */
export async function recoverSession(h: RecoveryHost, f: Failure): Promise<void> {
  log('%s: %s: %s', h.name, f.kind, f.err.message);
  const d = h.device;
  const session = h.takeSession();
  session?.kill();
  // Stop touching rings and buffers before anything else.
  h.dispatch.setLive(false);
  if (f.kind === 'lost') {
    h.txn.abort(f.err);
    d.interruptsEnabled = false;
    h.header.clearConfigEvent();
    h.header.clearQueueEvent();
  }
  h.dispatch.failAll(f.err);
  if (session !== null) callRemove(h, f.err);
  h.dispatch.clear();
  switch (f.kind) {
    case 'lost':
      h.emit('lost', f.err);
      d.setState(PEER_STATE_RESET); // only now: we no longer touch shared structures
      return;
    case 'broken':
      h.emit('error', f.err);
      d.interruptsEnabled = false;
      try {
        h.clearFailure();
        await writeStatus(h.txn, DeviceStatus.RESET); // the BE then touches no old ring (§4.5)
        log('%s: device reset after a broken session', h.name);
      } catch (err) {
        if (h.closing) return; // close() resets (§4.10 orderly shutdown)
        const lost = isBackendFailure(err) ? (err as Error) : backendLost('reset after a broken ring failed');
        await recoverSession(h, { kind: 'lost', err: lost });
      }
      return;
    case 'refused':
      h.emit('error', f.err);
      h.rejectStart(f.err);
      d.interruptsEnabled = false;
      if (d.state === PEER_STATE_READY && h.backendReady()) {
        h.clearFailure();
        await writeStatus(h.txn, DeviceStatus.FAILED).catch(() => undefined);
      }
      // Retrying this BE would be refused again: wait for it to go away — a different one may
      // be started (§4.10) — even if we never went READY (header refused).
      log('%s: refused the device: waiting for the back-end to leave READY', h.name);
      await h.waitFor(() => !h.backendReady());
      if (h.closing) return; // still READY over a header we wrote: close() resets first
      d.setState(PEER_STATE_RESET);
      return;
    case 'close':
      h.txn.abort(f.err);
      h.rejectStart(f.err);
      return;
  }
}

function callRemove(h: RecoveryHost, err: Error): void {
  try {
    h.ops.remove(err);
  } catch (e) {
    log('%s: remove() threw: %s', h.name, (e as Error).message);
  }
}
