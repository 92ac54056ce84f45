#!/usr/bin/env node
// `npm run bench`: vshm against its baselines, every case in fresh child processes.
//
//   node bench/run.mjs [--quick] [--json PATH] [--only NAME[,NAME…]] [--trials N]
//
// Prints a table and writes `{"node", "cpus", "cases": {NAME: {...}}, "ratios": {...}}` to
// bench/results.json (or PATH). --quick is the CI smoke mode: under a minute, asserts nothing
// about speed. Every figure is compared with a floor or baseline measured in the same run.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasTaskset, runCase, round } from './lib.mjs';

const USAGE = 'usage: node bench/run.mjs [--quick] [--json PATH] [--only NAME,…] [--trials N]';

function parseArgs(argv) {
  const o = { quick: false, json: fileURLToPath(new URL('./results.json', import.meta.url)), only: null, trials: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--json') o.json = value();
    else if (a === '--only') o.only = value().split(',');
    else if (a === '--trials') {
      o.trials = Number(value());
      if (!Number.isInteger(o.trials) || o.trials < 1 || o.trials > 20) fail(`--trials must be 1..20, got '${argv[i]}'`);
    } else if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else fail(`unknown argument '${a}'`);
  }
  return o;
}

function fail(msg) {
  process.stderr.write(`bench: ${msg} (${USAGE})\n`);
  process.exit(2);
}

/**
 * The cases. `args(quick)` sizes each run; `key` orders the trials (the median trial is kept:
 * median latency, median throughput); `env` is added to the case's environment; `trials`
 * overrides the default count; `produces` names the results of a case that yields several;
 * `summary` renders one table cell.
 */
