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
    const rw = mapWritable(binding, fd, 0, STATE_TABLE_SIZE);
    maps.push(rw);
    // S = 4096 leaves an empty window (RW MAY be 0, §2); mmap() refuses a zero length.
    const window =
      layout.windowSize === 0
        ? new ArrayBuffer(0)
        : mapWritable(binding, fd, STATE_TABLE_SIZE, layout.windowSize);
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

/**
 * A shared read/write mapping. A memory fd the server opened read-only makes mmap() fail with
 * EACCES; say so, instead of letting the errno read like a socket permission problem.
 */
function mapWritable(binding: Binding, fd: number, offset: number, length: number): ArrayBuffer {
  try {
    return binding.mmap(fd, offset, length, binding.PROT_READ | binding.PROT_WRITE);
  } catch (err) {
    if ((err as { code?: string }).code !== 'EACCES') throw err;
    throw new LayoutError(
      'VSHM_ERR_MEMORY_READONLY',
      '2',
      'the shared-memory fd from the server is read-only (mmap PROT_WRITE: EACCES); a peer needs it read/write',
      { cause: err },
    );
  }
}

/** How the memory fd is protected against a later resize by whoever else holds it. */
export type MemorySealing = 'sealed' | 'unsealed';

/**
 * Check the memory fd's seals before mapping (§1.1 and docs/decisions.md "Memory fd seals").
 * A mapping over a file that later shrinks faults with SIGBUS on the first access past the new
 * end — a signal no JavaScript can catch — so:
 * - `F_SEAL_SHRINK` present: the size is final (vshm-server's own memfd): 'sealed'.
 * - Seals in use (anything beyond F_SEAL_SEAL) but no `F_SEAL_SHRINK`: the server sealed the
 *   object on purpose and left shrinking open — refused with VSHM_ERR_MEMORY_SEALS.
 * - No seals, or an fd that cannot carry seals (POSIX shm, a hugetlbfs or tmpfs file: the C
 *   server's `-M`/`-m`): 'unsealed'; the caller warns once and goes on, since refusing would
 *   break compatibility with the C server.
 */
export function checkMemorySeals(binding: Binding, fd: number): MemorySealing {
  let seals: number;
  try {
    seals = binding.getSeals(fd);
  } catch {
    return 'unsealed'; // EINVAL: not a sealable object
  }
  if ((seals & binding.F_SEAL_SHRINK) !== 0) return 'sealed';
  if ((seals & ~binding.F_SEAL_SEAL) === 0) return 'unsealed';
  throw new LayoutError(
    'VSHM_ERR_MEMORY_SEALS',
    '1.1',
    `the shared-memory fd is sealed (seals 0x${seals.toString(16)}) but not against shrinking; a shrink would crash every peer with SIGBUS`,
  );
}
