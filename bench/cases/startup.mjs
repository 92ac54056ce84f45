// B5 startup: from the spawn of a `vshm-console-frontend` process to the first byte through the
// console, against a server and a console back-end that are already running (issue 12 item 7:
// the front-end's start to DRIVER_OK, plus one byte each way of the path a user sees), and its
// floor `node_startup`: the same spawn of a bare `node` that echoes the first stdin byte back.
//   startup.mjs SPAWNS IDLE_S
// Each spawn: the parent takes CLOCK_MONOTONIC, spawns the CLI (terminal attachment on pipes)
// and writes one byte to its stdin at once; the byte waits in the pipe until the front-end is
// live and forwards it; the back-end's sink takes CLOCK_MONOTONIC when it arrives. The front-end
// is then stopped (SIGTERM: an orderly reset, §4.10) and the back-end waits for the next one.
// The floor spawns alternate with the front-end's, so both see the same machine load: Node's own
// start (its binary, V8, bootstrap) is outside vshm's control, `startup − node_startup` is vshm's.
// The last front-end stays up IDLE_S seconds with nothing sent: its CPU then is `idle_cpu_percent`.
// NODE_EXTRA_CA_CERTS: when it is set (it is on the VMs this bench was tuned on), Node 20 reads
// and parses that CA bundle at every start, before any script runs: ~45 ms of `node -e 0` there.
// vshm uses no TLS and cannot skip it, so it is part of `node_startup` and of `startup`. Each
// spawn pair is then repeated with the variable removed from the child's environment, and both
// results carry `without_extra_ca_certs` (same stats): what the same code costs on a machine
// without that setting. The targets stay on the figures taken in the environment as given.
// `bundled` says whether the launcher ran the CLI's bundle (scripts/bundle.mjs) or, the bundle
// being missing or older than the tsc output, dist/cli.js (run `npm run build:ts`, which
// `npm run bench` does first).
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConsoleDevice } from '@vshm/backend-console';
import { cliModule } from '../../packages/transport/bin/launch.js';
import { report, round } from '../lib.mjs';
import { openBackend, procCpuSeconds, spawnChild, startServer } from '../virtio-rig.mjs';

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
  const bundled = cliModule(dirname(CLI), 'cli.js').endsWith('.cjs');
  if (!bundled) process.stderr.write('startup: the CLI bundle is missing or stale: measuring dist/cli.js (npm run build:ts)\n');
  const idleS = Number(process.argv[3] ?? 2);
  const srv = await startServer({ deviceId: CONSOLE_ID, vectors: 3 });
  const be = spawnChild(SELF, ['--be', srv.socketPath]);
  const ms = [];
  const floorMs = [];
  // The environment without NODE_EXTRA_CA_CERTS, or null when it is not set (nothing to compare).
  let cleanEnv = null;
  if (process.env.NODE_EXTRA_CA_CERTS) {
    cleanEnv = { ...process.env };
    delete cleanEnv.NODE_EXTRA_CA_CERTS;
  }
  const cleanMs = [];
  const cleanFloorMs = [];
  let idlePercent = null;
  let result;
  try {
    await be.next('ready');
    for (let i = 0; i < spawns; i++) {
      if (cleanEnv) {
        cleanFloorMs.push(await nodeFloorOnce(cleanEnv));
        const { fe, exited, ms: t } = await frontendOnce(be, srv.socketPath, cleanEnv);
        cleanMs.push(t);
        fe.kill('SIGTERM');
        await exited;
      }
      floorMs.push(await nodeFloorOnce(process.env));
      const { fe, exited, ms: t } = await frontendOnce(be, srv.socketPath, process.env);
      ms.push(t);
      if (i === spawns - 1 && idleS > 0) {
        // Live and idle: no byte in flight, nothing to send. CPU of the FE process only.
        const c0 = procCpuSeconds(fe.pid);
        const w0 = performance.now();
        await new Promise((r) => setTimeout(r, idleS * 1000));
        idlePercent = round(((procCpuSeconds(fe.pid) - c0) / ((performance.now() - w0) / 1000)) * 100, 2);
      }
      fe.kill('SIGTERM');
      await exited;
    }
    // vshm's own cost: the median of each front-end spawn less the floor spawn just before it
    // (a neighbour's burst hits both of a pair more often than two medians of different spawns).
    const own = stats(ms.map((x, i) => x - floorMs[i]));
    result = { startup: { ...stats(ms), own_ms: own.median_ms, idle_cpu_percent: idlePercent, bundled }, node_startup: stats(floorMs) };
    if (cleanEnv) {
      result.startup.without_extra_ca_certs = stats(cleanMs);
      result.node_startup.without_extra_ca_certs = stats(cleanFloorMs);
    }
  } finally {
    be.kill();
    await be.exited;
    await srv.stop();
  }
  report(result); // after the cleanup: report() exits
}

/** Median, min, max and every value, in ms. */
function stats(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return { median_ms: round(sorted[(sorted.length - 1) >> 1], 1), min_ms: round(sorted[0], 1), max_ms: round(sorted.at(-1), 1), runs: values.length, all_ms: values.map((x) => round(x, 1)) };
}

/**
 * Spawn the front-end CLI with `env`, write one byte to its stdin at once and wait until the
 * back-end `be` got it: the live child, its exit promise and the ms from spawn to arrival.
 */
async function frontendOnce(be, socketPath, env) {
  const t0 = process.hrtime.bigint();
  const fe = spawn(process.execPath, [CLI, '-S', socketPath], { stdio: ['pipe', 'ignore', 'inherit'], env });
  const exited = new Promise((resolve) => fe.once('exit', resolve));
  fe.stdin.on('error', () => {}); // an FE that failed early: its exit is the error
  fe.stdin.write('x');
  const got = be.next('got');
  const early = exited.then((code) => Promise.reject(new Error(`vshm-console-frontend exited (${code}) before the first byte`)));
  const [t1] = (await Promise.race([got, early])).split(' ').map(BigInt);
  return { fe, exited, ms: Number(t1 - t0) / 1e6 };
}

/** The floor: spawn a bare `node` with `env` that echoes its first stdin byte; ms until the byte is back. */
async function nodeFloorOnce(env) {
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, ['-e', "process.stdin.once('data', (d) => process.stdout.write(d, () => process.exit(0)))"], { stdio: ['pipe', 'pipe', 'inherit'], env });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.stdin.on('error', () => {});
  child.stdin.write('x');
  const back = new Promise((resolve) => child.stdout.once('data', () => resolve(process.hrtime.bigint())));
  const t1 = await Promise.race([back, exited.then((code) => Promise.reject(new Error(`node floor exited (${code}) before echoing`)))]);
  await exited;
  return Number(t1 - t0) / 1e6;
}
