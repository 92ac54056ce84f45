// B1–B4: virtio through the echo device, front-end and back-end in separate processes, the
// server in this (parent) process.
//   virtio.mjs rtt ROUNDS            B1 64-byte round trip FE → BE → FE
//   virtio.mjs bulk MIB              B2 one-way 64 KiB buffers FE → BE (BE copies them out)
//   virtio.mjs bulkzc MIB            B2 the same, zero-copy: the FE fills an allocOut buffer in
//                                    place, the BE reads it in place (readableSegments): the
//                                    ring's own ceiling, no data copy on either side
//   virtio.mjs msgs SECONDS IDLE_S   B3 64-byte one-way message rate with batching, B4 CPU
//                                    seconds per million messages (FE + BE) and idle CPU
// Child roles: --be, --fe MODE ARG. Results: one JSON line on stdout (lib.mjs report()).
import { fileURLToPath } from 'node:url';
import { echoDeviceOps, echoDriverOps, ECHO_DEVICE_ID } from '../devices/echo.mjs';
import { percentiles, report, round } from '../lib.mjs';
import { openBackend, openFrontend, procCpuSeconds, spawnChild, startServer } from '../virtio-rig.mjs';

const SELF = fileURLToPath(import.meta.url);
/** Ring size the FE asks for (the BE offers 256): 64 for bulk, where 64 × 64 KiB in flight stay
 * cache-resident (4 MiB) — a 256-entry ring cycles 16 MiB through DRAM and ran 25–40 % slower. */
const QUEUE_SIZE = Number(process.env.VSHM_BENCH_QUEUE_SIZE ?? 256);
const BULK_QUEUE_SIZE = Number(process.env.VSHM_BENCH_QUEUE_SIZE ?? 64);
const BATCH = Number(process.env.VSHM_BENCH_BATCH ?? 64);
const BULK_BATCH = Number(process.env.VSHM_BENCH_BULK_BATCH ?? 8);
const role = process.argv[2];
/** Sequence number of the last zero-copy buffer produced (bulk64k_zc). */
let seq = 0;

if (role === '--be') {
  const consume = process.argv[4] === 'bulkzc' ? 'inplace' : 'copy';
  const { be, peer } = await openBackend(process.argv[3], echoDeviceOps({ queueSize: Math.max(256, QUEUE_SIZE), consume }));
  let doorbells = 0;
  if (process.env.VSHM_BENCH_DIAG) {
    const ring = peer.doorbell.bind(peer);
    peer.doorbell = (t, v) => {
      doorbells++;
      ring(t, v);
    };
  }
  process.stdout.write('ready\n');
  process.on('SIGTERM', async () => {
    if (process.env.VSHM_BENCH_DIAG) process.stderr.write(`bench: be spin ${JSON.stringify(be.spinStats)} doorbells ${doorbells}\n`);
    await be.close();
    process.exit(0);
  });
} else if (role === '--fe') {
  const [, , , socketPath, mode, arg, arg2] = process.argv;
  const drv = echoDriverOps({ queueSize: mode === 'bulk' || mode === 'bulkzc' ? BULK_QUEUE_SIZE : QUEUE_SIZE });
  const { session, fe, peer } = await openFrontend(socketPath, drv.ops);
  globalThis.spinStats = fe.spinStats;
  if (process.env.VSHM_BENCH_DIAG) {
    // Kicks that rang the back-end's doorbell (the rest were suppressed, §4.9).
    const ring = peer.doorbell.bind(peer);
    globalThis.spinStats = Object.assign(fe.spinStats ?? {}, { doorbells: 0 });
    peer.doorbell = (t, v) => {
      globalThis.spinStats.doorbells++;
      ring(t, v);
    };
  }
  const q = session.queues[0];
  const line = (s) => process.stdout.write(s + '\n');
  process.on('SIGTERM', () => process.exit(0)); // exit normally: --cpu-prof writes its profile
  if (mode === 'rtt') await rtt(q, Number(arg), line);
  else if (mode === 'bulk') await bulk(q, Number(arg) * 1024 * 1024, line, false);
  else if (mode === 'bulkzc') await bulk(q, Number(arg) * 1024 * 1024, line, true);
  else await msgs(q, Number(arg), Number(arg2), line);
} else {
  await parent(role, process.argv.slice(3));
}

