/**
 * The front-end's interrupt sink (§4.9): which queues a vector stands for in the session's vector
 * mode, and what vector 0 means (partner state, config event, DEVICE_NEEDS_RESET).
 *
 * Modes, D = 1 + queue count: per-queue (config on 0, queue k on 1 + k), shared (all queues on 1,
 * acted on if `queue_event` & 1), single (everything on 0: config part then queue part). Vector 0
 * always checks the BE entry first (§4.10 FE step (6)).
 *
 * Runs on the device's interrupt callback: it never throws — a driver callback that throws or a
 * device that set DEVICE_NEEDS_RESET is reported through `host.broken`.
 */
import createDebug from 'debug';
import { DeviceStatus } from 'virtio-spec-types';
import { TransportError } from '../errors.js';
import type { VirtioDriverOps } from './device-api.js';
import type { FrontendHeader } from './frontend-header.js';
import type { FrontendQueue } from './frontend-queues.js';
import type { FrontendSession } from './frontend-session.js';
import { HDR_DEVICE_STATUS } from './header.js';
import type { FrontendVectorMode } from './vectors.js';

const log = createDebug('vshm:virtio:fe');

/** What the dispatcher needs from the front-end that owns it. */
export interface InterruptHost {
  readonly name: string;
  readonly header: FrontendHeader;
  readonly ops: VirtioDriverOps;
  /** True while the session is live (phase 'live'): only then are rings and config events handled. */
  readonly live: boolean;
  /** The session whose config changed, or null. */
  readonly currentSession: FrontendSession | null;
  /** Whether the BE entry is READY (and the server still there). */
  backendReady(): boolean;
  /** React to a BE that left READY (a back-end failure). */
  checkBackend(): void;
  /** The session broke (§4.10 broken path). */
  broken(err: Error): void;
}

export class VectorDispatch {
  /** The §4.9 vector mode of the current (or last) session. */
  mode: FrontendVectorMode = 'single';
  /** The session's queues in setup order (empty between sessions). */
  queues: FrontendQueue[] = [];
  /** Queue by driver vector (per-queue mode). */
  private byVector: (FrontendQueue | undefined)[] = [];

  constructor(private readonly host: InterruptHost) {}

  /** Install a session's queues (published before the first is enabled, so a failure can fail them). */
  set(queues: FrontendQueue[], mode: FrontendVectorMode, byVector: (FrontendQueue | undefined)[]): void {
    this.queues = queues;
    this.mode = mode;
    this.byVector = byVector;
  }

  /** Forget the queues of an ended session. */
  clear(): void {
    this.queues = [];
    this.byVector = [];
  }

  /** Mark every queue live or dead; a dead queue accepts and touches nothing. */
  setLive(live: boolean): void {
    for (const q of this.queues) q.live = live;
  }

  /** Return every in-flight request through onFailed. */
  failAll(err: Error): void {
    for (const q of this.queues) q.failAll(err);
  }

  /** Collect used buffers of every queue; returns the completions delivered. */
  pollAll(): number {
    let n = 0;
    for (const q of this.queues) n += q.poll();
    return n;
  }

  /** The interrupt sink (§4.9). Never throws. */
  interrupt(vector: number): void {
    const host = this.host;
    try {
      if (vector === 0) {
        if (!host.backendReady()) {
          host.checkBackend();
          return;
        }
        if (!host.live) return;
        if (host.header.configEvent) {
          host.header.clearConfigEvent();
          if ((host.header.load(HDR_DEVICE_STATUS, 4) & DeviceStatus.DEVICE_NEEDS_RESET) !== 0) {
            // §6.3: the BE found a ring violation, stopped all queues and waits for a reset.
            log('%s: config event with DEVICE_NEEDS_RESET', host.name);
            host.broken(new TransportError('VSHM_ERR_NEEDS_RESET', '6.3', 'device set DEVICE_NEEDS_RESET'));
            return;
          }
          log('%s: config event', host.name);
          const s = host.currentSession;
          if (s !== null && host.ops.configChanged !== undefined) {
            try {
              host.ops.configChanged(s);
            } catch (err) {
              host.broken(asError(err, 'configChanged threw'));
              return;
            }
          }
        }
        if (this.mode === 'single') this.queuePart();
        return;
      }
      if (!host.live) return;
      if (this.mode === 'per-queue') {
        this.byVector[vector]?.poll();
      } else if (this.mode === 'shared' && vector === 1) {
        this.queuePart();
      }
    } catch (err) {
      log('%s: interrupt handler: %s', host.name, (err as Error).message);
    }
  }

  /** Shared/single mode: act if `queue_event` & 1 — store 0, full fence, poll all (§4.9). */
  private queuePart(): void {
    const h = this.host.header;
    if (!h.queueEvent) return;
    h.clearQueueEvent();
    this.pollAll();
  }
}

/** `err` as an Error (a callback may throw anything). */
export function asError(err: unknown, what: string): Error {
  return err instanceof Error ? err : new TransportError('VSHM_ERR_CALLBACK', '', `${what}: ${String(err)}`);
}
