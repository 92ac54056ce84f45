/**
 * Vector choice (spec §4.9) as pure functions, shared by the back-end, the front-end and tests.
 */

/**
 * BE: device vector of queue `index` with `queueCount` queues under the negotiated features and
 * `vectors` eventfds per peer: `1 + index` if `vectors` ≥ 1 + Q, else 0 (console: 1 and 2 with
 * ≥ 3 vectors). Computed when the queue window is loaded (§4.3 `queue_sel`).
 */
export function deviceVectorFor(index: number, queueCount: number, vectors: number): number {
  return vectors >= 1 + queueCount ? 1 + index : 0;
}

/** FE interrupt mode (§4.9): per-queue if `vectors` ≥ D, shared if 2 ≤ `vectors` < D, else single. */
export type FrontendVectorMode = 'per-queue' | 'shared' | 'single';

/**
 * FE: the mode for `callbackQueues` queues with callbacks (D = 1 + callbackQueues) and `vectors`
 * eventfds per peer.
 */
export function frontendVectorMode(callbackQueues: number, vectors: number): FrontendVectorMode {
  if (vectors >= 1 + callbackQueues) return 'per-queue';
  if (vectors >= 2) return 'shared';
  return 'single';
}

/** FE: driver vector of the `k`-th queue with a callback (setup order) in `mode` (§4.9). */
export function driverVectorFor(k: number, mode: FrontendVectorMode): number {
  switch (mode) {
    case 'per-queue':
      return 1 + k;
    case 'shared':
      return 1;
    default:
      return 0;
  }
}