const latency = (r) => `median ${r.median_us} µs, p99 ${r.p99_us} µs`;
const gbps = (r) => `${r.gbps} GB/s`;
const iops = (r) => `${r.iops} IOPS (QD ${r.qd})`;
const nbd = (f) => (r) => (r.skipped ? `skipped: ${r.skipped}` : `${f(r)} (${r.tool})`);
const CASES = [
  // Floors (issue 12): what C gets from the same CPUs in the same run. The spin floor is pinned
  // like rtt64, the eventfd floor unpinned like rtt64_nospin — each beside what it is compared with.
  { name: 'spin_floor_rtt', group: 'F', script: 'floors.mjs', args: (q) => ['spin', q ? 2000 : 30000], env: { VSHM_BENCH_PIN: '1' }, key: (r) => r.median_us, summary: latency },
  // rtt64's own work on a split ring, done in C: what the ring's shape costs on these CPUs.
  { name: 'ring_floor_rtt', group: 'F', script: 'floors.mjs', args: (q) => ['ring', q ? 2000 : 30000], env: { VSHM_BENCH_PIN: '1' }, key: (r) => r.median_us, summary: latency },
  { name: 'eventfd_floor_rtt', group: 'F', script: 'floors.mjs', args: (q) => ['eventfd', q ? 2000 : 30000], key: (r) => r.median_us, summary: latency },
  {
    name: 'memcpy_floor',
    group: 'F',
    script: 'floors.mjs',
    args: (q) => ['memcpy', q ? 0.2 : 1],
    key: (r) => r.gbps,
    summary: (r) => `C memcpy ${r.gbps} GB/s; Node Buffer.copy ${r.buffer_copy_gbps}, TypedArray.set ${r.typedarray_set_gbps} GB/s`,
  },
  // bulk64k's two copies (into shared memory, out of it) on two CPUs with nothing else: the
  // cross-core bound that the cache-resident memcpy floor does not show.
  { name: 'shm_copy_floor', group: 'F', script: 'floors.mjs', args: (q) => ['pipe', q ? 0.2 : 1], env: { VSHM_BENCH_PIN: '1' }, key: (r) => r.gbps, summary: gbps },
  { name: 'eventfd_rtt', group: 'B0', script: 'eventfd-rtt.mjs', args: (q) => [q ? 2000 : 30000], key: (r) => r.median_us, summary: latency },
  { name: 'unix_echo', group: 'B0', script: 'unix-echo.mjs', args: (q) => [q ? 2000 : 30000], key: (r) => r.median_us, summary: latency },
  // Throughput cases are short and the most exposed to other load: more bytes and 5 trials.
  { name: 'unix_stream', group: 'B0', script: 'unix-stream.mjs', args: (q) => [q ? 32 : 2048], trials: 5, key: (r) => r.gbps, summary: gbps },
  // B1 with both sides pinned to different CPUs (taskset), where the adaptive spin works; the
  // unpinned run and a pinned eventfd baseline are reported beside it for honesty (README).
  { name: 'rtt64', group: 'B1', script: 'virtio.mjs', args: (q) => ['rtt', q ? 2000 : 30000], env: { VSHM_BENCH_PIN: '1' }, key: (r) => r.median_us, summary: latency },
  { name: 'rtt64_unpinned', group: 'B1', script: 'virtio.mjs', args: (q) => ['rtt', q ? 2000 : 30000], key: (r) => r.median_us, summary: latency },
  { name: 'rtt64_nospin', group: 'B1', script: 'virtio.mjs', args: (q) => ['rtt', q ? 2000 : 30000], env: { VSHM_SPIN_US: '0' }, key: (r) => r.median_us, summary: latency },
  { name: 'eventfd_rtt_pinned', group: 'B0', script: 'eventfd-rtt.mjs', args: (q) => [q ? 2000 : 30000], env: { VSHM_BENCH_PIN: '1' }, key: (r) => r.median_us, summary: latency },
  { name: 'bulk64k', group: 'B2', script: 'virtio.mjs', args: (q) => ['bulk', q ? 32 : 4096], trials: 5, key: (r) => r.gbps, summary: gbps },
  { name: 'bulk64k_zc', group: 'B2', script: 'virtio.mjs', args: (q) => ['bulkzc', q ? 32 : 4096], trials: 5, key: (r) => r.gbps, summary: gbps },
  // The console streams move what unix_stream moves (2 GiB), with as many trials: at 256 MiB the
  // first touch of fresh memory (the VM backs guest pages lazily) was about half of the time.
  { name: 'console_stream', group: 'B2', script: 'console.mjs', args: (q) => ['tx', q ? 16 : 2048], trials: 5, key: (r) => r.gbps, summary: gbps },
  { name: 'console_stream_rx', group: 'B2', script: 'console.mjs', args: (q) => ['rx', q ? 16 : 2048], trials: 5, key: (r) => r.gbps, summary: gbps },
  {
    // One run yields three results: the rate, the CPU it cost, then CPU while idle.
    name: 'msg_rate',
    produces: ['msg_rate', 'cpu_per_million', 'idle_cpu'],
    group: 'B3',
    script: 'virtio.mjs',
    args: (q) => ['msgs', q ? 0.5 : 3, q ? 0.5 : 5],
    key: (r) => r.msg_rate.msgs_per_s,
    summary: (r) =>
      `${r.msg_rate.msgs_per_s} msgs/s; B4 ${r.cpu_per_million.cpu_s} CPU s per million (FE ${r.cpu_per_million.fe_cpu_s}, BE ${r.cpu_per_million.be_cpu_s}), idle ${r.idle_cpu.percent} % CPU`,
  },
  // B6 virtio-blk (issue 11 item 6): each transport figure beside direct file I/O on the same
  // kind of image in the same run; NBD cases through standard tools (null result without them).
  { name: 'file_seq_read', group: 'B6', script: 'blk.mjs', args: (q) => ['file_seq_read', q ? 16 : 256], trials: 5, key: (r) => r.gbps, summary: gbps },
  { name: 'blk_seq_read', group: 'B6', script: 'blk.mjs', args: (q) => ['blk_seq_read', q ? 16 : 256], trials: 5, key: (r) => r.gbps, summary: gbps },
  { name: 'file_seq_write', group: 'B6', script: 'blk.mjs', args: (q) => ['file_seq_write', q ? 16 : 256], trials: 5, key: (r) => r.gbps, summary: gbps },
  { name: 'blk_seq_write', group: 'B6', script: 'blk.mjs', args: (q) => ['blk_seq_write', q ? 16 : 256], trials: 5, key: (r) => r.gbps, summary: gbps },
  { name: 'file_randread_4k', group: 'B6', script: 'blk.mjs', args: (q) => ['file_randread_4k', q ? 1000 : 20000], key: (r) => r.iops, summary: iops },
  { name: 'blk_randread_4k_qd32', group: 'B6', script: 'blk.mjs', args: (q) => ['blk_randread_4k_qd32', q ? 1000 : 20000], key: (r) => r.iops, summary: iops },
  { name: 'nbd_seq_read', group: 'B6', script: 'blk.mjs', args: (q) => ['nbd_seq_read', q ? 16 : 256], key: (r) => r.gbps ?? 0, summary: nbd(gbps) },
  { name: 'nbd_seq_write', group: 'B6', script: 'blk.mjs', args: (q) => ['nbd_seq_write', q ? 16 : 256], key: (r) => r.gbps ?? 0, summary: nbd(gbps) },
  { name: 'nbd_read_4k_qd32', group: 'B6', script: 'blk.mjs', args: (q) => ['nbd_read_4k_qd32', q ? 1000 : 20000], key: (r) => r.iops ?? 0, summary: nbd(iops) },
  // The nbdcopy cases' reference: the same client against qemu-nbd serving the file directly.
  { name: 'qemu_nbd_seq_read', group: 'B6', script: 'blk.mjs', args: (q) => ['qemu_nbd_seq_read', q ? 16 : 256], key: (r) => r.gbps ?? 0, summary: nbd(gbps) },
  { name: 'qemu_nbd_seq_write', group: 'B6', script: 'blk.mjs', args: (q) => ['qemu_nbd_seq_write', q ? 16 : 256], key: (r) => r.gbps ?? 0, summary: nbd(gbps) },
  {
    // One run yields the front-end's start and its floor, a bare `node` spawned alternately with it.
    name: 'startup',
    produces: ['startup', 'node_startup'],
    group: 'B5',
    script: 'startup.mjs',
    args: (q) => [q ? 2 : 7, q ? 0.5 : 2],
    key: (r) => r.startup.median_ms,
    summary: (r) =>
      `median ${r.startup.median_ms} ms, max ${r.startup.max_ms} ms (${r.startup.runs} spawns); floor node_startup median ${r.node_startup.median_ms} ms; vshm's own ${r.startup.own_ms} ms (median of per-spawn differences); idle FE ${r.startup.idle_cpu_percent} % CPU` +
      (r.startup.without_extra_ca_certs
        ? `; without NODE_EXTRA_CA_CERTS (set here, Node parses it at every start): median ${r.startup.without_extra_ca_certs.median_ms} ms, node_startup ${r.node_startup.without_extra_ca_certs.median_ms} ms`
        : ''),
  },
];

