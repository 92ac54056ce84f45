/**
 * The §4.2 header as the back-end uses it: the BE-owned fields (identity, device features,
 * status), the queue window it loads on `queue_sel` (§4.3), the event bytes it raises (§4.9) and
 * the config bytes (§4.8). Ordered access itself is {@link HeaderView} (header.ts).
 */
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
  HeaderView,
} from './header.js';

// backend.ts takes the (one) full fence from here alongside the header it orders.
export { fullFence } from '../ring/memory.js';

/** Largest u64 address the BE turns into a `number` (spec conventions: range-check below 2^53). */
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** Window offsets: `number` below 2^53, or -1 (never a valid offset, fails every region check). */
export function addressToNumber(addr: bigint): number {
  return addr <= MAX_SAFE_BIG ? Number(addr) : -1;
}

export class BackendHeader extends HeaderView {
  /** Bytes of the header including config (the honest `size`, §4.2). */
  readonly size: number;
  /** Config bytes, little-endian accessors (§4.8). */
  readonly configView: DataView;

  constructor(window: ArrayBuffer, size: number) {
    super(window, size);
    this.size = size;
    this.configView = new DataView(window, HDR_CONFIG, size - HDR_CONFIG);
  }

  /** Acquire-load of `write_transaction`. */
  loadTransaction(): number {
    return this.load32(HDR_WRITE_TRANSACTION);
  }

  /** Release-store `write_transaction` := 0 (the caller fenced first, §4.3). */
  completeTransaction(): void {
    this.store32(HDR_WRITE_TRANSACTION, 0);
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
