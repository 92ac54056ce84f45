// B0 baseline: Node `net` UNIX-socket one-way stream of 64 KiB writes, acknowledged at the end.
// Usage: unix-stream.mjs TOTAL_MIB    (client; spawns the sink)    unix-stream.mjs --sink PATH TOTAL
import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { report, round } from '../lib.mjs';

if (process.argv[2] === '--sink') {
  const total = Number(process.argv[4]);
  const server = net.createServer((s) => {
    let n = 0;
    s.on('data', (d) => {
      n += d.length;
      if (n >= total) s.end(Buffer.from([1]));
    });
    s.on('error', () => {});
  });
  server.listen(process.argv[3], () => process.stdout.write('ready\n'));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
} else {
  const total = Number(process.argv[2] ?? 512) * 1024 * 1024;
  const sock = path.join(os.tmpdir(), `vshm-bench-stream-${process.pid}.sock`);
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--sink', sock, String(total)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout.once('data', () => {
    const c = net.connect(sock);
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    let sent = 0;
    let t0 = 0n;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!c.write(chunk)) return c.once('drain', pump);
      }
    };
    c.on('connect', () => {
      t0 = process.hrtime.bigint();
      pump();
    });
    c.on('data', () => {
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      c.destroy();
      // The sink unlinks its socket when it closes: report (which exits) once it is gone.
      child.once('exit', () => report({ gbps: round(total / s / 1e9), bytes: total, seconds: round(s) }));
      child.kill('SIGTERM');
    });
  });
}