const o = parseArgs(process.argv.slice(2));
const trials = o.trials ?? (o.quick ? 1 : 3);
const selected = o.only ? CASES.filter((c) => o.only.includes(c.name)) : CASES;
if (o.only) for (const n of o.only) if (!CASES.some((c) => c.name === n)) fail(`unknown case '${n}'`);

const results = {
  node: process.version,
  cpus: os.cpus().length,
  cpu_model: os.cpus()[0]?.model ?? 'unknown',
  quick: o.quick,
  trials,
  cases: {},
  ratios: {},
};

// Every case runs with TMPDIR set to one directory of this run, removed at the end (also after a
// case that timed out and was killed before its own cleanup): the bench leaves nothing in /tmp.
const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'vshm-bench-run-'));
const removeTmp = () => rmSync(tmpRoot, { recursive: true, force: true });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    removeTmp();
    process.exit(130);
  });
}

const started = Date.now();
let failed = 0;
for (const c of selected) {
  const runs = [];
  const n = o.quick || o.trials ? trials : (c.trials ?? trials);
  for (let t = 0; t < n; t++) {
    try {
      runs.push(await runCase(c.script, c.args(o.quick).map(String), { timeoutMs: o.quick ? 30000 : 60000, env: { ...c.env, TMPDIR: tmpRoot } }));
    } catch (e) {
      process.stderr.write(`bench: ${c.name}: ${e.message}\n`);
    }
  }
  if (runs.length === 0) {
    failed++;
    for (const n of c.produces ?? [c.name]) results.cases[n] = { error: 'failed' };
    continue;
  }
  // The median trial by the case's key: one slow or lucky trial does not decide the figure.
  runs.sort((a, b) => c.key(a) - c.key(b));
  const r = runs[(runs.length - 1) >> 1];
  const trialKeys = runs.map(c.key);
  if (c.env?.VSHM_BENCH_PIN === '1') r.pinned = hasTaskset(); // false: taskset or a 2nd CPU missing
  if (c.produces) {
    for (const n of c.produces) results.cases[n] = runs.length > 1 ? { ...r[n], trials: runs.map((x) => x[n]) } : r[n];
  } else {
    if (runs.length > 1) r.trials = trialKeys;
    results.cases[c.name] = r;
  }
  process.stderr.write(`bench: ${c.name}: ${c.summary(r)}\n`);
}

