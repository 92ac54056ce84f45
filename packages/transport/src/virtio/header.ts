/**
 * The virtio-over-ivshmem header at offset 0 of the R/W section (spec §4.2): the one file that
 * owns its wire format. Offsets, the ordered accessors both sides share ({@link HeaderView}), and
 * each side's view of it: {@link BackendHeader} (writer of the BE-owned fields, the queue window
 * and the events) and {@link FrontendHeader} (reader, transaction writer, event clearer).
 * test/virtio/header.test.ts pins every offset.
 */
import { TransportError } from '../errors.js';
// fullFence also has a side effect: memory.js refuses a big-endian host before any view is built.
import { fullFence } from '../ring/memory.js';

/** `revision` u32 — written by the BE: 1. An FE refuses 0 and treats ≥ 1 as this layout. */
export const HDR_REVISION = 0x00;
/** `size` u32 — BE: 0x4C + config length rounded up to 8. */
export const HDR_SIZE = 0x04;
/** `write_transaction` u32 — FE sets to the written offset, BE clears to 0 (§4.3). */
export const HDR_WRITE_TRANSACTION = 0x08;
/** `device_features` u32 — BE: 32-bit window selected by `device_features_sel`. */
export const HDR_DEVICE_FEATURES = 0x0c;
/** `device_features_sel` u32 — txn: 0 bits 0–31, 1 bits 32–63. */
export const HDR_DEVICE_FEATURES_SEL = 0x10;
/** `driver_features` u32 — txn: window per `driver_features_sel`. */
export const HDR_DRIVER_FEATURES = 0x14;
/** `driver_features_sel` u32 — txn. */
export const HDR_DRIVER_FEATURES_SEL = 0x18;
/** `queue_sel` u32 — txn: selects the queue shown at 0x20–0x3F. */
export const HDR_QUEUE_SEL = 0x1c;
/** `queue_size` u16 — BE on select (offered max), txn (actual). 0 = absent. */
export const HDR_QUEUE_SIZE = 0x20;
/** `queue_device_vector` u16 — BE: the vector the FE rings to kick this queue. */
export const HDR_QUEUE_DEVICE_VECTOR = 0x22;
/** `queue_driver_vector` u16 — txn: the vector the BE rings for used buffers. */
export const HDR_QUEUE_DRIVER_VECTOR = 0x24;
/** `queue_enable` u16 — txn; BE on select. Linux writes it as 4 bytes (clobbering 0x28–0x29). */
export const HDR_QUEUE_ENABLE = 0x26;
/** `queue_desc` u64 — txn: descriptor table address (window offset, §4.7). */
export const HDR_QUEUE_DESC = 0x28;
/** `queue_driver` u64 — txn: available ring address. */
export const HDR_QUEUE_DRIVER = 0x30;
/** `queue_device` u64 — txn: used ring address. */
export const HDR_QUEUE_DEVICE = 0x38;
/** `config_event` u8 — BE sets bit 0, FE clears. */
export const HDR_CONFIG_EVENT = 0x40;
/** `queue_event` u8 — BE sets bit 0, FE clears. */
export const HDR_QUEUE_EVENT = 0x41;
/** reserved u16, 0. */
export const HDR_RESERVED = 0x42;
/** `device_status` u32 — txn (BE rules §4.5). */
export const HDR_DEVICE_STATUS = 0x44;
/** `config_generation` u32 — BE: odd while updating (§4.8). */
export const HDR_CONFIG_GENERATION = 0x48;
/** Start of the device configuration space. */
export const HDR_CONFIG = 0x4c;

/** Header revision this implementation writes (§4.2). */
export const HEADER_REVISION = 1;
/** Size of the header without config. */
export const HEADER_BASE_SIZE = HDR_CONFIG;

/** The honest `size` the BE publishes for a config space of `configSize` bytes (§4.2). */
export function headerSize(configSize: number): number {
  return (HEADER_BASE_SIZE + configSize + 7) & ~7;
}

/**
 * Ordered access to the header at window offset 0 (the start of the R/W section, §4.2), shared by
 * both sides: every access the spec orders goes through `Atomics` on a view of the window (spec
 * Conventions), so loads are acquire and stores release; the full fence is memory.ts `fullFence`.
 * Side-specific logic lives in the subclasses below: BackendHeader (identity, queue window,
 * events) and FrontendHeader (width-dispatched access for transactions, event clearing).
 * Offsets must be naturally aligned for their width; the 64-bit accessors use `bigint` because
 * the header's u64 fields are guest addresses (never on the per-message path).
 */
export class HeaderView {
  /** Bytes addressable through this view (BE: the header with config; FE: the R/W section). */
  readonly limit: number;
  readonly u8: Uint8Array;
  protected readonly u16: Uint16Array;
  protected readonly u32: Uint32Array;
  protected readonly u64: BigUint64Array;

  constructor(window: ArrayBuffer, limit: number) {
    if (window.byteLength < limit) {
      throw new TransportError('VSHM_ERR_HEADER_SIZE', '4.2', `R/W window of ${window.byteLength} bytes cannot hold a ${limit}-byte header`);
    }
    this.limit = limit;
    this.u8 = new Uint8Array(window, 0, limit);
    // Division, not `>>>`: a limit of 2^32 bytes would wrap to empty word views.
    this.u16 = new Uint16Array(window, 0, Math.floor(limit / 2));
    this.u32 = new Uint32Array(window, 0, Math.floor(limit / 4));
    this.u64 = new BigUint64Array(window, 0, Math.floor(limit / 8));
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
}

// ------------------------------------------------------------------------------------------
// The back-end's side
// ------------------------------------------------------------------------------------------

/** Largest u64 address the BE turns into a `number` (spec conventions: range-check below 2^53). */
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** Window offsets: `number` below 2^53, or -1 (never a valid offset, fails every region check). */
export function addressToNumber(addr: bigint): number {
  return addr <= MAX_SAFE_BIG ? Number(addr) : -1;
}

/**
 * The §4.2 header as the back-end uses it: the BE-owned fields (identity, device features,
 * status), the queue window it loads on `queue_sel` (§4.3), the event bytes it raises (§4.9) and
 * the config bytes (§4.8).
 */
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

