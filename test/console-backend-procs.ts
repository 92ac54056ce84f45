/**
 * Process and tmux helpers for the console back-end end-to-end tests
 * (test/console-backend-*.test.ts, test/npm-start.test.ts): spawn the real CLIs (after
 * `npx tsc --build`), wait for output or exit (never sleep), and clean everything up.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const SERVER_BIN = join(ROOT, 'packages/transport/bin/vshm-server.js');
export const BACKEND_BIN = join(ROOT, 'packages/backend-console/bin/vshm-console-backend.js');
export const FRONTEND_BIN = join(ROOT, 'packages/frontend-console/bin/vshm-console-frontend.js');
export const START_SCRIPT = join(ROOT, 'scripts/start.mjs');
/** Failure bound for every wait (never a success condition). */
export const BOUND_MS = 45_000;

/** Poll `cond` every event-loop tick group until true; throws after `timeoutMs`. */
export async function until(cond: () => boolean, what: string, timeoutMs = BOUND_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export class Proc {
  readonly child: ChildProcess;
  readonly name: string;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(name: string, bin: string, args: string[], opts: SpawnOptions = {}) {
    this.name = name;
    this.child = spawn(process.execPath, [bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
    this.child.stdin?.on('error', () => {});
    this.child.stdout?.on('data', (c: Buffer) => (this.stdout += c.toString()));
    this.child.stderr?.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  write(text: string): void {
    this.child.stdin?.write(text);
  }

  async untilStdout(re: RegExp): Promise<void> {
    await until(() => re.test(this.stdout) || !this.running, `${this.name} stdout ${re}`);
    if (!re.test(this.stdout)) throw new Error(`${this.name} exited before ${re}; stderr: ${this.stderr}`);
  }

  async untilStderr(re: RegExp): Promise<void> {
    await until(() => re.test(this.stderr) || !this.running, `${this.name} stderr ${re}`);
    if (!re.test(this.stderr)) throw new Error(`${this.name} exited before ${re}; stderr: ${this.stderr}`);
  }
}

/** Per-test scratch: temp dir, socket paths, processes and tmux sessions to clean up. */
export class Scratch {
  readonly dir = mkdtempSync(join(tmpdir(), 'vshm-be-e2e-'));
  readonly server = join(this.dir, 'vshm.sock');
  readonly procs: Proc[] = [];
  readonly sessions: string[] = [];

  spawn(name: string, bin: string, args: string[], opts: SpawnOptions = {}): Proc {
    const p = new Proc(name, bin, args, opts);
    this.procs.push(p);
    return p;
  }

  async startServer(protocol = '0x8003'): Promise<Proc> {
    const s = this.spawn('server', SERVER_BIN, ['-l', '64K', '-n', '2', '-V', '3', '-P', protocol, '-S', this.server]);
    await s.untilStderr(/listening/);
    return s;
  }

  async startBackend(args: string[] = [], opts: SpawnOptions = {}): Promise<Proc> {
    const b = this.spawn('backend', BACKEND_BIN, ['-S', this.server, ...args], opts);
    await b.untilStderr(/serving the console on .* as peer 0/);
    return b;
  }

  startFrontend(args: string[]): Proc {
    return this.spawn('frontend', FRONTEND_BIN, ['-S', this.server, ...args]);
  }

  /** A detached tmux session of 120x40 without a status line, running `command` via sh. */
  tmux(command: string, cols = 120, rows = 40): Tmux {
    const name = `vshm-be-${process.pid}-${this.sessions.length}-${Math.random().toString(36).slice(2, 8)}`;
    const r = spawnSync('tmux', ['new-session', '-d', '-s', name, '-x', String(cols), '-y', String(rows), command]);
    if (r.status !== 0) throw new Error(`tmux new-session failed: ${r.stderr.toString()}`);
    this.sessions.push(name);
    const t = new Tmux(name);
    t.run('set-option', '-t', name, 'status', 'off');
    t.run('set-option', '-t', name, 'remain-on-exit', 'on');
    return t;
  }

  async cleanup(): Promise<void> {
    for (const s of this.sessions.splice(0)) spawnSync('tmux', ['kill-session', '-t', s]);
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

export class Tmux {
  constructor(readonly name: string) {}

  run(...args: string[]): string {
    const r = spawnSync('tmux', args);
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr.toString()}`);
    return r.stdout.toString();
  }

  capture(): string {
    // -J joins wrapped lines; -S - from the start of the history.
    return this.run('capture-pane', '-p', '-J', '-S', '-', '-t', this.name);
  }

  send(...keys: string[]): void {
    this.run('send-keys', '-t', this.name, ...keys);
  }

  /** Type `text` literally, then Enter. */
  type(text: string): void {
    this.run('send-keys', '-t', this.name, '-l', text);
    this.run('send-keys', '-t', this.name, 'Enter');
  }

  async untilPane(re: RegExp): Promise<string> {
    let last = '';
    await until(() => re.test((last = this.capture())), `tmux pane ${re}; pane:\n${last}`);
    return last;
  }

  /** The pane's process exited (remain-on-exit keeps the pane): its exit status. */
  async untilDead(): Promise<number> {
    let out = '';
    await until(() => (out = this.run('display-message', '-p', '-t', this.name, '#{pane_dead} #{pane_dead_status}')).startsWith('1'), 'pane exit');
    return Number(out.trim().split(' ')[1]);
  }
}

/** PIDs of live processes whose command line contains `needle`. */
export function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'latin1').replace(/\0/g, ' ');
      if (cmd.includes(needle)) pids.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export { existsSync };

/** PIDs of all live descendants of `root` (from /proc/PID/stat parent links). */
export function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'latin1');
      // pid (comm) state ppid …; comm may contain spaces and parentheses: split after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(e), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  for (const pid of parent.keys()) {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === root) {
        out.push(pid);
        break;
      }
    }
  }
  return out;
}

/** Whether process `pid` is alive (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
