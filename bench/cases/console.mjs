// B2 (console): one-way throughput through the console port streams, FE and BE in separate
// processes, 64 KiB chunks.
//   console.mjs tx MIB   console_stream: the front-end port (a Node Duplex, @vshm/frontend-console)
//                        written in 64 KiB chunks → the back-end port (@vshm/backend-console)
//                        attached to a counting Writable
//   console.mjs rx MIB   console_stream_rx: the back-end port's input (a Readable of 64 KiB
//                        chunks) → the front-end port's readable side, counted
// Timing uses process.hrtime (CLOCK_MONOTONIC, comparable across processes): from the sender's
// first write to the receiver's receipt of the last byte.
import { Readable, Writable } from 'node:stream';
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
/** FE receive buffer size for rx; unset = the driver's default (4 KiB, issue 12 item 3). */
const RX_BUFFER = process.env.VSHM_BENCH_CONSOLE_RX_BUFFER ? Number(process.env.VSHM_BENCH_CONSOLE_RX_BUFFER) : undefined;
const CHUNK = 64 * 1024;
const role = process.argv[2];

if (role === '--be') {
  const [, , , socketPath, dir, totalArg] = process.argv;
  const total = Number(totalArg);
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
    device.port(0).attach(null, sink);
  } else {
    // The source starts when the parent says the front-end is up (SIGUSR1).
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
      device.port(0).attach(source, null);
    });
  }
  await openBackend(socketPath, device);
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
} else if (role === '--fe') {
  const [, , , socketPath, dir, totalArg] = process.argv;
  const total = Number(totalArg);
  const driver = new ConsoleDriver({ txPieceSize: PIECE, maxPorts: 1, rxBufferSize: RX_BUFFER });
  await openFrontend(socketPath, driver);
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
  const srv = await startServer({ deviceId: CONSOLE_ID, vectors: 3 });
  const be = spawnChild(SELF, ['--be', srv.socketPath, dir, String(total)], {}, 1);
  let fe = null;
  let result;
  try {
    await be.next('ready');
    fe = spawnChild(SELF, ['--fe', srv.socketPath, dir, String(total)], {}, 0);
    const [sender, receiver] = dir === 'tx' ? [fe, be] : [be, fe];
    if (dir === 'rx') {
      await fe.next('ready');
      be.child.kill('SIGUSR1');
    }
    const t0 = BigInt(await sender.next('start'));
    const [t1, got] = (await receiver.next('done')).split(' ').map(BigInt);
    const s = Number(t1 - t0) / 1e9;
    result = { gbps: round(Number(got) / s / 1e9), bytes: Number(got), seconds: round(s), queue_size: QUEUE_SIZE };
    if (dir === 'tx') result.piece = PIECE;
    else result.rx_buffer = RX_BUFFER ?? 'default';
  } finally {
    fe?.kill();
    be.kill();
    await Promise.all([fe?.exited, be.exited]);
    await srv.stop();
  }
  report(result); // after the cleanup: report() exits
}
