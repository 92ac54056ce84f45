/**
 * Ordered accessors of the §4.2 header as the front-end uses them. Every ordered access goes
 * through `Atomics` on a view of the window (spec conventions): loads are acquire, stores
 * release, `fence()` a full fence. The header is at window offset 0 (start of the R/W section).
 *
 * The FE only reads BE-written fields here; it writes header fields exclusively through
 * transactions (§4.3, frontend-transactions.ts) — except the two event bytes, which it clears
 * (§4.9) — and never writes config directly.
 */
import { endianness } from 'node:os';
import { TransportError } from '../errors.js';
import {
  HDR_CONFIG,
  HDR_CONFIG_EVENT,
  HDR_CONFIG_GENERATION,
  HDR_QUEUE_EVENT,
  HDR_WRITE_TRANSACTION,
} from './header.js';

if (endianness() !== 'LE') {
  throw new TransportError('VSHM_ERR_ENDIAN', '4.2', 'vshm needs a little-endian host (header fields are little-endian)');
}

/** Private word only used to issue full fences (a seq-cst RMW orders everything around it). */
const fenceWord = new Int32Array(1);

/** Full fence (spec conventions). */
export function fence(): void {
  Atomics.add(fenceWord, 0, 0);
}

export type FieldWidth = 1 | 2 | 4 | 8;

/** Atomic little-endian accessors over the R/W section of the window. */
export class FrontendHeader {
  /** Bytes addressable through this view: the R/W section. */
  readonly limit: number;
  readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly u64: BigUint64Array;
  private readonly dv: DataView;

  constructor(window: ArrayBuffer, rwSize: number) {
    this.limit = rwSize;
    this.u8 = new Uint8Array(window, 0, rwSize);
    this.u16 = new Uint16Array(window, 0, rwSize >>> 1);
    this.u32 = new Uint32Array(window, 0, rwSize >>> 2);
    this.u64 = new BigUint64Array(window, 0, rwSize >>> 3);
    this.dv = new DataView(window, 0, rwSize);
  }

  /** Acquire load of a naturally aligned field (8-byte fields as bigint elsewhere: load64). */
  load(off: number, width: 1 | 2 | 4): number {
    if (off % width !== 0) {
      // Unaligned config field: no atomic exists; order it with fences around a plain read.
      fence();
      const v = width === 1 ? this.dv.getUint8(off) : width === 2 ? this.dv.getUint16(off, true) : this.dv.getUint32(off, true);
      fence();
      return v;
    }
    if (width === 1) return Atomics.load(this.u8, off);
    if (width === 2) return Atomics.load(this.u16, off >>> 1);
    return Atomics.load(this.u32, off >>> 2);
  }

  load64(off: number): bigint {
    return Atomics.load(this.u64, off >>> 3);
  }

  /** Release store of a field at its natural width. */
  store(off: number, width: FieldWidth, value: number | bigint): void {
    if (width === 8) {
      Atomics.store(this.u64, off >>> 3, BigInt.asUintN(64, BigInt(value)));
      return;
    }
    const v = Number(value);
    if (off % width !== 0) {
      fence();
      if (width === 1) this.dv.setUint8(off, v);
      else if (width === 2) this.dv.setUint16(off, v, true);
      else this.dv.setUint32(off, v, true);
      fence();
      return;
    }
    if (width === 1) Atomics.store(this.u8, off, v);
    else if (width === 2) Atomics.store(this.u16, off >>> 1, v);
    else Atomics.store(this.u32, off >>> 2, v);
  }

  get writeTransaction(): number {
    return Atomics.load(this.u32, HDR_WRITE_TRANSACTION >>> 2);
  }

  set writeTransaction(off: number) {
    Atomics.store(this.u32, HDR_WRITE_TRANSACTION >>> 2, off);
  }

  get configGeneration(): number {
    return Atomics.load(this.u32, HDR_CONFIG_GENERATION >>> 2);
  }

  /** `config_event` bit 0 (§4.9). */
  get configEvent(): boolean {
    return (Atomics.load(this.u8, HDR_CONFIG_EVENT) & 1) !== 0;
  }

  /** `queue_event` bit 0 (§4.9). */
  get queueEvent(): boolean {
    return (Atomics.load(this.u8, HDR_QUEUE_EVENT) & 1) !== 0;
  }

  /** Store 0 into `config_event`, then a full fence (§4.9). */
  clearConfigEvent(): void {
    Atomics.store(this.u8, HDR_CONFIG_EVENT, 0);
    fence();
  }

  /** Store 0 into `queue_event`, then a full fence (§4.9). */
  clearQueueEvent(): void {
    Atomics.store(this.u8, HDR_QUEUE_EVENT, 0);
    fence();
  }

  /** Config field at config offset `off` (no generation check; see readConfigStable). */
  loadConfig(off: number, width: 1 | 2 | 4): number {
    return this.load(HDR_CONFIG + off, width);
  }
}
