#!/usr/bin/env node
// `npm run fuzz`: the ring engine under seeded random input, as long as you like.
//
//   node scripts/fuzz.mjs [--cases N] [--seed S] [--target device,driver,ops] [--workers W]
//
// Targets (each runs N cases, seeds S … S+N−1):
//   device  hostile driver against DeviceQueue (runHostileDeviceCase: §6.3 checks, no access
//           outside a section, NEEDS_RESET)
//   driver  hostile device against DriverQueue (runHostileDriverCase: §6.4, every token once)
//   ops     honest driver + honest device, random interleaving of every queue operation
//           (runQueueOpsCase: order, data, lengths, no lost wake-up, full drain)
// Prints cases/s per target and every failing seed (reproduce one with the same --seed and
// --cases 1); exits 1 if any case failed. The default is 10^6 cases per target; the test suite
// runs a short slice.
import os from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const USAGE = 'usage: npm run fuzz -- [--cases N] [--seed S] [--target device,driver,ops] [--workers W]';
const TARGETS = ['device', 'driver', 'ops'];

function parse(argv) {
  const o = { cases: 1_000_000, seed: 1, targets: TARGETS, workers: Math.max(1, os.availableParallelism?.() ?? os.cpus().length) };
  const bad = (msg) => {
    process.stderr.write(`fuzz: ${msg} (${USAGE})\n`);
    process.exit(2);
  };
  const int = (name, v, min) => {
    if (v === undefined || !/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) bad(`${name} needs an integer ≥ ${min}, got '${v ?? ''}'`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--cases') o.cases = int(a, argv[++i], 1);
    else if (a === '--seed') o.seed = int(a, argv[++i], 0);
    else if (a === '--workers') o.workers = int(a, argv[++i], 1);
    else if (a === '--target') {
      o.targets = (argv[++i] ?? '').split(',');
      for (const t of o.targets) if (!TARGETS.includes(t)) bad(`unknown target '${t}' (device, driver, ops)`);
    } else if (a === '-h' || a === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else bad(`unknown argument '${a}'`);
  }
  return o;
}

async function runWorker({ target, from, to }) {
  const t = await import('@vshm/transport/testing');
  const run = { device: t.runHostileDeviceCase, driver: t.runHostileDriverCase, ops: t.runQueueOpsCase }[target];
  const failures = [];
  for (let seed = from; seed < to; seed++) {
    try {
      run(seed);
    } catch (e) {
      failures.push({ seed, message: String(e?.message ?? e).split('\n')[0] });
      if (failures.length >= 20) break;
    }
  }
  parentPort.postMessage({ failures });
}

function runSlice(target, from, to) {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { target, from, to } });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
  });
}

async function main() {
  const o = parse(process.argv.slice(2));
  let failed = 0;
  for (const target of o.targets) {
    const start = process.hrtime.bigint();
    const per = Math.ceil(o.cases / o.workers);
    const slices = [];
    for (let from = o.seed; from < o.seed + o.cases; from += per) slices.push(runSlice(target, from, Math.min(from + per, o.seed + o.cases)));
    const results = await Promise.all(slices);
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    const failures = results.flatMap((r) => r.failures);
    failed += failures.length;
    const rate = Math.round(o.cases / secs);
    process.stdout.write(`fuzz ${target}: ${o.cases} cases (seeds ${o.seed}…${o.seed + o.cases - 1}) in ${secs.toFixed(1)} s, ${rate} cases/s, ${failures.length} failed\n`);
    for (const f of failures) process.stdout.write(`  FAIL seed ${f.seed}: ${f.message}\n`);
  }
  process.exit(failed === 0 ? 0 : 1);
}

if (isMainThread) await main();
else await runWorker(workerData);
