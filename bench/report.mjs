// Render a results JSON (bench/run.mjs) as the Markdown tables of bench/README.md.
//   node bench/report.mjs [bench/results.json]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const file = process.argv[2] ?? fileURLToPath(new URL('./results.json', import.meta.url));
const r = JSON.parse(readFileSync(file, 'utf8'));
const C = r.cases;
const lat = (x) => (x?.median_us == null ? 'failed' : `${x.median_us} µs (p99 ${x.p99_us} µs)`);
const spread = (x, f) => (Array.isArray(x?.trials) ? ` [${x.trials.map(f).join(', ')}]` : '');
const rows = [
  ['F', 'spin_floor_rtt', 'C busy-wait ping-pong of one cache line, two processes pinned to CPUs 0/1', lat(C.spin_floor_rtt)],
  ['F', 'ring_floor_rtt', "rtt64's round trip on a split virtqueue in C (same ring shape and echo), pinned to CPUs 0/1", lat(C.ring_floor_rtt)],
  ['F', 'eventfd_floor_rtt', 'C eventfd ping-pong, two processes, blocking read()', lat(C.eventfd_floor_rtt)],
  [
    'F',
    'memcpy_floor',
    '64 KiB copies into 4 MiB of rotating destinations, one process',
    `C memcpy ${C.memcpy_floor?.gbps} GB/s; Buffer.copy ${C.memcpy_floor?.buffer_copy_gbps}, TypedArray.set ${C.memcpy_floor?.typedarray_set_gbps} GB/s`,
  ],
  ['F', 'shm_copy_floor', "bulk64k's two copies in C: 64 KiB into 64 shared slots, out again in a second process; pinned to CPUs 0/1", `${C.shm_copy_floor?.gbps} GB/s`],
  ['B0', 'eventfd_rtt', 'raw eventfd ping-pong, two Node processes (addon watchers)', lat(C.eventfd_rtt)],
  ['B0', 'unix_echo', 'Node `net` UNIX-socket echo, 64 B', lat(C.unix_echo)],
  ['B0', 'unix_stream', 'Node `net` UNIX-socket stream, 64 KiB writes', `${C.unix_stream?.gbps} GB/s${spread(C.unix_stream, (v) => v)}`],
  ['B1', 'rtt64', '64 B FE → BE → FE, sides pinned to CPUs 0/1, adaptive spin', lat(C.rtt64)],
  ['B1', 'rtt64_unpinned', 'same, unpinned', lat(C.rtt64_unpinned)],
  ['B1', 'rtt64_nospin', 'same, unpinned, VSHM_SPIN_US=0 (interrupts only)', lat(C.rtt64_nospin)],
  ['B0', 'eventfd_rtt_pinned', 'eventfd ping-pong pinned like rtt64 (for comparison)', lat(C.eventfd_rtt_pinned)],
  ['B2', 'bulk64k', 'FE → BE one-way, 64 KiB buffers, BE copies out', `${C.bulk64k?.gbps} GB/s${spread(C.bulk64k, (v) => v)}`],
  ['B2', 'bulk64k_zc', 'same, zero-copy: FE produces in place (allocOut), BE reads in place', `${C.bulk64k_zc?.gbps} GB/s${spread(C.bulk64k_zc, (v) => v)}`],
  ['B2', 'console_stream', 'console port Duplex (FE) → port Writable (BE), 64 KiB writes', `${C.console_stream?.gbps} GB/s${spread(C.console_stream, (v) => v)}`],
  ['B2', 'console_stream_rx', 'BE port input Readable → FE port Duplex, 64 KiB chunks', `${C.console_stream_rx?.gbps} GB/s${spread(C.console_stream_rx, (v) => v)}`],
  ['B3', 'msg_rate', '64 B one-way, kicks batched by 64, queue 256', `${C.msg_rate?.msgs_per_s} msgs/s${spread(C.msg_rate, (v) => v.msgs_per_s)}`],
  ['B4', 'cpu_per_million', 'FE + BE CPU seconds per million B3 messages', `${C.cpu_per_million?.cpu_s} s (FE ${C.cpu_per_million?.fe_cpu_s}, BE ${C.cpu_per_million?.be_cpu_s})`],
  ['B4', 'idle_cpu', 'FE + BE CPU while idle for 5 s after B3', `${C.idle_cpu?.percent} %`],
  ['B5', 'startup', 'spawn of vshm-console-frontend → first byte at the back-end', `median ${C.startup?.median_ms} ms (${C.startup?.min_ms}–${C.startup?.max_ms}); idle after start ${C.startup?.idle_cpu_percent} % CPU${C.startup?.without_extra_ca_certs ? `; ${C.startup.without_extra_ca_certs.median_ms} ms without NODE_EXTRA_CA_CERTS` : ''}`],
  ['F', 'node_startup', 'spawn of a bare node echoing one stdin byte (startup floor, alternated with it)', `median ${C.node_startup?.median_ms} ms (${C.node_startup?.min_ms}–${C.node_startup?.max_ms}); vshm's own ${C.startup?.own_ms} ms`],
];
console.log(`Machine: ${r.cpus} × ${r.cpu_model}, Node ${r.node}${r.quick ? ' (quick run)' : ''}; wall time ${r.seconds} s.\n`);
console.log('| | case | what | result (median of trials) [trials] |');
console.log('|---|---|---|---|');
for (const [g, n, what, res] of rows) if (C[n]) console.log(`| ${g} | \`${n}\` | ${what} | ${res} |`);
console.log('\n| ratio | value | target | |');
console.log('|---|---|---|---|');
for (const [name, { value, target, met }] of Object.entries(r.ratios)) {
  if (value == null) continue;
  console.log(`| ${name} | ${value} | ${target} | ${met === true ? 'met' : met === false ? '**missed**' : ''} |`);
}
