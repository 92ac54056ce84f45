/**
 * Process helpers for the console front-end end-to-end tests (test/console-frontend-*.test.ts):
 * spawn the real CLIs (after `npx tsc --build`), wait for output (never sleep), and kill and
 * clean up everything in after hooks.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const SERVER_BIN = join(ROOT, 'packages/transport/bin/vshm-server.js');
export const BACKEND_BIN = join(ROOT, 'packages/backend-console/bin/vshm-console-backend.js');
export const FRONTEND_BIN = join(ROOT, 'packages/frontend-console/bin/vshm-console-frontend.js');

export const BOUND_MS = 60_000;

export class Proc {
  readonly child: ChildProcess;
  readonly name: string;
  private out: Buffer[] = [];
  private outLen = 0;
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitCode: number | null = null;
  private waiters: (() => void)[] = [];

  constructor(name: string, args: string[], opts: SpawnOptions & { keepStdout?: boolean } = {}) {
    this.name = name;
    this.child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
    this.child.stdin?.on('error', () => {});
    this.child.stdout?.on('data', (c: Buffer) => {
      if (opts.keepStdout !== false) this.out.push(c);
      this.outLen += c.length;
      this.wake();
    });
    this.child.stderr?.on('data', (c: Buffer) => {
      this.stderr += c.toString();
      this.wake();
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.wake();
        resolve({ code, signal });
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get stdout(): Buffer {
    if (this.out.length > 1) this.out = [Buffer.concat(this.out)];
    return this.out[0] ?? Buffer.alloc(0);
  }

  get stdoutLength(): number {
    return this.outLen;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolve once `cond()` holds, re-checked on every output or exit of this process. */
  async until(cond: () => boolean, what: string, timeoutMs = BOUND_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: timed out waiting for ${what}; stderr: ${this.stderr.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  untilStderr(re: RegExp, timeoutMs?: number): Promise<void> {
    return this.until(() => re.test(this.stderr), `stderr ${re}`, timeoutMs);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    await this.exited;
  }
}

/** Per-test scratch: a temp dir, socket paths and the processes to kill afterwards. */
export class Scratch {
  readonly dir = mkdtempSync(join(tmpdir(), 'vshm-fe-e2e-'));
  readonly procs: Proc[] = [];
  readonly server = join(this.dir, 'vshm.sock');

  path(name: string): string {
    return join(this.dir, name);
  }

  spawn(name: string, bin: string, args: string[], opts: SpawnOptions & { keepStdout?: boolean } = {}): Proc {
    const p = new Proc(name, [bin, ...args], opts);
    this.procs.push(p);
    return p;
  }

  async startServer(): Promise<Proc> {
    const s = this.spawn('server', SERVER_BIN, ['-l', '64K', '-n', '2', '-V', '3', '-P', '0x8003', '-S', this.server]);
    await s.untilStderr(/listening on/);
    return s;
  }

  /**
   * Start a back-end and wait until it is connected (its documented stderr line "serving the
   * console on PATH as peer 0"), so a front-end started next gets peer 1.
   */
  async startBackend(name = 'backend', extra: string[] = [], env?: NodeJS.ProcessEnv): Promise<Proc> {
    const b = this.spawn(name, BACKEND_BIN, ['-S', this.server, ...extra], env === undefined ? {} : { env: { ...process.env, ...env } });
    await b.until(() => /serving the console on/.test(b.stderr) || !b.running, 'back-end up');
    if (!b.running) throw new Error(`${name} exited ${String(b.exitCode)}: ${b.stderr}`);
    return b;
  }

  startFrontend(args: string[], opts: SpawnOptions & { keepStdout?: boolean } = {}): Proc {
    return this.spawn('frontend', FRONTEND_BIN, ['-S', this.server, ...args], opts);
  }

  async cleanup(): Promise<void> {
    // Front-ends first (orderly), then the rest; everything is bounded by SIGKILL.
    for (const p of this.procs.splice(0).reverse()) {
      if (!p.running) continue;
      p.child.kill('SIGTERM');
      const t = setTimeout(() => p.child.kill('SIGKILL'), 5000);
      await p.exited;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
