// Profiling helper (not a bench case): the per-buffer CPU cost of the ring path the console's
// receive direction takes, in ONE process (no IPC, wake-ups or second CPU), like perf-ring.mjs
// for one-way messages. The FE posts device-writable buffers (`add(null, B)`), the BE pops each,
// writes B bytes into it (`Chain.write`), pushes and publishes once per pass; the FE's `onUsed`
// copies the bytes out into a private slab and re-posts the buffer in place (`repost()`, as the
// console port does), and kicks once per pass.
//   node bench/perf-ring-rx.mjs [BUFFER_BYTES=4096] [QUEUE=64] [ROUNDS=5]
// Prints CPU ns per buffer (FE + BE work; process CPU time) for each round and the minimum.
// The queue pair: ring-pair.mjs (PERF_TRANSPORT=/other/tree/packages/transport/dist compares
// another build).
import { ringPair } from './ring-pair.mjs';

const [size = 4096, qsize = 64, rounds = 5] = process.argv.slice(2, 5).map(Number);
const memBytes = Math.max(1 << 22, 2 ** Math.ceil(Math.log2(2 * qsize * size)));
const { fq, dq, stats } = ringPair({ qsize, memBytes, eventIdx: false });
const src = new Uint8Array(size).fill(0x61);
const slab = new Uint8Array(1 << 20);
let at = 0;
let done = 0;
fq.onUsed = (_token, data) => {
  if (at + data.length > slab.length) at = 0;
  slab.set(data, at);
  at += data.length;
  done++;
  if (!fq.repost()) throw new Error('repost refused');
};
for (let i = 0; i < qsize; i++) if (!fq.add(null, size, i)) throw new Error(`cannot post buffer ${i}`);
fq.kick();

function run(n) {
  done = 0;
  while (done < n) {
    let c;
    while ((c = dq.pop()) !== null) dq.push(c.head, c.write(src));
    dq.publish();
    fq.poll();
    fq.kick();
  }
}

run(200000); // warm-up: let V8 optimise
const N = 2_000_000;
const out = [];
for (let r = 0; r < rounds; r++) {
  const c0 = process.cpuUsage();
  run(N);
  const c = process.cpuUsage(c0);
  out.push(((c.user + c.system) * 1000) / N);
}
console.log(JSON.stringify({ size, queue: qsize, ns_per_buffer: out.map((x) => Math.round(x)), min: Math.round(Math.min(...out)), kicks: stats.kicks }));
