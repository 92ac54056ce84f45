/**
 * The mappings of one peer (spec §2), with the required protections:
 *
 * - page 0 twice: a READ-ONLY view that transport and application code get (`stateTable`), and a
 *   private read/write view that only the device model's State write uses;
 * - [4096, S) once, read/write (the `window`), then the output sections of every OTHER peer
 *   mprotect()ed read-only. A forbidden write therefore faults (SIGSEGV) in the writer; nothing
 *   here catches that (§2: faults MUST NOT be caught and ignored).
 *
 * Nothing is mapped past the fstat size S. If a section boundary is not page-aligned the layout
 * is refused unless the application accepts reduced protection; then only pages lying entirely
 * inside a foreign output section become read-only (a shared page gets the union, read/write).
 */
import type { Binding } from '@vshm/addon';
import { LayoutError } from '../errors.js';
import { STATE_TABLE_SIZE, type SharedMemoryLayout } from './layout.js';

export interface PeerMapping {
  /** Read-only view of the state table (u32 per peer); a store through it faults. */
  readonly stateTable: Uint32Array;
  /** Writable view of the same page; only the own entry is ever written, by setState(). */
  readonly privateTable: Uint32Array;
  /** [4096, S): R/W section and output sections. */
  readonly window: ArrayBuffer;
  /** Whether every section got its exact protection (false: reduced protection was accepted). */
  readonly fullProtection: boolean;
  /** munmap everything (detaches the views). Idempotent. */
  unmap(): void;
}

export function mapRegion(
  binding: Binding,
  fd: number,
  layout: SharedMemoryLayout,
  ownId: number,
  acceptReducedProtection: boolean,
): PeerMapping {
  const page = binding.PAGE_SIZE;
  // The window starts at file offset 4096, which mmap() needs page-aligned.
  const aligned = STATE_TABLE_SIZE % page === 0 && layout.isPageAligned(page);
  if (!aligned && (!acceptReducedProtection || STATE_TABLE_SIZE % page !== 0)) {
    // TODO(§2): with pages > 4 KiB the window would have to be mapped from offset 0; not needed
    // on x86-64/arm64-4K hosts, so such hosts are refused rather than half-supported.
    throw new LayoutError(
      'VSHM_ERR_LAYOUT_ALIGN',
      '2',
      `sections (RW ${layout.rwSize}, OUT ${layout.outputSectionSize}, S ${layout.size}) are not aligned to ` +
        `${page}-byte pages; per-section protection impossible (acceptReducedProtection not set)`,
    );
  }
  const maps: ArrayBuffer[] = [];
  const unmap = (): void => {
    for (const m of maps.splice(0)) {
      try {
        binding.munmap(m);
      } catch {
        // Already detached: nothing to release.
      }
    }
  };
  try {
    const ro = binding.mmap(fd, 0, STATE_TABLE_SIZE, binding.PROT_READ);
    maps.push(ro);
    const rw = binding.mmap(fd, 0, STATE_TABLE_SIZE, binding.PROT_READ | binding.PROT_WRITE);
    maps.push(rw);
    // S = 4096 leaves an empty window (RW MAY be 0, §2); mmap() refuses a zero length.
    const window =
      layout.windowSize === 0
        ? new ArrayBuffer(0)
        : binding.mmap(fd, STATE_TABLE_SIZE, layout.windowSize, binding.PROT_READ | binding.PROT_WRITE);
    if (layout.windowSize > 0) maps.push(window);
    const out = layout.outputSectionSize;
    if (out > 0) {
      // Foreign sections are contiguous before and after the own one: two ranges at most.
      const first = layout.windowOutputOffset(0);
      const own = layout.windowOutputOffset(ownId);
      protect(binding, window, first, own, page);
      protect(binding, window, own + out, layout.windowSize, page);
    }
    return {
      stateTable: new Uint32Array(ro),
      privateTable: new Uint32Array(rw),
      window,
      fullProtection: aligned,
      unmap,
    };
  } catch (err) {
    unmap();
    throw err;
  }
}

/** PROT_READ on [start, end) of the window, rounded inwards to whole pages (reduced protection). */
function protect(binding: Binding, window: ArrayBuffer, start: number, end: number, page: number): void {
  const from = Math.ceil(start / page) * page;
  const to = Math.floor(end / page) * page;
  if (to > from) binding.mprotect(window, from, to - from, binding.PROT_READ);
}