// Ratios against the same run's floors and baselines, with the targets of issue 12 (and the
// earlier ones, still held). `ok` null = shown for information, no target.
const C = results.cases;
const ratio = (a, b) => (a != null && b != null && b !== 0 ? round(a / b, 3) : null);
const targets = [
  ['rtt64 / spin_floor_rtt (median)', ratio(C.rtt64?.median_us, C.spin_floor_rtt?.median_us), '≤ 2', (x) => x <= 2],
  ['rtt64 p99 / rtt64 median', ratio(C.rtt64?.p99_us, C.rtt64?.median_us), '≤ 10', (x) => x <= 10],
  ['rtt64_nospin / eventfd_floor_rtt (median)', ratio(C.rtt64_nospin?.median_us, C.eventfd_floor_rtt?.median_us), '≤ 1.2', (x) => x <= 1.2],
  ['bulk64k / memcpy_floor', ratio(C.bulk64k?.gbps, C.memcpy_floor?.gbps), '≥ 0.85', (x) => x >= 0.85],
  ['bulk64k / unix_stream', ratio(C.bulk64k?.gbps, C.unix_stream?.gbps), '≥ 4', (x) => x >= 4],
  ['console_stream / unix_stream', ratio(C.console_stream?.gbps, C.unix_stream?.gbps), '≥ 2', (x) => x >= 2],
  ['console_stream_rx / unix_stream', ratio(C.console_stream_rx?.gbps, C.unix_stream?.gbps), '≥ 2', (x) => x >= 2],
  ['msg_rate (msgs/s)', C.msg_rate?.msgs_per_s ?? null, '≥ 4000000', (x) => x >= 4e6],
  ['startup (ms, median)', C.startup?.median_ms ?? null, '≤ 150', (x) => x <= 150],
  ['startup − node_startup (ms, vshm\'s own)', C.startup?.own_ms ?? null, '≤ 150', (x) => x <= 150],
  ['idle FE CLI after startup (% CPU)', C.startup?.idle_cpu_percent ?? null, '< 1', (x) => x < 1],
  ['idle_cpu (%)', C.idle_cpu?.percent ?? null, '< 1', (x) => x < 1],
  ['rtt64 / unix_echo (median)', ratio(C.rtt64?.median_us, C.unix_echo?.median_us), '≤ 0.7', (x) => x <= 0.7],
  ['rtt64 / eventfd_rtt (median)', ratio(C.rtt64?.median_us, C.eventfd_rtt?.median_us), '≤ 1.3', (x) => x <= 1.3],
  ['bulk64k / shm_copy_floor (C, same two copies)', ratio(C.bulk64k?.gbps, C.shm_copy_floor?.gbps), 'info', null],
  ['bulk64k_zc / memcpy_floor', ratio(C.bulk64k_zc?.gbps, C.memcpy_floor?.gbps), 'info', null],
  ['bulk64k / Node Buffer.copy floor', ratio(C.bulk64k?.gbps, C.memcpy_floor?.buffer_copy_gbps), 'info', null],
  ['ring_floor_rtt / spin_floor_rtt (median; C split ring)', ratio(C.ring_floor_rtt?.median_us, C.spin_floor_rtt?.median_us), 'info', null],
  ['rtt64 / ring_floor_rtt (median; the JavaScript share)', ratio(C.rtt64?.median_us, C.ring_floor_rtt?.median_us), 'info', null],
  ['rtt64_unpinned / eventfd_rtt (median)', ratio(C.rtt64_unpinned?.median_us, C.eventfd_rtt?.median_us), 'info', null],
  ['rtt64_nospin / eventfd_rtt (median)', ratio(C.rtt64_nospin?.median_us, C.eventfd_rtt?.median_us), 'info', null],
  ['eventfd_rtt / eventfd_floor_rtt (median)', ratio(C.eventfd_rtt?.median_us, C.eventfd_floor_rtt?.median_us), 'info', null],
  ['blk_seq_read / file_seq_read', ratio(C.blk_seq_read?.gbps, C.file_seq_read?.gbps), '≥ 0.5', (x) => x >= 0.5],
  ['blk_seq_write / file_seq_write', ratio(C.blk_seq_write?.gbps, C.file_seq_write?.gbps), '≥ 0.5', (x) => x >= 0.5],
  ['blk_randread_4k_qd32 / file_randread_4k (IOPS)', ratio(C.blk_randread_4k_qd32?.iops, C.file_randread_4k?.iops), 'info', null],
  ['nbd_seq_read / file_seq_read', ratio(C.nbd_seq_read?.gbps, C.file_seq_read?.gbps), 'info', null],
  ['nbd_seq_write / file_seq_write', ratio(C.nbd_seq_write?.gbps, C.file_seq_write?.gbps), 'info', null],
  ['nbd_read_4k_qd32 / file_randread_4k (IOPS)', ratio(C.nbd_read_4k_qd32?.iops, C.file_randread_4k?.iops), 'info', null],
  ['nbd_seq_read / qemu_nbd_seq_read (same client, qemu-nbd on the file)', ratio(C.nbd_seq_read?.gbps, C.qemu_nbd_seq_read?.gbps), 'info', null],
  ['nbd_seq_write / qemu_nbd_seq_write', ratio(C.nbd_seq_write?.gbps, C.qemu_nbd_seq_write?.gbps), 'info', null],
  ['cpu_per_million (CPU s, FE + BE)', C.cpu_per_million?.cpu_s ?? null, 'info', null],
];
for (const [name, value, target, ok] of targets) {
  results.ratios[name] = { value, target, met: value == null || !ok ? null : ok(value) };
}
results.seconds = round((Date.now() - started) / 1000, 1);

