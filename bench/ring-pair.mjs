// The in-process queue pair of the profiling helpers (perf-ring.mjs, perf-ring-rx.mjs): the
// transport's FrontendQueue (allocator, copies, engine add/collect, completions) and the engine's
// DeviceQueue (pop with §6.3 validation, push, publish) over one plain ArrayBuffer, no ivshmem,
// no second process. Internals (not public API), straight from a transport build's output:
// PERF_TRANSPORT=/other/tree/packages/transport/dist loads another build (A/B).
const dist = process.env.PERF_TRANSPORT ?? new URL('../packages/transport/dist', import.meta.url).pathname;
const t = {
  ...(await import(`${dist}/ring/index.js`)),
  ...(await import(`${dist}/virtio/frontend-queues.js`)),
  ...(await import(`${dist}/virtio/allocator.js`)),
};

/**
 * A driver queue `fq` and a device queue `dq` of `qsize` entries on `memBytes` of memory (§5.1
 * allocator, 4 KiB chunks). `stats.kicks` counts the driver's kicks.
 */
export function ringPair({ qsize, memBytes, eventIdx }) {
  const mem = new t.MemoryView(new ArrayBuffer(memBytes));
  const layout = { rwSize: memBytes, outputSectionSize: 0, windowOutputOffset: () => 0 };
  const alloc = new t.SharedMemoryAllocator(layout, mem.u8, 0, 1, 4096);
  const stats = { kicks: 0 };
  const fq = new t.FrontendQueue({
    index: 0, size: qsize, memory: mem, allocator: alloc, eventIdx, deviceVector: 0, driverVector: 1,
    kick: () => stats.kicks++, broken: (e) => { throw e; },
  });
  fq.live = true;
  const policy = t.createAccessPolicy({ rwSize: memBytes, outputSectionSize: 0, maxPeers: 2, ownPeer: 1, enforceIsolation: false });
  const R = fq.rings;
  const dq = new t.DeviceQueue({ size: qsize, desc: R.desc, avail: R.avail, used: R.used, memory: mem, policy, eventIdx, indirect: false });
  return { fq, dq, stats };
}
