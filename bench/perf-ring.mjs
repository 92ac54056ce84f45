// Profiling helper (not a bench case): the per-message CPU cost of the product's ring path in ONE
// process, without IPC, wake-ups or a second CPU — so an A/B of code changes is not drowned by
// the machine's load. The FE side is the transport's FrontendQueue (allocator, copy in, engine
// add/collect, completion); the BE side is the engine's DeviceQueue (pop with §6.3 validation,
// one copy out through the chain, push, batched publish).
//   node bench/perf-ring.mjs [MSG_BYTES=64] [QUEUE=256] [BATCH=64] [ROUNDS=5] [SINK=views|read]
// Prints CPU ns per message (FE + BE work; process CPU time, so preemption does not count) for
// each round and the minimum (least disturbed).
// The queue pair: ring-pair.mjs (PERF_TRANSPORT=/other/tree/packages/transport/dist compares
// another build).
import { ringPair } from './ring-pair.mjs';

const [size = 64, qsize = 256, batch = 64, rounds = 5] = process.argv.slice(2, 6).map(Number);
const sinkMode = process.argv[6] ?? 'views';
const { fq, dq, stats } = ringPair({ qsize, memBytes: 1 << 20, eventIdx: true });
const msg = new Uint8Array(size).fill(0x61);
const scratch = new Uint8Array(65536);
let done = 0;
fq.onUsed = () => done++;
const sink = sinkMode === 'read'
  ? (c) => c.read(scratch)
  : (c) => {
      let off = 0;
      for (const seg of c.readableSegments()) {
        scratch.set(seg, off);
        off += seg.length;
      }
    };

function run(n) {
  done = 0;
  let posted = 0;
  while (done < n) {
    // FE: fill the ring, kick every `batch` adds.
    let k = 0;
    while (posted < n && fq.add(msg, 0, posted + 1)) {
      posted++;
      if (++k === batch) { fq.kick(); k = 0; }
    }
    fq.kick();
    // BE: pop until empty, copy out, push; publish every size/8 pushes and at the end.
    let c;
    let p = 0;
    while ((c = dq.pop()) !== null) {
      sink(c);
      dq.push(c.head, 0);
      if (++p === qsize >>> 3) { dq.publish(); p = 0; }
    }
    dq.publish();
    // FE: completions.
    fq.poll();
  }
}

run(200000); // warm-up: let V8 optimise
const N = 2_000_000;
const out = [];
for (let r = 0; r < rounds; r++) {
  // CPU time of this thread, not wall time: time spent preempted by other load does not count.
  const c0 = process.threadCpuUsage ? process.threadCpuUsage() : process.cpuUsage();
  run(N);
  const c = process.threadCpuUsage ? process.threadCpuUsage(c0) : process.cpuUsage(c0);
  out.push(((c.user + c.system) * 1000) / N);
}
console.log(JSON.stringify({ size, queue: qsize, batch, sink: sinkMode, ns_per_msg: out.map((x) => Math.round(x)), min: Math.round(Math.min(...out)), kicks: stats.kicks }));