async function parent(mode, args) {
  // The region is sized per workload, as a deployment would size it: small messages in 1 MiB
  // (§5.1 chunks of 256 B), 64 KiB buffers in 32 MiB (4 KiB chunks, 512 buffers' room).
  const memorySize = Number(process.env.VSHM_BENCH_MEMORY ?? (mode === 'bulk' || mode === 'bulkzc' ? 32 : 1) * 1024 * 1024);
  const srv = await startServer({ deviceId: ECHO_DEVICE_ID, memorySize });
  const be = spawnChild(SELF, ['--be', srv.socketPath, mode], {}, 1);
  let fe = null;
  let result;
  try {
    await be.next('ready');
    fe = spawnChild(SELF, ['--fe', srv.socketPath, mode, ...args], {}, 0);
    if (mode === 'msgs') {
      // CPU of both sides between the marks the front-end prints (bench B4).
      const cpu = () => procCpuSeconds(fe.pid) + procCpuSeconds(be.pid);
      await fe.next('run-start');
      const f0 = procCpuSeconds(fe.pid);
      const b0 = procCpuSeconds(be.pid);
      const c0 = f0 + b0;
      const run = JSON.parse(await fe.next('run-end'));
      const f1 = procCpuSeconds(fe.pid);
      const b1 = procCpuSeconds(be.pid);
      const c1 = f1 + b1;
      const perM = (x) => round((x / run.msgs) * 1e6);
      await fe.next('idle-start');
      const i0 = cpu();
      const t0 = performance.now();
      await fe.next('idle-end');
      const i1 = cpu();
      const idleS = (performance.now() - t0) / 1000;
      result = {
        msg_rate: { msgs_per_s: Math.round(run.msgs / run.seconds), msgs: run.msgs, seconds: round(run.seconds), batch: BATCH, fe_spin: run.fe_spin },
        cpu_per_million: { cpu_s: perM(c1 - c0), fe_cpu_s: perM(f1 - f0), be_cpu_s: perM(b1 - b0), cpu_s_total: round(c1 - c0, 2) },
        idle_cpu: { percent: round(((i1 - i0) / idleS) * 100, 2), seconds: round(idleS, 2) },
      };
    } else {
      // CPU of both sides over the measured part: an efficiency figure that, unlike wall time,
      // hardly moves when other processes compete for the CPUs.
      const cpu = () => procCpuSeconds(fe.pid) + procCpuSeconds(be.pid);
      await fe.next('run-start');
      const c0 = cpu();
      const r = JSON.parse(await fe.next('result'));
      const used = cpu() - c0;
      if (mode === 'rtt') r.cpu_us_per_rtt = round((used / r.rounds) * 1e6, 2);
      else r.cpu_s_per_gb = round(used / (r.bytes / 1e9), 3);
      result = r;
    }
  } finally {
    fe?.kill();
    be.kill();
    await Promise.all([fe?.exited, be.exited]);
    await srv.stop();
  }
  // Only now: report() exits the process, and the server's directory must be gone first.
  report(result);
}

/**
 * B1: one 64-byte request in flight; the echo comes back through the used ring. The next request
 * is posted once the completion is handled (onUsedBatch, after the transport freed the reply
 * buffer), as the product's drivers do — a blk read resolves its promise, the console port refills
 * at the run's end. It then reuses the same buffers and descriptors, whose lines the back-end
 * still holds (DriverQueue leaves an unchanged descriptor alone); posted from inside onUsed it
 * would take the other of two buffer pairs each round (bench/README.md, "Transport hot path").
 */
