// Profiling helper for the console paths (not a bench case; `npm run bench` does not run it):
// the console_stream set-up with knobs for A/B work.
//   node bench/perf-console.mjs MIB [tx|rx]
// env: PERF_SINK=plain|socketlike (socketlike: the BE port attaches with reuseOutputBuffers,
// as for a socket/pipe/TTY output), VSHM_BENCH_PROF=DIR (cpu profiles), VSHM_BENCH_CONSOLE_QUEUE,
// VSHM_BENCH_CONSOLE_PIECE. Prints one JSON line: {gbps, cpu_s_per_gb, ...}.
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ConsoleDevice } from '@vshm/backend-console';
import { report, round } from './lib.mjs';
import { openBackend, openFrontend, procCpuSeconds, spawnChild, startServer } from './virtio-rig.mjs';

const SELF = fileURLToPath(import.meta.url);
const { ConsoleDriver } = await import(new URL('../packages/frontend-console/dist/driver.js', import.meta.url).href);
const CONSOLE_ID = 3;
const QUEUE_SIZE = Number(process.env.VSHM_BENCH_CONSOLE_QUEUE ?? 64);
const PIECE = Number(process.env.VSHM_BENCH_CONSOLE_PIECE ?? 65536);
const CHUNK = 64 * 1024;
const role = process.argv[2];

/**
 * Count this side's doorbells (kicks from the FE, interrupts raised by the BE) and the interrupts
 * delivered to it; `counters()` gives them with the spin counters, for the 'stats' line.
 */
function countNotifications(peer, transport) {
  // inflight: requests in flight on each queue (0 rx, 1 tx) when a wake-up arrives, summed.
  const c = { doorbells: 0, wakeups: 0, inflight: [0, 0] };
  const queues = () => transport.session?.queues ?? [];
  const ring = peer.doorbell.bind(peer);
  peer.doorbell = (t, v) => {
    c.doorbells++;
    ring(t, v);
  };
  const sink = peer.onInterrupt;
  if (sink !== null) {
    peer.onInterrupt = (v) => {
      c.wakeups++;
      const q = queues();
      for (let i = 0; i < 2; i++) c.inflight[i] += q[i]?.inFlight ?? 0;
      sink(v);
    };
  }
  return () => ({ ...c, spin: transport.spinStats ? { ...transport.spinStats } : null });
}

