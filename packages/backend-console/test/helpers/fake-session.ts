/**
 * Test doubles for the device side of the plug-in API: a DeviceSession whose queues are plain
 * arrays of chains the test posts, and whose used entries the test reads back.
 */
import type { ConfigSpace, ConfigWidth, DeviceChain, DeviceQueueHandle, DeviceSession } from '@vshm/transport';

export class FakeChain implements DeviceChain {
  static nextHead = 0;
  readonly head = FakeChain.nextHead++;
  readonly readable: Uint8Array;
  readonly writable: Uint8Array;
  constructor(readable: Uint8Array | string = new Uint8Array(0), writableLength = 0) {
    this.readable = typeof readable === 'string' ? Buffer.from(readable) : readable;
    this.writable = new Uint8Array(writableLength);
  }
  get readableLength(): number { return this.readable.length; }
  get writableLength(): number { return this.writable.length; }
  read(dst: Uint8Array, offset = 0): number {
    const n = Math.max(0, Math.min(dst.length, this.readable.length - offset));
    dst.set(this.readable.subarray(offset, offset + n));
    return n;
  }
  write(src: Uint8Array, offset = 0): number {
    const n = Math.max(0, Math.min(src.length, this.writable.length - offset));
    this.writable.set(src.subarray(0, n), offset);
    return n;
  }
  readableSegments(): readonly Uint8Array[] { return this.readable.length === 0 ? [] : [this.readable]; }
  writableSegments(): readonly Uint8Array[] { return this.writable.length === 0 ? [] : [this.writable]; }
}

export interface UsedEntry { chain: FakeChain; written: number; flushed: boolean }

export class FakeQueue implements DeviceQueueHandle {
  readonly index: number;
  readonly size = 8;
  onAvailable: (() => void) | null = null;
  readonly avail: FakeChain[] = [];
  readonly used: UsedEntry[] = [];
  flushes = 0;
  constructor(index: number) { this.index = index; }
  /** Driver side: post chains and kick. */
  post(...chains: FakeChain[]): void {
    this.avail.push(...chains);
    this.onAvailable?.();
  }
  pop(): DeviceChain | null { return this.avail.shift() ?? null; }
  push(chain: DeviceChain, written: number): void {
    this.used.push({ chain: chain as FakeChain, written, flushed: false });
  }
  flush(): void {
    this.flushes++;
    for (const u of this.used) u.flushed = true;
  }
  /** Text the device wrote into flushed used chains, in order. */
  receivedText(): string {
    return this.used.filter((u) => u.flushed).map((u) => Buffer.from(u.chain.writable.subarray(0, u.written)).toString()).join('');
  }
}

export class FakeConfig implements ConfigSpace {
  readonly size: number;
  readonly bytes: Buffer;
  constructor(size: number) { this.size = size; this.bytes = Buffer.alloc(size); }
  read(offset: number, width: ConfigWidth): number { return this.bytes.readUIntLE(offset, width); }
  write(offset: number, width: ConfigWidth, value: number): void { this.bytes.writeUIntLE(value, offset, width); }
}

export class FakeSession implements DeviceSession {
  readonly features: bigint;
  readonly queues: FakeQueue[];
  readonly config: FakeConfig;
  configEvents = 0;
  generation = 0;
  constructor(features: bigint, queueCount: number, config = new FakeConfig(12)) {
    this.features = features;
    this.queues = Array.from({ length: queueCount }, (_, i) => new FakeQueue(i));
    this.config = config;
  }
  updateConfig(mutate: (config: ConfigSpace) => void): void {
    this.generation += 2;
    mutate(this.config);
    this.configEvents++;
  }
  notifyConfig(): void { this.configEvents++; }
}
