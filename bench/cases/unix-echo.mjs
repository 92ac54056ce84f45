// B0 baseline: Node `net` UNIX-socket echo of 64-byte messages between two processes.
// Usage: unix-echo.mjs ROUNDS    (client; spawns the echo server)   unix-echo.mjs --serve PATH
import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { percentiles, report, round } from '../lib.mjs';

if (process.argv[2] === '--serve') {
  const server = net.createServer((s) => {
    s.setNoDelay?.(true);
    s.on('data', (d) => s.write(d));
    s.on('error', () => {});
  });
  server.listen(process.argv[3], () => process.stdout.write('ready\n'));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
} else {
  const rounds = Number(process.argv[2] ?? 20000);
  const warmup = Math.min(1000, rounds >> 2);
  const sock = path.join(os.tmpdir(), `vshm-bench-echo-${process.pid}.sock`);
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', sock], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout.once('data', () => {
    const c = net.connect(sock);
    const msg = Buffer.alloc(64, 0x61);
    const samples = new Float64Array(rounds);
    let i = -warmup;
    let got = 0;
    let t0 = 0n;
    c.on('connect', () => {
      t0 = process.hrtime.bigint();
      c.write(msg);
    });
    c.on('data', (d) => {
      got += d.length;
      if (got < 64) return;
      got -= 64;
      const t1 = process.hrtime.bigint();
      if (i >= 0) samples[i] = Number(t1 - t0) / 1000;
      if (++i === rounds) {
        c.destroy();
        const p = percentiles(samples);
        // The server unlinks its socket when it closes: report (which exits) once it is gone.
        child.once('exit', () => report({ median_us: round(p.median), p99_us: round(p.p99), rounds }));
        child.kill('SIGTERM');
        return;
      }
      t0 = process.hrtime.bigint();
      c.write(msg);
    });
  });
}
