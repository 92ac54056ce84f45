/**
 * Shared-memory layout of an ivshmem v2 region (spec §2).
 *
 *   [0, 4096)                       state table, u32 entry per peer
 *   [4096, 4096 + RW)               R/W section (virtio header at its start)
 *   [4096 + RW + i·OUT, … + OUT)    output section of peer i
 *
 * The *window* is everything after the state table: [4096, S). Virtio addresses (spec §4.7) are
 * byte offsets into the window, so `windowOffset*` values below are what rings and descriptors use.
 */
import { LayoutError } from '../errors.js';

export const STATE_TABLE_SIZE = 4096;
/** Maximum peers a 4096-byte table of u32 entries holds. */
export const MAX_PEERS_LIMIT = 1024;

function layoutError(message: string): LayoutError {
  return new LayoutError('VSHM_ERR_LAYOUT', '2', message);
}

export class SharedMemoryLayout {
  /** Total size S of the memory object (fstat size). */
  readonly size: number;
  readonly maxPeers: number;
  /** OUT: size of each output section. */
  readonly outputSectionSize: number;
  /** RW = S − 4096 − N·OUT. May be 0. */
  readonly rwSize: number;
  /** Absolute offset of the R/W section (always 4096). */
  readonly rwOffset = STATE_TABLE_SIZE;
  /** Size of the window [4096, S) = RW + N·OUT. */
  readonly windowSize: number;

  constructor(size: number, maxPeers: number, outputSectionSize: number) {
    for (const [name, v] of [['size', size], ['maxPeers', maxPeers], ['outputSectionSize', outputSectionSize]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw layoutError(`${name} must be a safe integer ≥ 0, got ${v}`);
    }
    if (maxPeers < 1 || maxPeers > MAX_PEERS_LIMIT) {
      throw layoutError(`maxPeers must be 1…${MAX_PEERS_LIMIT}, got ${maxPeers}`);
    }
    const fixed = STATE_TABLE_SIZE + maxPeers * outputSectionSize; // ≤ 2^10 · 2^53: checked below
    if (!Number.isSafeInteger(fixed) || fixed > size) {
      throw layoutError(
        `memory of ${size} bytes cannot hold the state table and ${maxPeers} output sections of ${outputSectionSize} bytes`,
      );
    }
    this.size = size;
    this.maxPeers = maxPeers;
    this.outputSectionSize = outputSectionSize;
    this.rwSize = size - fixed;
    this.windowSize = size - STATE_TABLE_SIZE;
  }

  /** Absolute offset of output section `peer`. */
  outputOffset(peer: number): number {
    this.checkPeer(peer);
    return STATE_TABLE_SIZE + this.rwSize + peer * this.outputSectionSize;
  }

  /** Window offset (virtio address) of output section `peer`. */
  windowOutputOffset(peer: number): number {
    this.checkPeer(peer);
    return this.rwSize + peer * this.outputSectionSize;
  }

  /** True when every section boundary is a multiple of `pageSize` (needed for per-section protection). */
  isPageAligned(pageSize: number): boolean {
    return this.rwSize % pageSize === 0 && this.outputSectionSize % pageSize === 0 && this.size % pageSize === 0;
  }

  private checkPeer(peer: number): void {
    if (!Number.isInteger(peer) || peer < 0 || peer >= this.maxPeers) {
      throw layoutError(`peer ${peer} out of range 0…${this.maxPeers - 1}`);
    }
  }
}
