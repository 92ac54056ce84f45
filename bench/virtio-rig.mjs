// Process plumbing for the virtio cases: an in-process IvshmemServer, back-end and front-end
// children (separate processes, connected in the order §1.4 requires: back-end first), line
// messages on stdout, and CPU accounting of other processes through /proc.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as transport from '@vshm/transport';
import { nodeCommand } from './lib.mjs';

const { IvshmemServer } = transport;

/** Start a virtio server for `deviceId` in this process. */
export async function startServer({ deviceId, memorySize = 32 * 1024 * 1024, vectors = 2, outputSectionSize = 0 }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vshm-bench-'));
  const socketPath = path.join(dir, 'ivshmem.sock');
  const server = new IvshmemServer({ socketPath, memorySize, vectors, maxPeers: 2, protocol: 0x8000 | deviceId, outputSectionSize });
  // report() exits from inside the case, before its `finally` can stop us: remove the dir (and
  // with it the socket) at exit whatever the path. The memfd memory goes with the process.
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  process.once('exit', removeDir);
  try {
    await server.start();
  } catch (err) {
    removeDir();
    throw err;
  }
  return {
    socketPath,
    async stop() {
      await server.stop();
      removeDir();
    },
  };
}

/**
 * A child process speaking lines on stdout: `next(prefix)` resolves with the next line starting
 * with `prefix` (the rest after a space); a child that exits first rejects.
 */
export function spawnChild(script, args, env = {}, cpu = null) {
  // VSHM_BENCH_PROF=DIR: profile every child (node --cpu-prof); summarise with bench/prof.mjs.
  const prof = process.env.VSHM_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.VSHM_BENCH_PROF] : [];
  const [cmd, argv] = nodeCommand([...prof, script, ...args], cpu);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  let buf = '';
  const lines = [];
  let waiter = null;
  let exited = null;
  const pump = () => {
    if (!waiter) return;
    const i = lines.findIndex((l) => l === waiter.prefix || l.startsWith(waiter.prefix + ' '));
    if (i >= 0) {
      const [line] = lines.splice(i, 1);
      const w = waiter;
      waiter = null;
      w.resolve(line.slice(w.prefix.length + 1));
    } else if (exited) {
      const w = waiter;
      waiter = null;
      w.reject(new Error(`${path.basename(script)} ${args[0] ?? ''} exited (${exited}) before '${w.prefix}'`));
    }
  };
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    pump();
  });
  child.on('exit', (code, signal) => {
    exited = `${code ?? signal}`;
    pump();
  });
  return {
    child,
    pid: child.pid,
    next(prefix) {
      return new Promise((resolve, reject) => {
        waiter = { prefix, resolve, reject };
        pump();
      });
    },
    kill() {
      if (exited === null) child.kill('SIGTERM');
    },
    exited: new Promise((resolve) => child.once('exit', resolve)),
  };
}

/**
 * CPU seconds of process `pid`: the sum of its threads' run time from /proc/PID/task/TID/schedstat
 * (nanoseconds, the scheduler's own accounting). /proc/PID/stat's utime/stime are sampled in
 * 10 ms ticks, too coarse for idle figures: one tick in 5 s already reads 0.2 %. Threads that
 * exited are missed (Node's worker pool barely runs here); falls back to /proc/PID/stat.
 */
export function procCpuSeconds(pid) {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    }
    return ns / 1e9;
  } catch {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime in USER_HZ ticks
  }
}

/**
 * Connect a back-end for `ops` through the public openBackend (connect.ts), which runs the
 * adaptive spin by default (spin.ts; budget from VSHM_SPIN_US, 0 = off).
 */
export async function openBackend(socketPath, ops, opts = {}) {
  const { peer, transport: be } = await transport.openBackend(socketPath, ops, opts);
  peer.on('error', (e) => process.stderr.write(`bench: be peer: ${e.message}\n`));
  be.on('error', (e) => process.stderr.write(`bench: be: ${e.message}\n`));
  return { peer, be };
}

/** Connect a front-end for `ops` (public openFrontend, spinning by default); resolves with the live session. */
export async function openFrontend(socketPath, ops, opts = {}) {
  const { peer, transport: fe, ready } = await transport.openFrontend(socketPath, ops, opts);
  peer.on('error', (e) => process.stderr.write(`bench: fe peer: ${e.message}\n`));
  fe.on('error', (e) => process.stderr.write(`bench: fe: ${e.message}\n`));
  const session = await ready;
  return { peer, fe, session };
}

export const here = (rel, base) => fileURLToPath(new URL(rel, base));
