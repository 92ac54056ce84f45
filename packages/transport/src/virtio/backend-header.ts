/**
 * Ordered accessors of the §4.2 header as the back-end uses them. Every access that the spec
 * orders goes through `Atomics` on a view of the window (spec conventions): loads are acquire,
 * stores release, and `fence()` is a full fence. The header sits at window offset 0 (the start of
 * the R/W section, §4.2).
 *
 * Endianness: the header is little-endian on the wire. Typed arrays use the host order, so this
 * module refuses to load on a big-endian host instead of silently misreading every field.
 */
import { endianness } from 'node:os';
import { TransportError } from '../errors.js';
import {
  HDR_CONFIG,
  HDR_CONFIG_EVENT,
  HDR_CONFIG_GENERATION,
  HDR_DEVICE_FEATURES,
  HDR_DEVICE_STATUS,
  HDR_QUEUE_DESC,
  HDR_QUEUE_DEVICE,
  HDR_QUEUE_DEVICE_VECTOR,
  HDR_QUEUE_DRIVER,
  HDR_QUEUE_DRIVER_VECTOR,
  HDR_QUEUE_ENABLE,
  HDR_QUEUE_EVENT,
  HDR_QUEUE_SIZE,
  HDR_REVISION,
  HDR_SIZE,
  HDR_WRITE_TRANSACTION,
} from './header.js';

if (endianness() !== 'LE') {
  throw new TransportError('VSHM_ERR_ENDIAN', '4.2', 'vshm needs a little-endian host (header fields are little-endian)');
}

/** Private word used only to issue full fences: any seq-cst RMW orders all earlier and later accesses. */
const fenceWord = new Int32Array(1);

/** Full fence (spec conventions). */
export function fullFence(): void {
  Atomics.add(fenceWord, 0, 0);
}

/** Largest u64 address the BE turns into a `number` (spec conventions: range-check below 2^53). */
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** Window offsets: `number` below 2^53, or -1 (never a valid offset, fails every region check). */
export function addressToNumber(addr: bigint): number {
  return addr <= MAX_SAFE_BIG ? Number(addr) : -1;
}

export class BackendHeader {
  /** Bytes of the header including config (the honest `size`, §4.2). */
  readonly size: number;
  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly u64: BigUint64Array;
  /** Config bytes, little-endian accessors (§4.8). */
  readonly configView: DataView;

  constructor(window: ArrayBuffer, size: number) {
    if (window.byteLength < size) {
      throw new TransportError('VSHM_ERR_HEADER_SIZE', '4.2', `R/W window of ${window.byteLength} bytes cannot hold a ${size}-byte header`);
    }
    this.size = size;
    this.u8 = new Uint8Array(window, 0, size);
    this.u16 = new Uint16Array(window, 0, size >>> 1);
    this.u32 = new Uint32Array(window, 0, size >>> 2);
    this.u64 = new BigUint64Array(window, 0, size >>> 3);
    this.configView = new DataView(window, HDR_CONFIG, size - HDR_CONFIG);
  }

  /** Acquire-load of `write_transaction`. */
  loadTransaction(): number {
    return Atomics.load(this.u32, HDR_WRITE_TRANSACTION >>> 2);
  }

  /** Release-store `write_transaction` := 0 (the caller fenced first, §4.3). */
  completeTransaction(): void {
    Atomics.store(this.u32, HDR_WRITE_TRANSACTION >>> 2, 0);
  }

  load8(off: number): number {
    return Atomics.load(this.u8, off);
  }
  load16(off: number): number {
    return Atomics.load(this.u16, off >>> 1);
  }
  load32(off: number): number {
    return Atomics.load(this.u32, off >>> 2);
  }
  load64(off: number): bigint {
    return Atomics.load(this.u64, off >>> 3);
  }
  store8(off: number, v: number): void {
    Atomics.store(this.u8, off, v);
  }
  store16(off: number, v: number): void {
    Atomics.store(this.u16, off >>> 1, v);
  }
  store32(off: number, v: number): void {
    Atomics.store(this.u32, off >>> 2, v);
  }
  store64(off: number, v: bigint): void {
    Atomics.store(this.u64, off >>> 3, v);
  }

  /** Zero the whole header (§4.10 step 3). Ordinary stores: the FE does not read it before READY. */
  zero(): void {
    this.u8.fill(0);
  }

  /** Write the BE-owned identity fields (§4.2). Also used to restore them after a stray write. */
  writeIdentity(generation: number): void {
    this.store32(HDR_REVISION, 1);
    this.store32(HDR_SIZE, this.size);
    this.store32(HDR_CONFIG_GENERATION, generation);
  }

  setDeviceFeatures(word: number): void {
    this.store32(HDR_DEVICE_FEATURES, word >>> 0);
  }

  setStatus(status: number): void {
    this.store32(HDR_DEVICE_STATUS, status >>> 0);
  }

  /** The queue window 0x20–0x3F (§4.3 on `queue_sel`). */
  loadQueueWindow(size: number, deviceVector: number, driverVector: number, enable: number, desc: bigint, driver: bigint, device: bigint): void {
    this.store16(HDR_QUEUE_SIZE, size);
    this.store16(HDR_QUEUE_DEVICE_VECTOR, deviceVector);
    this.store16(HDR_QUEUE_DRIVER_VECTOR, driverVector);
    this.store16(HDR_QUEUE_ENABLE, enable);
    this.store64(HDR_QUEUE_DESC, desc);
    this.store64(HDR_QUEUE_DRIVER, driver);
    this.store64(HDR_QUEUE_DEVICE, device);
  }

  /** `config_event` := 1 (the caller fences and rings vector 0, §4.9). */
  raiseConfigEvent(): void {
    this.store8(HDR_CONFIG_EVENT, 1);
  }
  /** `queue_event` := 1 (the caller fences and rings the queue's driver vector, §4.9). */
  raiseQueueEvent(): void {
    this.store8(HDR_QUEUE_EVENT, 1);
  }
  clearEvents(): void {
    this.store8(HDR_CONFIG_EVENT, 0);
    this.store8(HDR_QUEUE_EVENT, 0);
  }
}
