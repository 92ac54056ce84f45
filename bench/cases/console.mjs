// B2 (console): one-way throughput through the console port streams, FE and BE in separate
// processes, 64 KiB chunks.
//   console.mjs tx MIB   console_stream: the front-end port (a Node Duplex, @vshm/frontend-console)
//                        written in 64 KiB chunks → the back-end port (@vshm/backend-console)
//                        attached to a counting Writable
//   console.mjs rx MIB   console_stream_rx: the back-end port's input (a Readable of 64 KiB
//                        chunks) → the front-end port's readable side, counted
// Timing uses process.hrtime (CLOCK_MONOTONIC, comparable across processes): from the sender's
// first write to the receiver's receipt of the last byte. The result also carries the CPU s per
// GB of both processes (and of each), and their minor page faults over the timed part.
// Knobs for A/B work (bench/README.md): VSHM_BENCH_CONSOLE_QUEUE, _PIECE, _RX_BUFFER,
// _BUFFER_LIMIT (BE input buffer), _HWM (FE port highWaterMark), _SINK=socketlike (the BE port
// attaches with reuseOutputBuffers, as for a socket/pipe/TTY output); VSHM_BENCH_DIAG=1 adds
// each side's doorbells, wake-ups, in-flight requests at a wake-up and spin counters per MiB;
// VSHM_BENCH_PROF=DIR profiles both children.
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { autoQueueSize, ConsoleDevice } from '@vshm/backend-console';
import { report, round } from '../lib.mjs';
import { openBackend, openFrontend, procCpuSeconds, spawnChild, startServer } from '../virtio-rig.mjs';

const SELF = fileURLToPath(import.meta.url);
// The driver module directly: the package index also loads open.js, which needs the transport's
// openFrontend (connect.ts) — not every tree state has it; the driver is what is measured.
const { ConsoleDriver } = await import(new URL('../../packages/frontend-console/dist/driver.js', import.meta.url).href);
const CONSOLE_ID = 3;
/**
 * A power of two, or 'auto' (the default since stop 25: the device's own default, which follows
 * the region — 256 on the rig's 32 MiB; what a user of this region gets). Stops before measured
 * at a fixed 64.
 */
const QUEUE_ENV = process.env.VSHM_BENCH_CONSOLE_QUEUE ?? 'auto';
const QUEUE_SIZE = QUEUE_ENV === 'auto' ? 'auto' : Number(QUEUE_ENV);
/** Region size in bytes; unset = the rig's 32 MiB. */
const MEMORY = process.env.VSHM_BENCH_CONSOLE_MEMORY ? Number(process.env.VSHM_BENCH_CONSOLE_MEMORY) : 32 * 1024 * 1024;
const PIECE = Number(process.env.VSHM_BENCH_CONSOLE_PIECE ?? 65536);
/** FE receive buffer size for rx; unset = the driver's default (4 KiB, issue 12 item 3). */
const RX_BUFFER = process.env.VSHM_BENCH_CONSOLE_RX_BUFFER ? Number(process.env.VSHM_BENCH_CONSOLE_RX_BUFFER) : undefined;
const BUFFER_LIMIT = process.env.VSHM_BENCH_CONSOLE_BUFFER_LIMIT ? Number(process.env.VSHM_BENCH_CONSOLE_BUFFER_LIMIT) : undefined;
const HWM = process.env.VSHM_BENCH_CONSOLE_HWM ? Number(process.env.VSHM_BENCH_CONSOLE_HWM) : undefined;
const SOCKETLIKE = process.env.VSHM_BENCH_CONSOLE_SINK === 'socketlike';
const DIAG = process.env.VSHM_BENCH_DIAG === '1';
/**
 * The back-end on interrupts only, as vshm-console-backend runs (`spin: false`);
 * VSHM_BENCH_CONSOLE_BE_SPIN=1 lets it spin like other openBackend users (A/B).
 */
const BE_SPIN = process.env.VSHM_BENCH_CONSOLE_BE_SPIN === '1';
const CHUNK = 64 * 1024;
const role = process.argv[2];

/**
 * VSHM_BENCH_DIAG: count this side's doorbells (kicks from the FE, interrupts raised by the BE)
 * and the interrupts delivered to it, with the queues' in-flight requests at each; printed as a
 * 'stats' line on SIGUSR2, with the spin counters.
 */
function countNotifications(peer, transport) {
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
  process.on('SIGUSR2', () => process.stdout.write(`stats ${JSON.stringify({ ...c, spin: transport.spinStats ? { ...transport.spinStats } : null })}\n`));
}

