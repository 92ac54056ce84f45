// Shared helpers for benchmark cases: statistics, child-process plumbing, argument parsing.
// Cases print exactly one JSON object as their last stdout line; run.mjs collects it.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

/** Median and 99th percentile of a Float64Array of samples (sorted in place, numerically). */
export function percentiles(samples) {
  samples.sort(); // TypedArray sort is numeric
  const at = (q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))];
  return { median: at(0.5), p99: at(0.99) };
}

export function round(x, digits = 3) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Run `script` (path relative to bench/cases) in a fresh Node process and resolve with the JSON
 * object it prints as its last stdout line. `fds` are extra fds shared as child fds 3, 4, ….
 * The child is killed (SIGKILL) after `timeoutMs` so a hung case cannot stall the whole run.
 */
export function runCase(script, args = [], { fds = [], timeoutMs = 60000, env } = {}) {
  const file = fileURLToPath(new URL(`./cases/${script}`, import.meta.url));
  return new Promise((resolve, reject) => {
    const childEnv = env ? { ...process.env, ...env } : process.env;
    // Pinned cases: this process (side A) on CPU 0; the case pins its other side to CPU 1.
    const [cmd, argv] = childEnv.VSHM_BENCH_PIN === '1' && hasTaskset() ? ['taskset', ['-c', '0', process.execPath, file, ...args]] : [process.execPath, [file, ...args]];
    const child = spawn(cmd, argv, {
      stdio: ['ignore', 'pipe', 'inherit', ...fds],
      env: childEnv,
    });
    let out = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => (out += d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return reject(new Error(`${script} timed out after ${timeoutMs} ms`));
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`${script} exited with ${code ?? signal}`));
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`${script} printed no JSON result: ${JSON.stringify(out.slice(-200))}`));
      }
    });
  });
}

/** `--name value` style option from argv, or the default. */
export function option(argv, name, dflt) {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
}

/** CPU seconds (user + system) this process has used so far. */
export function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/**
 * Print the case result as the last stdout line and exit (handles and children notwithstanding).
 * It ends the process: call it after the case's cleanup (servers stopped, children exited,
 * temporary directories removed), never inside a try whose finally does that cleanup.
 */
export function report(result) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
}

/**
 * Command to run Node with `args`, pinned to `cpu` when VSHM_BENCH_PIN=1 (run.mjs --pin) and
 * taskset exists: [file, argv]. Pinning the two sides of a case to different CPUs keeps the
 * scheduler from waking one side on the CPU where the other is spinning (wake-affine).
 */
export function nodeCommand(args, cpu) {
  if (process.env.VSHM_BENCH_PIN === '1' && cpu != null && hasTaskset()) {
    return ['taskset', ['-c', String(cpu), process.execPath, ...args]];
  }
  return [process.execPath, args];
}

let tasksetChecked = null;
/** Pinning needs taskset and at least two CPUs (taskset -c 1 fails on a single-CPU machine). */
export function hasTaskset() {
  if (tasksetChecked === null) {
    tasksetChecked = os.cpus().length >= 2 && ['/usr/bin/taskset', '/bin/taskset'].some((p) => existsSync(p));
  }
  return tasksetChecked;
}
