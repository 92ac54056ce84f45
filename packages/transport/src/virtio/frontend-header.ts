/**
 * The §4.2 header as the front-end uses it. Ordered access itself is {@link HeaderView}
 * (header.ts); this adds what only the FE needs: width-dispatched access for the transaction
 * writer and config reads (including unaligned config fields), `write_transaction`, and the
 * event bytes it clears (§4.9).
 *
 * The FE only reads BE-written fields here; it writes header fields exclusively through
 * transactions (§4.3, frontend-transactions.ts) — except the two event bytes, which it clears
 * (§4.9) — and never writes config directly.
 */
import {
  HDR_CONFIG,
  HDR_CONFIG_EVENT,
  HDR_CONFIG_GENERATION,
  HDR_QUEUE_EVENT,
  HDR_WRITE_TRANSACTION,
  HeaderView,
} from './header.js';
import { fullFence } from '../ring/memory.js';

export type FieldWidth = 1 | 2 | 4 | 8;

/** Atomic little-endian accessors over the R/W section of the window. */
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

  /** Config field at config offset `off` (no generation check; see readConfigStable). */
  loadConfig(off: number, width: 1 | 2 | 4): number {
    return this.load(HDR_CONFIG + off, width);
  }
}
