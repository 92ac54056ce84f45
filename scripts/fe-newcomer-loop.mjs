#!/usr/bin/env node
// The front-end side of the newcomer race (docs/decisions.md, stop 20) against the real
// processes: a vshm-server (-P 0x8004) and a vshm-rng-backend that is stopped and restarted at
// once, N times, while one in-process front-end (openRngFrontend) stays up.
//
//   node scripts/fe-newcomer-loop.mjs [--restarts N] [--signal TERM|KILL|both] [--starve MS]
//                                     [--starve-at stop|lost] [--load] [--timeout MS]
//
// Per restart: stop the back-end (SIGTERM: orderly, its RESET rings the front-end; SIGKILL:
// nothing rung; `both` alternates), start the next one as soon as the old one has exited, wait
// for the front-end's next 'ready', then read 16 bytes through it. `--starve MS` keeps this
// process (the front-end) off the CPU for MS ms from just before the stop — the next back-end is
// then started by a shell — so the front-end finds the old back-end's RESET, the server's
// PEER_GONE, the newcomer's EVENT_FDs and perhaps its READY all waiting at once: the
// interleavings of packages/transport/test/virtio/frontend-newcomer.test.ts, as a loaded machine
// may produce them. `--starve-at lost` starts that time only once the front-end has reported the
// old back-end lost and gone back to waiting (the new back-end's READY may then be seen before
// PEER_GONE is read). `--load` runs two busy loops meanwhile.
//
// A restart fails when the front-end is not ready again within --timeout (default 10 s) or the
// read fails; the stuck back-end is then killed and the loop goes on. Prints one line per failure
// and a summary: failures, 'lost' / 'error' events beyond the one 'lost' each restart causes,
// transaction timeouts, and time to ready (from the stop) as median / p90 / max. Exit 1 if any
// restart failed. Run `npm run build:ts` first.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openRngFrontend } from '@vshm/example-rng';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SERVER_BIN = join(ROOT, 'packages/transport/bin/vshm-server.js');
const BACKEND_BIN = join(ROOT, 'examples/virtio-rng/bin/vshm-rng-backend.js');
const USAGE = 'usage: node scripts/fe-newcomer-loop.mjs [--restarts N] [--signal TERM|KILL|both] [--starve MS] [--starve-at stop|lost] [--load] [--timeout MS]';

function parse(argv) {
  const o = { restarts: 50, signal: 'both', starve: 0, starveAt: 'stop', load: false, timeout: 10_000 };
  const bad = (msg) => {
    process.stderr.write(`fe-newcomer-loop: ${msg} (${USAGE})\n`);
    process.exit(2);
  };
  const int = (name, v) => {
    if (v === undefined || !/^\d+$/.test(v)) bad(`${name} needs an integer ≥ 0, got '${v ?? ''}'`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--restarts') o.restarts = int(a, argv[++i]);
    else if (a === '--starve') o.starve = int(a, argv[++i]);
    else if (a === '--timeout') o.timeout = int(a, argv[++i]);
    else if (a === '--load') o.load = true;
    else if (a === '--starve-at') {
      o.starveAt = argv[++i];
      if (!['stop', 'lost'].includes(o.starveAt)) bad(`--starve-at is stop or lost, got '${o.starveAt ?? ''}'`);
    }
    else if (a === '--signal') {
      o.signal = argv[++i];
      if (!['TERM', 'KILL', 'both'].includes(o.signal)) bad(`--signal is TERM, KILL or both, got '${o.signal ?? ''}'`);
    } else bad(`unknown argument '${a}'`);
  }
  return o;
}

const opts = parse(process.argv.slice(2));
const dir = mkdtempSync(join(tmpdir(), 'vshm-fenew-'));
const sock = join(dir, 'server.sock');
const children = new Set();
const wake = new Set();
const notify = () => {
  for (const f of [...wake]) f();
};

function start(cmd, args) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderrText = '';
  child.stderr.on('data', (c) => {
    child.stderrText += c.toString();
    notify();
  });
  child.exited = new Promise((r) => child.once('exit', r));
  children.add(child);
  void child.exited.then(() => children.delete(child));
  return child;
}

function startBackend() {
  return start(process.execPath, [BACKEND_BIN, '-S', sock, '-q']);
}

/** Resolve when `cond()` holds, checked on every event `wake` reports; reject after `ms`. */
function waitFor(cond, ms, what, wake) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!cond()) return;
      clearTimeout(timer);
      wake.delete(check);
      resolve();
    };
    const timer = setTimeout(() => {
      wake.delete(check);
      reject(new Error(`no ${what} within ${ms} ms`));
    }, ms);
    wake.add(check);
    check();
  });
}

