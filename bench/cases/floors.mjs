// The machine's floors, measured in the same run as vshm (issue 12 item 1). C parts from
// bench/native/floor.c (built by native.mjs), Node parts here.
//   floors.mjs spin ROUNDS      spin_floor_rtt: C busy-wait ping-pong of one cache line between
//                               two processes; pinned to CPUs 0/1 under VSHM_BENCH_PIN=1, like rtt64
//   floors.mjs ring ROUNDS      ring_floor_rtt: rtt64's round trip on a split virtqueue in C (the
//                               same ring shape, placement and echo, nothing else); pinned to
//                               CPUs 0/1 under VSHM_BENCH_PIN=1, like rtt64
//   floors.mjs eventfd ROUNDS   eventfd_floor_rtt: C ping-pong over two eventfds, blocking read(),
//                               unpinned like rtt64_nospin (what it is compared with)
//   floors.mjs memcpy SECONDS   memcpy_floor: GB/s of 64 KiB copies from one source into 64
//                               rotating destinations (4 MiB: the bulk64k ring's working set), C
//                               memcpy (`gbps`) and Node Buffer.copy / TypedArray.set
//   floors.mjs pipe SECONDS     shm_copy_floor: GB/s of bulk64k's data path in C with no ring
//                               code — one process copies 64 KiB pieces into 64 shared slots,
//                               another copies each out; pinned to CPUs 0/1 under VSHM_BENCH_PIN=1
import { execFileSync } from 'node:child_process';
import { floorBinary } from '../native.mjs';
import { hasTaskset, report, round } from '../lib.mjs';

const [mode, arg] = process.argv.slice(2);
const bin = floorBinary();
const runC = (args) => JSON.parse(execFileSync(bin, args.map(String), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop());

if (mode === 'spin' || mode === 'ring' || mode === 'eventfd') {
  const pinned = process.env.VSHM_BENCH_PIN === '1' && hasTaskset();
  const r = runC([mode, Number(arg), ...(pinned ? [0, 1] : [])]);
  report({ ...r, pinned });
} else if (mode === 'pipe') {
  const pinned = process.env.VSHM_BENCH_PIN === '1' && hasTaskset();
  const r = runC(['pipe', Number(arg), ...(pinned ? [0, 1] : [])]);
  report({ ...r, pinned });
} else if (mode === 'memcpy') {
  const seconds = Number(arg);
  const c = runC(['memcpy', seconds]);
  const COPY = 64 * 1024;
  const SLOTS = 64;
  const src = Buffer.alloc(COPY, 0x5a);
  const dst = Buffer.alloc(COPY * SLOTS);
  const srcU8 = new Uint8Array(src.buffer, src.byteOffset, COPY);
  const dstU8 = new Uint8Array(dst.buffer, dst.byteOffset, dst.length);
  // Median of 7 slices, as the C part does.
  const rate = (copyOne) => {
    const slices = [];
    for (let k = 0; k < 7; k++) {
      let n = 0;
      const t0 = performance.now();
      let t1;
      do {
        for (let j = 0; j < 256; j++, n++) copyOne((n % SLOTS) * COPY);
        t1 = performance.now();
      } while (t1 - t0 < (seconds * 1000) / 7);
      slices.push((n * COPY) / ((t1 - t0) / 1000) / 1e9);
    }
    slices.sort((a, b) => a - b);
    return round(slices[3]);
  };
  const bufferCopy = rate((off) => src.copy(dst, off));
  const typedArraySet = rate((off) => dstU8.set(srcU8, off));
  report({ gbps: c.gbps, c_memcpy_gbps: c.gbps, buffer_copy_gbps: bufferCopy, typedarray_set_gbps: typedArraySet, copy_bytes: COPY, slots: SLOTS });
} else {
  process.stderr.write(`floors.mjs: unknown mode '${mode}'\n`);
  process.exit(2);
}