// The human table.
const rows = [['case', 'result']];
for (const c of selected) {
  const r = c.produces ? Object.fromEntries(c.produces.map((n) => [n, C[n]])) : C[c.name];
  const bad = c.produces ? c.produces.some((n) => C[n]?.error) : r?.error;
  rows.push([`${c.group} ${c.name}`, bad ? 'FAILED' : c.summary(r)]);
}
rows.push(['', '']);
rows.push(['ratio', `${'value'.padEnd(10)} ${'target'.padEnd(11)} met?`]);
for (const [name, { value, target, met }] of Object.entries(results.ratios)) {
  if (value == null) continue;
  rows.push([name, `${String(value).padEnd(10)} ${target.padEnd(11)} ${met === true ? 'met' : met === false ? 'MISSED' : '-'}`]);
}
const w = Math.max(...rows.map((r) => r[0].length));
console.log(`vshm bench — node ${results.node}, ${results.cpus} × ${results.cpu_model}${o.quick ? ' (quick)' : ''}, ${trials} trial(s) per case${o.quick || o.trials ? '' : ' (throughput: 5)'}`);
for (const [a, b] of rows) console.log(a === '' ? '' : `  ${a.padEnd(w)}  ${b}`);
console.log(`  (${results.seconds} s)`);

writeFileSync(o.json, JSON.stringify(results, null, 2) + '\n');
console.log(`results written to ${o.json}`);
if (o.quick) console.log('  (quick: a smoke run; its figures and met/MISSED mean nothing)');
removeTmp();
process.exit(failed ? 1 : 0);
