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

if (role === '--be') {
  const [, , , socketPath, totalS, dir] = process.argv;
  const total = Number(totalS);
  const device = new ConsoleDevice({ queueSize: QUEUE_SIZE });
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
  }
  await openBackend(socketPath, device);
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
} else if (role === '--fe') {
  const [, , , socketPath, totalS, dir] = process.argv;
  const total = Number(totalS);
  const driver = new ConsoleDriver({ txPieceSize: PIECE, maxPorts: 1, ...(process.env.PERF_HWM ? { highWaterMark: Number(process.env.PERF_HWM) } : {}) });
  await openFrontend(socketPath, driver);
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
    const t0 = BigInt(await src.next('start'));
    const c0 = cpu();
    const f0 = [minflt(fe.pid), minflt(be.pid)];
    const [t1, got] = (await dst.next('done')).split(' ').map(BigInt);
    const used = cpu() - c0;
    const faults = { fe: minflt(fe.pid) - f0[0], be: minflt(be.pid) - f0[1] };
    const s = Number(t1 - t0) / 1e9;
    report({ gbps: round(Number(got) / s / 1e9), cpu_s_per_gb: round(used / (Number(got) / 1e9)), bytes: Number(got), seconds: round(s), dir, faults, sink: process.env.PERF_SINK ?? 'plain' });
  } finally {
    fe?.kill();
    be.kill();
    await Promise.all([fe?.exited, be.exited]);
    await srv.stop();
  }
}
