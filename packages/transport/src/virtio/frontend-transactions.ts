/**
 * The front-end's write-transaction writer (spec §4.3).
 *
 * A transaction writes `value` at header offset `off`:
 *   1. wait until `write_transaction` = 0 (acquire), checking the BE entry stays READY;
 *   2. store `value` at its natural width; 3. (release — Atomics stores are seq-cst);
 *   4. `write_transaction` := off; 5. full fence; 6. Doorbell(BE, 0).
 * It completes when `write_transaction` reads 0 again (acquire).
 *
 * One transaction at a time: `write()` chains every request behind the previous one, so callers
 * may fire several without awaiting and they still go out strictly in call order.
 *
 * Completion is not signalled by any interrupt, so we poll: a short synchronous spin (a BE in
 * another process usually answers within microseconds), then setImmediate rounds (a BE on the
 * same event loop, e.g. the loopback, needs the loop to turn) for at least `immediateRounds`
 * rounds and `immediateMs` ms, then short timers backing off to `maxPollMs`. Nothing ever blocks
 * the loop. The immediate phase is bounded by time, not only by rounds, because a BE in another
 * process that was asleep needs a wake-up (eventfd → its event loop), which takes 60 µs to
 * several ms on a busy machine: 64 rounds were over in well under a millisecond, and each
 * transaction then waited for a 1–8 ms timer after the BE had long answered — an initialisation
 * is 20-odd transactions in a row, so that was most of a front-end's time to DRIVER_OK
 * (issue 12 item 7). Transactions only happen while initialising or resetting, so the extra
 * polling is short-lived. A BE entry that leaves READY, a partner that is no
 * longer present, or `timeoutMs` without completion is a back-end failure (§4.10): the promise
 * rejects with a TransportError and the front-end recovers.
 */
import { TransportError } from '../errors.js';
import { PEER_STATE_READY, type IvshmemDevice } from '../ivshmem/device.js';
import { fullFence } from '../ring/memory.js';
import type { FieldWidth, FrontendHeader } from './header.js';

export interface TransactionOptions {
  /** Back-end failure after this long without completion. Default 5000 ms. */
  timeoutMs?: number;
  /** Synchronous polls before yielding to the event loop. Default 200. */
  spin?: number;
  /** setImmediate rounds before switching to timers (at least). Default 64. */
  immediateRounds?: number;
  /** Time in setImmediate rounds before switching to timers (at least), ms. Default 20. */
  immediateMs?: number;
  /** Longest timer between polls. Default 8 ms. */
  maxPollMs?: number;
}

/** The BE entry left READY, or the BE is gone (§4.10). */
export function backendLost(message: string): TransportError {
  return new TransportError('VSHM_ERR_BACKEND_LOST', '4.10', message);
}

/** Whether `err` is a back-end failure (lost BE or timed-out transaction) rather than a bug. */
export function isBackendFailure(err: unknown): boolean {
  return err instanceof TransportError && (err.code === 'VSHM_ERR_BACKEND_LOST' || err.code === 'VSHM_ERR_TXN_TIMEOUT');
}

const immediate = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class TransactionWriter {
  private readonly header: FrontendHeader;
  private readonly device: IvshmemDevice;
  private readonly partner: number;
  private readonly timeoutMs: number;
  private readonly spin: number;
  private readonly immediateRounds: number;
  private readonly immediateMs: number;
  private readonly maxPollMs: number;
  /** Tail of the chain of requests: the next one starts when it settles. */
  private tail: Promise<void> = Promise.resolve();
  /** Bumped by abort(): requests of an older epoch fail with `abortError`. */
  private epoch = 0;
  private abortError: Error | null = null;
  /** Transactions completed (for tests and debugging). */
  completed = 0;

  constructor(header: FrontendHeader, device: IvshmemDevice, partner: number, opts: TransactionOptions = {}) {
    this.header = header;
    this.device = device;
    this.partner = partner;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.spin = opts.spin ?? 200;
    this.immediateRounds = opts.immediateRounds ?? 64;
    this.immediateMs = opts.immediateMs ?? 20;
    this.maxPollMs = opts.maxPollMs ?? 8;
  }

  /**
   * Queue a transaction writing `value` (bigint for width 8) at header offset `off`. Resolves
   * once the BE completed it; rejects on back-end failure or abort().
   */
  write(off: number, width: FieldWidth, value: number | bigint): Promise<void> {
    if (!Number.isInteger(off) || off <= 0) {
      // Offset 0 is never written: 0 means idle (§4.3).
      return Promise.reject(new TransportError('VSHM_ERR_TXN_OFFSET', '4.3', `transaction offset must be > 0, got ${off}`));
    }
    const epoch = this.epoch;
    const run = this.tail.then(() => this.run(epoch, off, width, value));
    this.tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Fail the running and every queued transaction with `err`; later writes work again. */
  abort(err: Error): void {
    this.epoch++;
    this.abortError = err;
  }

  /** Resolves when every transaction queued so far has settled. */
  idle(): Promise<void> {
    return this.tail;
  }

  private async run(epoch: number, off: number, width: FieldWidth, value: number | bigint): Promise<void> {
    this.check(epoch);
    await this.waitIdle(epoch, off); // step 1
    const h = this.header;
    h.store(off, width, value); // step 2 (seq-cst store: also step 3's release)
    h.writeTransaction = off; // step 4
    fullFence(); // step 5
    this.device.doorbell(this.partner, 0); // step 6
    await this.waitIdle(epoch, off); // completion
    this.completed++;
  }

  private check(epoch: number): void {
    if (epoch !== this.epoch) throw this.abortError ?? backendLost('transaction aborted');
    if (!this.device.isPresent(this.partner)) throw backendLost('back-end is gone');
    if (this.device.peerState(this.partner) !== PEER_STATE_READY) throw backendLost('back-end left READY');
  }

  /** Poll until `write_transaction` reads 0 (acquire). `off`: the transaction we wait for or before. */
  private async waitIdle(epoch: number, off: number): Promise<void> {
    const h = this.header;
    for (let i = 0; i < this.spin; i++) {
      if (h.writeTransaction === 0) return;
    }
    const start = performance.now();
    let round = 0;
    let delay = 1;
    for (;;) {
      this.check(epoch);
      if (h.writeTransaction === 0) return;
      const elapsed = performance.now() - start;
      if (elapsed > this.timeoutMs) {
        // The offset says which write stalled (e.g. 0x14 device_status); the CLIs print it.
        throw new TransportError('VSHM_ERR_TXN_TIMEOUT', '4.3', `write transaction at header offset 0x${off.toString(16)} not completed within ${this.timeoutMs} ms`);
      }
      if (round++ < this.immediateRounds || elapsed < this.immediateMs) {
        await immediate();
      } else {
        await sleep(delay);
        if (delay < this.maxPollMs) delay *= 2;
      }
    }
  }
}
