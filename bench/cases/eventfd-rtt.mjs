// B0 baseline: raw eventfd ping-pong between two Node processes through the addon.
// Usage: eventfd-rtt.mjs ROUNDS            (the pinger; it spawns the ponger)
//        eventfd-rtt.mjs --pong            (child: fds 3 = ping eventfd, 4 = pong eventfd)
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import binding from '@vshm/addon';
import { nodeCommand, percentiles, report, round } from '../lib.mjs';

const { POLL_READABLE } = binding;

if (process.argv[2] === '--pong') {
  const ping = 3;
  const pong = 4;
  const w = binding.createWatcher(ping, () => {
    const n = binding.eventfdRead(ping);
    if (n === 0) return;
    binding.eventfdWrite(pong, 1);
  });
  w.start(POLL_READABLE);
  process.on('SIGTERM', () => {
    w.close();
    process.exit(0);
  });
} else {
  const rounds = Number(process.argv[2] ?? 20000);
  const warmup = Math.min(1000, rounds >> 2);
  const ping = binding.eventfd(0, true);
  const pong = binding.eventfd(0, true);
  const [cmd, argv] = nodeCommand([fileURLToPath(import.meta.url), '--pong'], 1);
  const child = spawn(cmd, argv, {
    stdio: ['ignore', 'inherit', 'inherit', ping, pong],
  });
  const samples = new Float64Array(rounds);
  let i = -warmup;
  let t0 = 0n;
  const w = binding.createWatcher(pong, () => {
    if (binding.eventfdRead(pong) === 0) return;
    const t1 = process.hrtime.bigint();
    if (i >= 0) samples[i] = Number(t1 - t0) / 1000;
    if (++i === rounds) return finish();
    t0 = process.hrtime.bigint();
    binding.eventfdWrite(ping, 1);
  });
  w.start(POLL_READABLE);
  t0 = process.hrtime.bigint();
  binding.eventfdWrite(ping, 1);

  function finish() {
    w.close();
    child.kill('SIGTERM');
    const p = percentiles(samples);
    report({ median_us: round(p.median), p99_us: round(p.p99), rounds });
    binding.close(ping);
    binding.close(pong);
  }
}
