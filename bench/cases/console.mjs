// B2 (console): one-way throughput through the console port streams — the front-end port
// (a Node Duplex, @vshm/frontend-console) written in 64 KiB chunks, the back-end port
// (@vshm/backend-console) attached to a counting Writable. FE and BE in separate processes.
//   console.mjs MIB        (parent: server, spawns --be and --fe)
// Timing uses process.hrtime (CLOCK_MONOTONIC, comparable across processes): from the FE's
// first write to the BE's receipt of the last byte.
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ConsoleDevice } from '@vshm/backend-console';
import { report, round } from '../lib.mjs';
import { openBackend, openFrontend, spawnChild, startServer } from '../virtio-rig.mjs';

const SELF = fileURLToPath(import.meta.url);
// The driver module directly: the package index also loads open.js, which needs the transport's
// openFrontend (connect.ts) — not every tree state has it; the driver is what is measured.
const { ConsoleDriver } = await import(new URL('../../packages/frontend-console/dist/driver.js', import.meta.url).href);
const CONSOLE_ID = 3;
const QUEUE_SIZE = Number(process.env.VSHM_BENCH_CONSOLE_QUEUE ?? 64);
const PIECE = Number(process.env.VSHM_BENCH_CONSOLE_PIECE ?? 65536);
const CHUNK = 64 * 1024;
const role = process.argv[2];

if (role === '--be') {
  const total = Number(process.argv[4]);
  const device = new ConsoleDevice({ queueSize: QUEUE_SIZE });
  let got = 0;
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk, _enc, cb) {
      got += chunk.length;
      if (got >= total) process.stdout.write(`done ${process.hrtime.bigint()} ${got}\n`);
      cb();
    },
  });
  device.port(0).attach(null, sink);
  await openBackend(process.argv[3], device);
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
} else if (role === '--fe') {
  const total = Number(process.argv[4]);
  const driver = new ConsoleDriver({ txPieceSize: PIECE, maxPorts: 1 });
  await openFrontend(process.argv[3], driver);
  const port = driver.consolePort;
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
  process.on('SIGTERM', () => process.exit(0));
} else {
  const mib = Number(role ?? 256);
  const total = mib * 1024 * 1024;
  const srv = await startServer({ deviceId: CONSOLE_ID, vectors: 3 });
  const be = spawnChild(SELF, ['--be', srv.socketPath, String(total)], {}, 1);
  let fe = null;
  try {
    await be.next('ready');
    fe = spawnChild(SELF, ['--fe', srv.socketPath, String(total)], {}, 0);
    const t0 = BigInt(await fe.next('start'));
    const [t1, got] = (await be.next('done')).split(' ').map(BigInt);
    const s = Number(t1 - t0) / 1e9;
    report({ gbps: round(Number(got) / s / 1e9), bytes: Number(got), seconds: round(s), queue_size: QUEUE_SIZE, piece: PIECE });
  } finally {
    fe?.kill();
    be.kill();
    await Promise.all([fe?.exited, be.exited]);
    await srv.stop();
  }
}
