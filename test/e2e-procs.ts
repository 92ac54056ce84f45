/**
 * Process helpers for the end-to-end tests in test/ (console back-end and front-end, npm start):
 * spawn the real CLIs (after `npx tsc --build`), wait for output or exit — woken by the
 * process's own output and exit events, never by sleeping — and clean everything up after each
 * test. Terminal (tmux) and /proc helpers live in e2e-system.ts.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BOUND_MS, Tmux, newTmuxSession } from './e2e-system.js';

export { BOUND_MS, until } from './e2e-system.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const SERVER_BIN = join(ROOT, 'packages/transport/bin/vshm-server.js');
export const BACKEND_BIN = join(ROOT, 'packages/backend-console/bin/vshm-console-backend.js');
export const FRONTEND_BIN = join(ROOT, 'packages/frontend-console/bin/vshm-console-frontend.js');
export const START_SCRIPT = join(ROOT, 'scripts/start.mjs');
export type ProcOptions = SpawnOptions & {
  /** false: count stdout bytes but do not keep them (bulk transfers). Default true. */
  keepStdout?: boolean;
  /** A command that execs the rest of its arguments (`setpriv --ruid=N`): node runs under it, same pid. */
  wrap?: string[];
};

/** A node CLI spawned with piped stdio; stdout and stderr are collected as they arrive. */
export class Proc {
  readonly child: ChildProcess;
  readonly name: string;
  stderr = '';
  exitCode: number | null = null;
  /** Resolves once the process exited AND its stdout/stderr closed: all output is in. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves on the 'exit' event (a grandchild may still hold the pipes open). */
  private readonly gone: Promise<void>;
  /** The process exited and its stdio closed: no more output will come. */
  private done = false;
  private out: Buffer[] = [];
  private outLen = 0;
  private waiters: (() => void)[] = [];

  constructor(name: string, bin: string, args: string[], opts: ProcOptions = {}) {
    this.name = name;
    const { keepStdout, wrap = [], ...spawnOpts } = opts;
    const [file, ...argv] = [...wrap, process.execPath, bin, ...args];
    this.child = spawn(file!, argv, { stdio: ['pipe', 'pipe', 'pipe'], ...spawnOpts });
    this.child.stdin?.on('error', () => {});
    this.child.stdout?.on('data', (c: Buffer) => {
      if (keepStdout !== false) this.out.push(c);
      this.outLen += c.length;
      this.wake();
    });
    this.child.stderr?.on('data', (c: Buffer) => {
      this.stderr += c.toString();
      this.wake();
    });
    this.gone = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        this.exitCode = code;
        this.wake();
        resolve();
      });
    });
    // 'close' follows 'exit' once stdout and stderr ended: only then is the output complete.
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        this.done = true;
        this.wake();
        resolve({ code, signal });
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything written to stdout so far (empty with keepStdout: false). */
  get stdout(): Buffer {
    if (this.out.length > 1) this.out = [Buffer.concat(this.out)];
    return this.out[0] ?? Buffer.alloc(0);
  }

  /** stdout as UTF-8 text. */
  get stdoutText(): string {
    return this.stdout.toString();
  }

  get stdoutLength(): number {
    return this.outLen;
  }

  write(text: string | Uint8Array): void {
    this.child.stdin?.write(text);
  }

  /**
   * Resolve once `cond()` holds, re-checked on every output and on exit of this process. Throws
   * if the process ended (exit and stdio closed) without it, or after `timeoutMs`.
   */
  async until(cond: () => boolean, what: string, timeoutMs = BOUND_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (this.done) throw new Error(`${this.name} exited (${String(this.exitCode)}) before ${what}; stderr: ${this.stderr.slice(-2000)}`);
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

  untilStdout(re: RegExp, timeoutMs?: number): Promise<void> {
    return this.until(() => re.test(this.stdoutText), `stdout ${re}`, timeoutMs);
  }

  untilStderr(re: RegExp, timeoutMs?: number): Promise<void> {
    return this.until(() => re.test(this.stderr), `stderr ${re}`, timeoutMs);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    await this.gone;
  }

  /** SIGTERM, SIGKILL after 5 s; resolves on exit. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.gone;
    clearTimeout(t);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/**
 * Per-test scratch: a temp dir with the server socket path, the processes and tmux sessions to
 * clean up. Reusable: `begin()` starts a test, `cleanup()` ends it (see `useScratch`).
 */
export class Scratch {
  readonly procs: Proc[] = [];
  readonly sessions: Tmux[] = [];
  private dirValue: string | null = null;

  constructor(begin = true) {
    if (begin) this.begin();
  }

  begin(): void {
    this.dirValue = mkdtempSync(join(tmpdir(), 'vshm-e2e-'));
  }

  get dir(): string {
    if (this.dirValue === null) throw new Error('Scratch used outside a test');
    return this.dirValue;
  }

  /** The server socket path. */
  get server(): string {
    return join(this.dir, 'vshm.sock');
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  spawn(name: string, bin: string, args: string[], opts: ProcOptions = {}): Proc {
    const p = new Proc(name, bin, args, opts);
    this.procs.push(p);
    return p;
  }

  /** vshm-server in the §7.1 console configuration (protocol and vectors changeable), once it listens. */
  async startServer(protocol = '0x8003', vectors = 3): Promise<Proc> {
    const s = this.spawn('server', SERVER_BIN, ['-l', '64K', '-n', '2', '-V', String(vectors), '-P', protocol, '-S', this.server]);
    await s.untilStderr(/listening on/);
    return s;
  }

  /**
   * A back-end, once connected (its documented stderr line "serving the console on PATH as peer
   * 0"), so that a front-end started next gets peer 1. `env` is added to this process's.
   */
  async startBackend(args: string[] = [], opts: { name?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Proc> {
    const env = opts.env === undefined ? {} : { env: { ...process.env, ...opts.env } };
    const b = this.spawn(opts.name ?? 'backend', BACKEND_BIN, ['-S', this.server, ...args], env);
    await b.untilStderr(/serving the console on .* as peer 0/);
    return b;
  }

  startFrontend(args: string[], opts: ProcOptions = {}): Proc {
    return this.spawn('frontend', FRONTEND_BIN, ['-S', this.server, ...args], opts);
  }

  /** A detached tmux session (killed in cleanup) running `command` via sh. */
  tmux(command: string, cols = 120, rows = 40): Tmux {
    const t = newTmuxSession(command, cols, rows);
    this.sessions.push(t);
    return t;
  }

  async cleanup(): Promise<void> {
    for (const t of this.sessions.splice(0)) t.kill();
    // Newest first (front-ends before their back-end and server); everything bounded by SIGKILL.
    for (const p of this.procs.splice(0).reverse()) await p.stop();
    if (this.dirValue !== null) rmSync(this.dirValue, { recursive: true, force: true });
    this.dirValue = null;
  }
}

/**
 * The per-test Scratch of a suite: call in the `describe` callback (`const s = useScratch(this)`);
 * each test gets a fresh temp dir, and its processes and sessions are cleaned up after it.
 * Hooks the suite adds later run after the cleanup.
 */
export function useScratch(suite: Mocha.Suite, timeoutMs = 120_000): Scratch {
  suite.timeout(timeoutMs);
  const s = new Scratch(false);
  beforeEach(() => s.begin());
  afterEach(() => s.cleanup());
  return s;
}
