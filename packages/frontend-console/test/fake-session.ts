/**
 * A fake driver-side session (mock the other side): queues that record what the
 * driver posts and let a test play the device by completing or failing requests.
 */
import type { ConfigWidth, DriverQueueHandle, DriverSession } from '@vshm/transport';

export interface Posted {
  out: Uint8Array | null;
  inLen: number;
  token: unknown;
}

export class FakeQueue implements DriverQueueHandle {
  readonly index: number;
  readonly size: number;
  onUsed: ((token: unknown, data: Uint8Array) => void) | null = null;
  onFailed: ((token: unknown, err: Error) => void) | null = null;
  /** Requests in flight, in posting order. */
  readonly posted: Posted[] = [];
  /** Everything ever posted (copies of `out`). */
  readonly history: Posted[] = [];
  kicks = 0;
  /** Adds to accept before add() returns false (simulates short shared memory); Infinity = no limit. */
  budget = Infinity;
  /** Requests posted but not yet published by a kick. */
  unkicked = 0;

  constructor(index: number, size = 8) {
    this.index = index;
    this.size = size;
  }

  get inFlight(): number {
    return this.posted.length;
  }

  add(out: Uint8Array | null, inLen: number, token: unknown): boolean {
    if (this.posted.length >= this.size || this.budget <= 0) return false;
    this.budget--;
    const p = { out: out === null ? null : new Uint8Array(out), inLen, token };
    this.posted.push(p);
    this.history.push(p);
    this.unkicked++;
    return true;
  }

  kick(): void {
    this.kicks++;
    this.unkicked = 0;
  }

  /** Device completes the oldest request, writing `data` into its writable part. */
  complete(data: Uint8Array = new Uint8Array(0)): Posted {
    const p = this.posted.shift();
    if (p === undefined) throw new Error(`queue ${this.index}: nothing in flight`);
    if (data.length > p.inLen) throw new Error(`queue ${this.index}: ${data.length} bytes into a ${p.inLen}-byte buffer`);
    this.onUsed?.(p.token, data);
    return p;
  }

  /** Device lost: every in-flight request comes back through onFailed. */
  failAll(err = new Error('device lost')): void {
    const all = this.posted.splice(0);
    for (const p of all) this.onFailed?.(p.token, err);
  }

  /** Concatenated `out` bytes of all requests completed or in flight, in posting order. */
  sentBytes(): Buffer {
    return Buffer.concat(this.history.map((p) => p.out ?? new Uint8Array(0)));
  }
}

export class FakeSession implements DriverSession {
  readonly features: bigint;
  readonly queues: FakeQueue[];
  readonly config = new DataView(new ArrayBuffer(12));
  readonly configWrites: { offset: number; width: ConfigWidth; value: number }[] = [];

  constructor(features: bigint, queueCount: number, queueSize = 8) {
    this.features = features;
    this.queues = Array.from({ length: queueCount }, (_, i) => new FakeQueue(i, queueSize));
  }

  readConfig(offset: number, width: ConfigWidth): number {
    if (width === 1) return this.config.getUint8(offset);
    if (width === 2) return this.config.getUint16(offset, true);
    return this.config.getUint32(offset, true);
  }

  async writeConfig(offset: number, width: ConfigWidth, value: number): Promise<void> {
    this.configWrites.push({ offset, width, value });
  }

  /** Fail every in-flight request of every queue (what the transport does before remove()). */
  failAll(): void {
    for (const q of this.queues) q.failAll();
  }
}

/** Resolve after pending microtasks (batched kicks) ran. */
export function microtasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
