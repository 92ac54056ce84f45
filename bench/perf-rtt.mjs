// Profiling helper (not a bench case): the CPU cost of one rtt64 round trip through the product's
// transports in ONE process (the loopback ivshmem pair, the real VirtioBackend and
// VirtioFrontend, the bench's echo device), polled directly as the adaptive spin polls them —
// no wake-ups and no cache-line transfer between CPUs, so it shows the software part of rtt64
// and an A/B of code changes is not drowned by the machine's load.
//   node bench/perf-rtt.mjs [ROUNDS=200000] [REPEATS=5]
// Prints CPU ns per round trip for each repeat and the minimum, and the cost of an empty poll of
// each side (what a spinning side pays per look at the ring).
// The public entry plus two internals (the loopback pair from the test kit, the spin's pollable
// view of a front-end). PERF_TRANSPORT=/other/tree/packages/transport/dist compares another build.
const dist = process.env.PERF_TRANSPORT ?? new URL('../packages/transport/dist', import.meta.url).pathname;
const t = {
  ...(await import(`${dist}/index.js`)),
  ...(await import(`${dist}/testing/index.js`)),
  ...(await import(`${dist}/virtio/spin.js`)),
};
const { echoDeviceOps, echoDriverOps } = await import('./devices/echo.mjs');

const [rounds = 200000, repeats = 5] = process.argv.slice(2).map(Number);
const [beDev, feDev] = t.createLoopbackPair({ size: 1 << 20, vectors: 2, protocol: 0x8000 | 0x3f00 });
const be = new t.VirtioBackend(beDev, echoDeviceOps({ queueSize: 256 }));
const drv = echoDriverOps({ queueSize: 256 });
const fe = new t.VirtioFrontend(feDev, drv.ops);
be.start();
const startP = fe.start();
const session = await drv.ready;
await startP;
const q = session.queues[0];
const msg = new Uint8Array(64).fill(0x61);
let got = 0;
q.onUsed = (_tok, data) => {
  if (data.length !== 64) throw new Error(`echo of ${data.length} bytes`);
  got++;
};
// Doorbells would schedule setImmediate deliveries; the spin suppresses them the same way.
const feP = t.frontendPollable(fe);
be.setNotify(false);
feP.setNotify(false);

function run(n) {
  for (let i = 0; i < n; i++) {
    q.add(msg, 64, 0);
    q.kick();
    while (be.poll() === 0);
    const before = got;
    while (fe.poll() === 0 || got === before);
  }
}
const cpu = () => {
  const c = process.threadCpuUsage ? process.threadCpuUsage() : process.cpuUsage();
  return (c.user + c.system) * 1000;
};
run(20000);
const out = [];
for (let r = 0; r < repeats; r++) {
  const c0 = cpu();
  run(rounds);
  out.push((cpu() - c0) / rounds);
}
const emptyPoll = (p) => {
  const n = 1_000_000;
  const c0 = cpu();
  for (let i = 0; i < n; i++) p();
  return Math.round((cpu() - c0) / n);
};
const pollBe = emptyPoll(() => be.poll());
const pollFe = emptyPoll(() => fe.poll());
console.log(JSON.stringify({ ns_per_rtt: out.map(Math.round), min: Math.round(Math.min(...out)), empty_poll_ns: { be: pollBe, fe: pollFe } }));
be.setNotify(true);
feP.setNotify(true);
await fe.close();
await be.close();
process.exit(0);
