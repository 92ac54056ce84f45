/**
 * The virtio-rng device (OASIS VIRTIO 1.2 §5.4) as a vshm back-end plug-in: device id 4, one
 * request queue, no feature bits, no config space. Every chain the driver posts is a set of
 * device-writable buffers; the device fills them with random bytes and returns them.
 *
 * This file is the whole device: an ops table. Feature negotiation, the status bits,
 * ring validation (§6.3) and recovery are the transport's job.
 */
import { randomFillSync } from 'node:crypto';
import type { DeviceQueueHandle, DeviceSession, SessionEndReason, VirtioDeviceOps } from '@vshm/transport';
import { RNG_CONFIG_SIZE, RNG_QUEUE_COUNT, RNG_REQUESTQ, VirtioDeviceId } from 'virtio-spec-types';

/** Largest queue the device offers (a power of two ≤ 32768, §4.6). */
export const RNG_QUEUE_SIZE = 64;

export interface RngDeviceOptions {
  /** Entropy source; default `crypto.randomFillSync`. Tests may inject a deterministic one. */
  fill?: (buf: Uint8Array) => void;
}

export interface RngDeviceStats {
  /** Chains completed. */
  requests: number;
  /** Random bytes delivered. */
  bytes: number;
  /** Sessions started (DRIVER_OK) so far. */
  sessions: number;
  /** Reason the last session ended, if any. */
  lastEnd: SessionEndReason | null;
}

/** Scratch for one fill: chains larger than this are filled in several rounds. */
const SCRATCH = 16384;

export class RngDevice implements VirtioDeviceOps {
  readonly deviceId = VirtioDeviceId.RNG;
  readonly features = 0n;
  readonly configSize = RNG_CONFIG_SIZE;
  readonly configFields = [];
  readonly stats: RngDeviceStats = { requests: 0, bytes: 0, sessions: 0, lastEnd: null };
  private readonly fill: (buf: Uint8Array) => void;
  private readonly scratch = new Uint8Array(SCRATCH);
  private queue: DeviceQueueHandle | null = null;

  constructor(opts: RngDeviceOptions = {}) {
    this.fill = opts.fill ?? ((b) => randomFillSync(b));
  }

  queueCount(): number {
    return RNG_QUEUE_COUNT;
  }

  queueMaxSize(): number {
    return RNG_QUEUE_SIZE;
  }

  initConfig(): void {
    // No config space.
  }

  activate(session: DeviceSession): void {
    this.stats.sessions++;
    const q = session.queues[RNG_REQUESTQ];
    if (q === undefined) return; // the driver did not enable the queue: nothing to serve
    this.queue = q;
    q.onAvailable = () => this.serve(q);
    this.serve(q); // buffers posted before DRIVER_OK
  }

  deactivate(reason: SessionEndReason): void {
    // Chains still held would be completed by nobody; the rng holds none between callbacks.
    this.stats.lastEnd = reason;
    this.queue = null;
  }

  /** Fill every available chain; one flush (one notification at most) per wake-up. */
  private serve(q: DeviceQueueHandle): void {
    let served = 0;
    for (let c = q.pop(); c !== null; c = q.pop()) {
      let written = 0;
      while (written < c.writableLength) {
        const n = Math.min(SCRATCH, c.writableLength - written);
        const chunk = n === SCRATCH ? this.scratch : this.scratch.subarray(0, n);
        this.fill(chunk);
        written += c.write(chunk, written);
      }
      q.push(c, written); // a chain without writable buffers is returned with 0 bytes
      this.stats.requests++;
      this.stats.bytes += written;
      served++;
    }
    if (served > 0) q.flush();
  }
}

/** A fresh virtio-rng device ops table. */
export function createRngDevice(opts: RngDeviceOptions = {}): RngDevice {
  return new RngDevice(opts);
}
