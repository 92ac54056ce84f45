/**
 * The virtio-rng driver as a vshm front-end plug-in: `read(n)` resolves with n random bytes taken
 * from the device. Requests are split into chunks of at most `maxRequest` bytes, each one
 * device-writable buffer on the request queue; chunks that do not fit (descriptors or shared
 * memory short) wait and are posted as completions free space — or, with nothing in flight to
 * free any, are halved until they fit.
 *
 * Failure (§4.10, §8 item 35): when the device goes away or breaks, the transport fails every
 * in-flight request; the read that owned it rejects with that error — never silently dropped.
 * Reads issued while no device is live wait for the next one.
 */
import type { DriverQueueHandle, DriverSession, VirtioDriverOps } from '@vshm/transport';
import { RNG_QUEUE_COUNT, RNG_REQUESTQ, VirtioDeviceId } from 'virtio-spec-types';

interface Read {
  readonly out: Buffer;
  /** Byte ranges still to request, in order. */
  readonly todo: Chunk[];
  /** Bytes received so far. */
  got: number;
  done: boolean;
  resolve(b: Buffer): void;
  reject(e: Error): void;
}

interface Chunk {
  read: Read;
  offset: number;
  len: number;
}

export interface RngDriverOptions {
  /** Largest single request in bytes. Default 4096. */
  maxRequest?: number;
}

export class RngDriver implements VirtioDriverOps {
  readonly deviceId = VirtioDeviceId.RNG;
  readonly features = 0n;
  private readonly maxRequest: number;
  private queue: DriverQueueHandle<Chunk> | null = null;
  /** Reads with bytes not yet posted, oldest first. */
  private readonly waiting: Read[] = [];
  private probeWaiters: (() => void)[] = [];

  constructor(opts: RngDriverOptions = {}) {
    const m = opts.maxRequest ?? 4096;
    if (!Number.isInteger(m) || m < 1 || m > 1 << 20) throw new RangeError(`maxRequest must be 1…1048576, got ${String(m)}`);
    this.maxRequest = m;
  }

  queueCount(): number {
    return RNG_QUEUE_COUNT;
  }

  /** Whether a device session is live. */
  get live(): boolean {
    return this.queue !== null;
  }

  /** Resolves once a device session is live (immediately if one is). */
  whenLive(): Promise<void> {
    if (this.queue !== null) return Promise.resolve();
    return new Promise((r) => this.probeWaiters.push(r));
  }

  /** `n` random bytes from the device. Rejects if the device fails while the read is in flight. */
  read(n: number): Promise<Buffer> {
    if (!Number.isSafeInteger(n) || n < 0) return Promise.reject(new RangeError(`read: n must be a safe integer ≥ 0, got ${String(n)}`));
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    return new Promise<Buffer>((resolve, reject) => {
      const r: Read = { out: Buffer.alloc(n), todo: [], got: 0, done: false, resolve, reject };
      for (let off = 0; off < n; off += this.maxRequest) r.todo.push({ read: r, offset: off, len: Math.min(this.maxRequest, n - off) });
      this.waiting.push(r);
      this.pump();
    });
  }

  probe(session: DriverSession): void {
    const q = session.queues[RNG_REQUESTQ] as DriverQueueHandle<Chunk>;
    q.onUsed = (chunk, data) => this.completed(chunk, data);
    q.onFailed = (chunk, err) => this.failed(chunk.read, err);
    this.queue = q;
    const waiters = this.probeWaiters;
    this.probeWaiters = [];
    for (const w of waiters) w();
    this.pump();
  }

  remove(reason: Error): void {
    // Every in-flight chunk already came back through onFailed (device-api contract).
    this.queue = null;
    void reason;
  }

  /** Post as many chunks as the queue takes, oldest read first, then kick once. */
  private pump(): void {
    const q = this.queue;
    if (q === null) return;
    let posted = false;
    while (this.waiting.length > 0) {
      const r = this.waiting[0];
      const chunk = r.todo[0];
      if (r.done || chunk === undefined) {
        this.waiting.shift();
        continue;
      }
      if (!q.add(null, chunk.len, chunk)) {
        // Short of space: retried on the next completion. With nothing in flight there is none
        // to wait for — the chunk is larger than the shared memory can hold at all — so it is
        // halved until it fits (the device fills each half; the read still gets every byte).
        if (q.inFlight > 0 || q.live === false || chunk.len === 1) break;
        const half = chunk.len >>> 1;
        r.todo.splice(0, 1, { read: r, offset: chunk.offset, len: half }, { read: r, offset: chunk.offset + half, len: chunk.len - half });
        continue;
      }
      r.todo.shift();
      posted = true;
    }
    if (posted) q.kick();
  }

  private completed(chunk: Chunk, data: Uint8Array): void {
    const r = chunk.read;
    if (!r.done) {
      const n = Math.min(data.length, chunk.len);
      r.out.set(data.subarray(0, n), chunk.offset);
      r.got += n;
      if (n < chunk.len) {
        // The device may return fewer bytes (VIRTIO 1.2 §5.4.6): ask again for the rest, first.
        r.todo.unshift({ read: r, offset: chunk.offset + n, len: chunk.len - n });
        if (!this.waiting.includes(r)) this.waiting.unshift(r);
      } else if (r.got === r.out.length) {
        r.done = true;
        r.resolve(r.out);
      }
    }
    this.pump();
  }

  private failed(r: Read, err: Error): void {
    if (r.done) return;
    r.done = true;
    r.reject(err);
  }
}

/** A fresh virtio-rng driver ops table. */
export function createRngDriver(opts: RngDriverOptions = {}): RngDriver {
  return new RngDriver(opts);
}