function rtt(q, rounds, line) {
  const warmup = Math.min(2000, rounds >> 2);
  const msg = new Uint8Array(64).fill(0x61);
  const samples = new Float64Array(rounds);
  let i = -warmup;
  let t0 = 0;
  return new Promise((resolve) => {
    q.onUsed = (_token, data) => {
      const t1 = performance.now();
      if (data.length !== 64) throw new Error(`echo of ${data.length} bytes`);
      if (i >= 0) samples[i] = (t1 - t0) * 1000;
      if (i === -1) line('run-start');
      if (++i === rounds) {
        const p = percentiles(samples);
        line('result ' + JSON.stringify({ median_us: round(p.median), p99_us: round(p.p99), rounds, fe_spin: globalThis.spinStats }));
        resolve();
      }
    };
    q.onUsedBatch = () => {
      if (i >= rounds) return;
      t0 = performance.now();
      q.add(msg, 64, 0);
      q.kick();
    };
    t0 = performance.now();
    q.add(msg, 64, 0);
    q.kick();
  });
}

/**
 * Keep the ring full of one-way buffers of `size` bytes until `total` bytes completed. With
 * `zeroCopy` each buffer is produced in place in shared memory (allocOut + addAllocated): the
 * producer writes its sequence number into the first bytes, nothing is copied.
 */
function stream(q, size, total, batch, onDone, zeroCopy = false) {
  const buf = new Uint8Array(size).fill(0x5a);
  let posted = 0;
  let done = 0;
  const postOne = zeroCopy
    ? () => {
        const view = q.allocOut(size);
        if (view === null) return false;
        seq = (seq + 1) >>> 0; // one count across streams: the BE checks the order
        view[0] = seq & 0xff;
        view[1] = (seq >>> 8) & 0xff;
        view[2] = (seq >>> 16) & 0xff;
        view[3] = seq >>> 24;
        if (q.addAllocated(view, 0, 0)) return true;
        q.freeOut(view);
        return false;
      }
    : () => q.add(buf, 0, 0);
  const fill = () => {
    let n = 0;
    // Each request takes one descriptor: post while one is free rather than until one is refused
    // (a refused post makes the queue arm its reclaim timer, §4.9 — a timer per refill).
    while (posted < total && q.inFlight < q.size && postOne()) {
      posted += size;
      if (++n === batch) {
        q.kick();
        n = 0;
      }
    }
    if (n > 0) q.kick();
  };
  q.onUsed = () => {
    done += size;
    if (done >= total) onDone(done);
  };
  // Refill once per run of completions (onUsedBatch: every completion one look at the used ring
  // found), synchronously: a producer that reacts to its completions in the same turn keeps the
  // ring full while the device works — also during a spin, where deferred work (a microtask)
  // would wait until the spin gives up and the device has run dry.
  q.onUsedBatch = () => {
    if (done < total) fill();
  };
  fill();
}

/** B2: 64 KiB one-way buffers (`zeroCopy`: produced in place, bulk64k_zc). */
function bulk(q, total, line, zeroCopy) {
  const size = 64 * 1024;
  return new Promise((resolve) => {
    // warm-up: touch the pages of the mapping once
    stream(
      q,
      size,
      32 * size,
      BULK_BATCH,
      () => {
        line('run-start');
        const t0 = performance.now();
        stream(
          q,
          size,
          total,
          BULK_BATCH,
          (bytes) => {
            const s = (performance.now() - t0) / 1000;
            line('result ' + JSON.stringify({ gbps: round(bytes / s / 1e9), bytes, seconds: round(s), queue_size: q.size, zero_copy: zeroCopy, fe_spin: globalThis.spinStats }));
            resolve();
          },
          zeroCopy,
        );
      },
      zeroCopy,
    );
  });
}

/** B3/B4: 64-byte one-way messages for `seconds`, then `idleS` seconds of nothing. */
function msgs(q, seconds, idleS, line) {
  const size = 64;
  return new Promise((resolve) => {
    stream(q, size, 20000 * size, BATCH, () => {
      line('run-start');
      const t0 = performance.now();
      // Run in slices so the clock is checked rarely: total for `seconds` at ~2 M msgs/s max.
      let total = 0;
      const slice = () =>
        stream(q, size, 200000 * size, BATCH, (bytes) => {
          total += bytes / size;
          const s = (performance.now() - t0) / 1000;
          if (s < seconds) return slice();
          line('run-end ' + JSON.stringify({ msgs: total, seconds: s, fe_spin: globalThis.spinStats }));
          line('idle-start');
          setTimeout(() => {
            line('idle-end');
            resolve();
          }, idleS * 1000);
        });
      slice();
    });
  });
}
