// B5 startup: from the spawn of a `vshm-console-frontend` process to the first byte through the
// console, against a server and a console back-end that are already running (issue 12 item 7:
// the front-end's start to DRIVER_OK, plus one byte each way of the path a user sees).
//   startup.mjs SPAWNS
// Each spawn: the parent takes CLOCK_MONOTONIC, spawns the CLI (terminal attachment on pipes)
// and writes one byte to its stdin at once; the byte waits in the pipe until the front-end is
// live and forwards it; the back-end's sink takes CLOCK_MONOTONIC when it arrives. The front-end
// is then stopped (SIGTERM: an orderly reset, §4.10) and the back-end waits for the next one.
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ConsoleDevice } from '@vshm/backend-console';
import { report, round } from '../lib.mjs';
import { openBackend, spawnChild, startServer } from '../virtio-rig.mjs';

const SELF = fileURLToPath(import.meta.url);
const CLI = fileURLToPath(new URL('../../packages/frontend-console/bin/vshm-console-frontend.js', import.meta.url));
const CONSOLE_ID = 3;

if (process.argv[2] === '--be') {
  const device = new ConsoleDevice({ queueSize: 64 });
  device.port(0).attach(
    null,
    new Writable({
      write(chunk, _enc, cb) {
        process.stdout.write(`got ${process.hrtime.bigint()} ${chunk.length}\n`);
        cb();
      },
    }),
  );
  await openBackend(process.argv[3], device);
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
} else {
  const spawns = Number(process.argv[2] ?? 7);
  const srv = await startServer({ deviceId: CONSOLE_ID, vectors: 3 });
  const be = spawnChild(SELF, ['--be', srv.socketPath]);
  const ms = [];
  let result;
  try {
    await be.next('ready');
    for (let i = 0; i < spawns; i++) {
      const t0 = process.hrtime.bigint();
      const fe = spawn(process.execPath, [CLI, '-S', srv.socketPath], { stdio: ['pipe', 'ignore', 'inherit'] });
      const exited = new Promise((resolve) => fe.once('exit', resolve));
      fe.stdin.on('error', () => {}); // an FE that failed early: its exit is the error
      fe.stdin.write('x');
      const got = be.next('got');
      const early = exited.then((code) => Promise.reject(new Error(`vshm-console-frontend exited (${code}) before the first byte`)));
      const [t1] = (await Promise.race([got, early])).split(' ').map(BigInt);
      ms.push(Number(t1 - t0) / 1e6);
      fe.kill('SIGTERM');
      await exited;
    }
    const sorted = [...ms].sort((a, b) => a - b);
    result = { median_ms: round(sorted[(sorted.length - 1) >> 1], 1), min_ms: round(sorted[0], 1), max_ms: round(sorted.at(-1), 1), runs: ms.length, all_ms: ms.map((x) => round(x, 1)) };
  } finally {
    be.kill();
    await be.exited;
    await srv.stop();
  }
  report(result); // after the cleanup: report() exits
}