  /**
   * Zero the whole header (§4.10 step 3). Ordinary stores: the FE does not read it before READY.
   * `inPlace`: for a back-end that stays READY while it re-initialises (a front-end may be
   * probing): `revision` and `size`, which it then rewrites with the same values, and
   * `write_transaction` (the caller fences, then completes it) are left as they are.
   */
  zero(inPlace = false): void {
    this.u8.fill(0, inPlace ? HDR_DEVICE_FEATURES : 0);
  }

  /** Write the BE-owned identity fields (§4.2). Also used to restore them after a stray write. */
  writeIdentity(generation: number): void {
    this.store32(HDR_REVISION, HEADER_REVISION);
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

// ------------------------------------------------------------------------------------------
// The front-end's side
// ------------------------------------------------------------------------------------------

/** Width of a header field a transaction writes (§4.3): 8 for the u64 ring addresses. */
export type FieldWidth = 1 | 2 | 4 | 8;

/**
 * The §4.2 header as the front-end uses it: width-dispatched access for the transaction writer
 * and config reads (including unaligned config fields), `write_transaction`, and the event bytes
 * it clears (§4.9). The FE only reads BE-written fields; it writes header fields exclusively
 * through transactions (§4.3, frontend-transactions.ts) — except the two event bytes, which it
 * clears (§4.9) — and never writes config directly.
 */
export class FrontendHeader extends HeaderView {
  private readonly dv: DataView;

  constructor(window: ArrayBuffer, rwSize: number) {
    super(window, rwSize);
    this.dv = new DataView(window, 0, rwSize);
  }

  /** Acquire load of a field (8-byte fields as bigint: load64). */
  load(off: number, width: 1 | 2 | 4): number {
    if (off % width !== 0) {
      // Unaligned config field: no atomic exists; order it with fences around a plain read.
      fullFence();
      const v = width === 1 ? this.dv.getUint8(off) : width === 2 ? this.dv.getUint16(off, true) : this.dv.getUint32(off, true);
      fullFence();
      return v;
    }
    if (width === 1) return this.load8(off);
    if (width === 2) return this.load16(off);
    return this.load32(off);
  }

  /** Release store of a field at its natural width. */
  store(off: number, width: FieldWidth, value: number | bigint): void {
    if (width === 8) {
      this.store64(off, BigInt.asUintN(64, BigInt(value)));
      return;
    }
    const v = Number(value);
    if (off % width !== 0) {
      fullFence();
      if (width === 1) this.dv.setUint8(off, v);
      else if (width === 2) this.dv.setUint16(off, v, true);
      else this.dv.setUint32(off, v, true);
      fullFence();
      return;
    }
    if (width === 1) this.store8(off, v);
    else if (width === 2) this.store16(off, v);
    else this.store32(off, v);
  }

  get writeTransaction(): number {
    return this.load32(HDR_WRITE_TRANSACTION);
  }

  set writeTransaction(off: number) {
    this.store32(HDR_WRITE_TRANSACTION, off);
  }

  get configGeneration(): number {
    return this.load32(HDR_CONFIG_GENERATION);
  }

  /** `config_event` bit 0 (§4.9). */
  get configEvent(): boolean {
    return (this.load8(HDR_CONFIG_EVENT) & 1) !== 0;
  }

  /** `queue_event` bit 0 (§4.9). */
  get queueEvent(): boolean {
    return (this.load8(HDR_QUEUE_EVENT) & 1) !== 0;
  }

  /** Store 0 into `config_event`, then a full fence (§4.9). */
  clearConfigEvent(): void {
    this.store8(HDR_CONFIG_EVENT, 0);
    fullFence();
  }

  /** Store 0 into `queue_event`, then a full fence (§4.9). */
  clearQueueEvent(): void {
    this.store8(HDR_QUEUE_EVENT, 0);
    fullFence();
  }

  /** Config field at config offset `off` (no generation check: GenerationConfigReader in frontend-session.ts adds the §4.8 one). */
  loadConfig(off: number, width: 1 | 2 | 4): number {
    return this.load(HDR_CONFIG + off, width);
  }
}

/**
 * FE, §4.2: refuse `revision` 0, treat ≥ 1 as this layout, refuse `size` < 0x4C or > RW.
 * Returns the published `size`.
 */
export function validateHeader(h: FrontendHeader, rwSize: number): number {
  if (rwSize < HDR_CONFIG) {
    throw new TransportError('VSHM_ERR_HEADER', '4.2', `R/W section of ${rwSize} bytes cannot hold the header`);
  }
  const revision = h.load(HDR_REVISION, 4);
  if (revision === 0) throw new TransportError('VSHM_ERR_HEADER', '4.2', 'header revision 0 refused');
  const size = h.load(HDR_SIZE, 4);
  if (size < HDR_CONFIG || size > rwSize) {
    throw new TransportError('VSHM_ERR_HEADER', '4.2', `header size ${size} outside [0x4C, ${rwSize}]`);
  }
  return size;
}