if (role === '--be') {
  const [, , , socketPath, totalS, dir] = process.argv;
  const total = Number(totalS);
  const device = new ConsoleDevice({ queueSize: QUEUE_SIZE, ...(process.env.PERF_BUFFER_LIMIT ? { bufferLimit: Number(process.env.PERF_BUFFER_LIMIT) } : {}) });
  if (dir === 'tx') {
    let got = 0;
    const sink = new Writable({
      highWaterMark: 1 << 20,
      write(chunk, _enc, cb) {
        got += chunk.length;
        if (got >= total) process.stdout.write(`done ${process.hrtime.bigint()} ${got}\n`);
        cb();
      },
    });
    device.port(0).attach(null, sink, process.env.PERF_SINK === 'socketlike' ? { reuseOutputBuffers: true } : {});
  } else {
    // As in cases/console.mjs: the source starts once the front-end is live (SIGUSR1), so that
    // neither its start-up nor its CPU counts.
    process.on('SIGUSR1', () => {
      const chunk = Buffer.alloc(CHUNK, 0x5a);
      let sent = 0;
      const src = new Readable({
        highWaterMark: 1 << 20,
        read() {
          while (sent < total) {
            sent += CHUNK;
            if (!this.push(chunk)) return;
          }
          this.push(null);
        },
      });
      process.stdout.write(`start ${process.hrtime.bigint()}\n`);
      device.port(0).attach(src, null);
    });
  }
  const { peer, be } = await openBackend(socketPath, device);
  const counters = countNotifications(peer, be);
  process.on('SIGUSR2', () => process.stdout.write(`stats ${JSON.stringify(counters())}\n`));
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
} else if (role === '--fe') {
  const [, , , socketPath, totalS, dir] = process.argv;
  const total = Number(totalS);
  const driver = new ConsoleDriver({ txPieceSize: PIECE, maxPorts: 1, ...(process.env.PERF_HWM ? { highWaterMark: Number(process.env.PERF_HWM) } : {}) });
  const { peer, fe } = await openFrontend(socketPath, driver);
  const counters = countNotifications(peer, fe);
  process.on('SIGUSR2', () => process.stdout.write(`stats ${JSON.stringify(counters())}\n`));
  const port = driver.consolePort;
  if (dir === 'tx') {
    port.resume();
    const chunk = Buffer.alloc(CHUNK, 0x5a);
    let sent = 0;
    process.stdout.write(`start ${process.hrtime.bigint()}\n`);
    const pump = () => {
      while (sent < total) {
        sent += CHUNK;
        if (!port.write(chunk)) return port.once('drain', pump);
      }
    };
    pump();
  } else {
    let got = 0;
    port.on('data', (d) => {
      got += d.length;
      if (got >= total) process.stdout.write(`done ${process.hrtime.bigint()} ${got}\n`);
    });
    process.stdout.write('ready\n');
  }
  process.on('SIGTERM', () => process.exit(0));
} else {
  const mib = Number(role ?? 256);
  const dir = process.argv[3] ?? 'tx';
  const total = mib * 1024 * 1024;
  const srv = await startServer({ deviceId: CONSOLE_ID, vectors: 3 });
  const be = spawnChild(SELF, ['--be', srv.socketPath, String(total), dir], {}, 1);
  let fe = null;
  try {
    await be.next('ready');
    fe = spawnChild(SELF, ['--fe', srv.socketPath, String(total), dir], {}, 0);
    const cpu = () => procCpuSeconds(fe.pid) + procCpuSeconds(be.pid);
    const minflt = (pid) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[7]);
    const [src, dst] = dir === 'tx' ? [fe, be] : [be, fe];
    if (dir === 'rx') {
      await fe.next('ready');
      be.child.kill('SIGUSR1');
    }
    const t0 = BigInt(await src.next('start'));
    const c0 = cpu();
    const split0 = [procCpuSeconds(fe.pid), procCpuSeconds(be.pid)];
    const f0 = [minflt(fe.pid), minflt(be.pid)];
    const [t1, got] = (await dst.next('done')).split(' ').map(BigInt);
    const used = cpu() - c0;
    const gb = Number(got) / 1e9;
    const split = { fe: round((procCpuSeconds(fe.pid) - split0[0]) / gb), be: round((procCpuSeconds(be.pid) - split0[1]) / gb) };
    const faults = { fe: minflt(fe.pid) - f0[0], be: minflt(be.pid) - f0[1] };
    const s = Number(t1 - t0) / 1e9;
    fe.child.kill('SIGUSR2');
    be.child.kill('SIGUSR2');
    const [fs, bs] = (await Promise.all([fe.next('stats'), be.next('stats')])).map((l) => JSON.parse(l));
    const mib = Number(got) / (1 << 20);
    const per = (n) => round(n / mib);
    const notify = {
      kicks_per_mib: per(fs.doorbells),
      irqs_per_mib: per(bs.doorbells),
      fe_wakeups_per_mib: per(fs.wakeups),
      be_wakeups_per_mib: per(bs.wakeups),
      fe_inflight_at_wakeup: fs.wakeups > 0 ? { rx: round(fs.inflight[0] / fs.wakeups, 1), tx: round(fs.inflight[1] / fs.wakeups, 1) } : null,
      fe_spin: fs.spin,
      be_spin: bs.spin,
    };
    report({ gbps: round(Number(got) / s / 1e9), cpu_s_per_gb: round(used / (Number(got) / 1e9)), cpu_split: split, bytes: Number(got), seconds: round(s), dir, faults, sink: process.env.PERF_SINK ?? 'plain', notify });
  } finally {
    fe?.kill();
    be.kill();
    await Promise.all([fe?.exited, be.exited]);
    await srv.stop();
  }
}