if (role === '--be') {
  const [, , , socketPath, dir, totalArg] = process.argv;
  const total = Number(totalArg);
  const device = new ConsoleDevice({ queueSize: QUEUE_SIZE, ...(BUFFER_LIMIT !== undefined ? { bufferLimit: BUFFER_LIMIT } : {}) });
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
    device.port(0).attach(null, sink, SOCKETLIKE ? { reuseOutputBuffers: true } : {});
  } else {
    // Without MULTIPORT the device holds input back until the driver shows life (its first
    // transmit buffer) or --settle-ms after DRIVER_OK (docs/decisions.md, "Console (§7)"): a
    // Linux guest drops what arrives before its port is registered. The front-end sends one byte
    // first, and the parent starts the source (SIGUSR1) once it got here, so the time counts the
    // stream, not that hand-shake (as unix_stream starts its clock at 'connect').
    const life = new Writable({
      write(_chunk, _enc, cb) {
        if (!this.seen) process.stdout.write('live\n');
        this.seen = true;
        cb();
      },
    });
    device.port(0).attach(null, life);
    process.on('SIGUSR1', () => {
      const chunk = Buffer.alloc(CHUNK, 0x5a);
      let sent = 0;
      const source = new Readable({
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
      device.port(0).attach(source, life);
    });
  }
  const { peer, be } = await openBackend(socketPath, device, BE_SPIN ? {} : { spin: false });
  if (DIAG) countNotifications(peer, be);
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
} else if (role === '--fe') {
  const [, , , socketPath, dir, totalArg] = process.argv;
  const total = Number(totalArg);
  const driver = new ConsoleDriver({ txPieceSize: PIECE, maxPorts: 1, rxBufferSize: RX_BUFFER, ...(HWM !== undefined ? { highWaterMark: HWM } : {}) });
  const { peer, fe } = await openFrontend(socketPath, driver);
  if (DIAG) countNotifications(peer, fe);
  const port = driver.consolePort;
  if (dir === 'tx') {
    port.resume(); // discard input: only the transmit direction is measured
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
    port.write(Buffer.from('!')); // the sign of life the device waits for (see --be)
    let got = 0;
    port.on('data', (d) => {
      got += d.length;
      if (got >= total) process.stdout.write(`done ${process.hrtime.bigint()} ${got}\n`);
    });
    process.stdout.write('ready\n');
  }
  process.on('SIGTERM', () => process.exit(0));
} else {
  const dir = role;
  if (dir !== 'tx' && dir !== 'rx') {
    process.stderr.write(`console.mjs: direction must be tx or rx, got '${dir}'\n`);
    process.exit(2);
  }
  const total = Number(process.argv[3] ?? 256) * 1024 * 1024;
  const srv = await startServer({ deviceId: CONSOLE_ID, vectors: 3, memorySize: MEMORY });
  const be = spawnChild(SELF, ['--be', srv.socketPath, dir, String(total)], {}, 1);
  let fe = null;
  let result;
  try {
    await be.next('ready');
    fe = spawnChild(SELF, ['--fe', srv.socketPath, dir, String(total)], {}, 0);
    const [sender, receiver] = dir === 'tx' ? [fe, be] : [be, fe];
    if (dir === 'rx') {
      await fe.next('ready');
      await be.next('live');
      be.child.kill('SIGUSR1');
    }
    const minflt = (pid) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[7]);
    const t0 = BigInt(await sender.next('start'));
    const cpu0 = [procCpuSeconds(fe.pid), procCpuSeconds(be.pid)];
    const f0 = [minflt(fe.pid), minflt(be.pid)];
    const [t1, got] = (await receiver.next('done')).split(' ').map(BigInt);
    const cpu = [procCpuSeconds(fe.pid) - cpu0[0], procCpuSeconds(be.pid) - cpu0[1]];
    const faults = { fe: minflt(fe.pid) - f0[0], be: minflt(be.pid) - f0[1] };
    const s = Number(t1 - t0) / 1e9;
    const gb = Number(got) / 1e9;
    result = {
      gbps: round(gb / s),
      bytes: Number(got),
      seconds: round(s),
      // 'auto' resolves in the back-end as the device does (OUT 0: RW = S − 4096).
      queue_size: QUEUE_SIZE === 'auto' ? `auto (${autoQueueSize({ rwSize: MEMORY - 4096 }, 1)})` : QUEUE_SIZE,
      ...(MEMORY !== 32 * 1024 * 1024 ? { memory: MEMORY } : {}),
      cpu_s_per_gb: round((cpu[0] + cpu[1]) / gb),
      cpu_split: { fe: round(cpu[0] / gb), be: round(cpu[1] / gb) },
      faults,
    };
    if (dir === 'tx') Object.assign(result, { piece: PIECE, sink: SOCKETLIKE ? 'socketlike' : 'plain' });
    else result.rx_buffer = RX_BUFFER ?? 'default';
    if (DIAG) {
      fe.child.kill('SIGUSR2');
      be.child.kill('SIGUSR2');
      const [fs, bs] = (await Promise.all([fe.next('stats'), be.next('stats')])).map((l) => JSON.parse(l));
      const per = (n) => round(n / (Number(got) / (1 << 20)));
      result.notify = {
        kicks_per_mib: per(fs.doorbells),
        irqs_per_mib: per(bs.doorbells),
        fe_wakeups_per_mib: per(fs.wakeups),
        be_wakeups_per_mib: per(bs.wakeups),
        fe_inflight_at_wakeup: fs.wakeups > 0 ? { rx: round(fs.inflight[0] / fs.wakeups, 1), tx: round(fs.inflight[1] / fs.wakeups, 1) } : null,
        fe_spin: fs.spin,
        be_spin: bs.spin,
      };
    }
  } finally {
    fe?.kill();
    be.kill();
    await Promise.all([fe?.exited, be.exited]);
    await srv.stop();
  }
  report(result); // after the cleanup: report() exits
}