let fe = null;
const busy = [];
let exitCode = 0;
try {
  const server = start(process.execPath, [SERVER_BIN, '-v', '-l', '64K', '-n', '2', '-V', '3', '-P', '0x8004', '-S', sock]);
  await waitFor(() => server.stderrText.includes('listening on'), 10_000, 'server listening', wake);
  if (opts.load) {
    for (let k = 0; k < 2; k++) busy.push(start('sh', ['-c', 'while :; do :; done']));
  }
  let be = startBackend();
  await waitFor(() => server.stderrText.includes('peer 0 connected'), 10_000, 'back-end connected', wake);
  let readies = 0;
  const events = [];
  fe = await openRngFrontend(sock, { transactionTimeoutMs: 5000 });
  fe.transport.on('ready', () => {
    readies++;
    notify();
  });
  const block = new Int32Array(new SharedArrayBuffer(4));
  let starveOnLost = false;
  fe.transport.on('lost', (e) => {
    events.push(`lost: ${e.message}`);
    notify();
    if (starveOnLost) {
      starveOnLost = false;
      // After this turn: the recovery (State := RESET) has run by then.
      setImmediate(() => Atomics.wait(block, 0, 0, opts.starve));
    }
  });
  fe.transport.on('error', (e) => {
    events.push(`error: ${e.message}`);
    notify();
  });
  await fe.rng.whenLive();
  const times = [];
  const failures = [];
  let extraLost = 0;
  let errors = 0;
  let timeouts = 0;
  for (let i = 0; i < opts.restarts; i++) {
    const sig = opts.signal === 'both' ? (i % 2 === 0 ? 'SIGTERM' : 'SIGKILL') : `SIG${opts.signal}`;
    const before = readies;
    const eventsBefore = events.length;
    const t0 = performance.now();
    if (opts.starve > 0) {
      // The shell stops the old back-end and execs the new one once it is gone (a zombie: we
      // cannot reap it meanwhile), while this process — the front-end — gets no CPU.
      const old = be.pid;
      const gone = `s=$(cut -d' ' -f3 /proc/${old}/stat 2>/dev/null) && [ "$s" != Z ]`;
      be = start('sh', ['-c', `kill -${sig.slice(3)} ${old}; while ${gone}; do sleep 0.005; done; exec "${process.execPath}" "${BACKEND_BIN}" -S "${sock}" -q`]);
      if (opts.starveAt === 'stop') Atomics.wait(block, 0, 0, opts.starve);
      else starveOnLost = true;
    } else {
      const old = be;
      old.kill(sig);
      await old.exited;
      be = startBackend();
    }
    let failed = null;
    try {
      await waitFor(() => readies > before, opts.timeout, "front-end 'ready'", wake);
      times.push(performance.now() - t0);
      const bytes = await Promise.race([
        fe.rng.read(16),
        new Promise((_, reject) => setTimeout(() => reject(new Error('read timed out')), opts.timeout)),
      ]);
      if (bytes.length !== 16) failed = `read gave ${bytes.length} bytes`;
    } catch (err) {
      failed = err.message;
    }
    const mine = events.slice(eventsBefore);
    const lost = mine.filter((e) => e.startsWith('lost')).length;
    extraLost += Math.max(0, lost - 1);
    errors += mine.filter((e) => e.startsWith('error')).length;
    timeouts += mine.filter((e) => e.includes('not completed within')).length;
    if (lost > 1 || mine.some((e) => !e.startsWith('lost'))) process.stdout.write(`restart ${i} (${sig}): ${mine.join('; ')}\n`);
    if (failed !== null) {
      failures.push(i);
      process.stdout.write(`restart ${i} (${sig}) FAILED: ${failed}; front-end phase ${fe.transport.phase}; events ${mine.join('; ')}\n`);
      // Unstick: a new back-end connection ends the stuck one's session for both sides.
      be.kill('SIGKILL');
      await be.exited;
      be = startBackend();
      await waitFor(() => readies > before, opts.timeout, "front-end 'ready' after unsticking", wake);
    }
  }
  times.sort((a, b) => a - b);
  const q = (p) => (times.length === 0 ? NaN : times[Math.min(times.length - 1, Math.floor(p * times.length))]).toFixed(0);
  process.stdout.write(
    `restarts ${opts.restarts} (signal ${opts.signal}, starve ${opts.starve} ms, load ${opts.load ? 'two busy loops' : 'none'}): ` +
      `failed ${failures.length}, extra 'lost' ${extraLost}, 'error' ${errors}, transaction timeouts ${timeouts}; ` +
      `time to ready ms: median ${q(0.5)}, p90 ${q(0.9)}, max ${q(1)}\n`,
  );
  if (failures.length > 0) exitCode = 1;
} catch (err) {
  process.stderr.write(`fe-newcomer-loop: ${err.stack ?? err}\n`);
  exitCode = 1;
} finally {
  if (fe !== null) {
    await fe.transport.close();
    fe.peer.close();
  }
  for (const c of children) c.kill('SIGKILL');
  await Promise.all([...children].map((c) => c.exited));
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);
