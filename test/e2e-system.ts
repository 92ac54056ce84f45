/**
 * System helpers for the end-to-end tests: a bounded poll for state without events of its own,
 * tmux sessions (a real pty for terminal programs) and /proc queries (what is still running).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Failure bound for every wait (never a success condition). */
export const BOUND_MS = 60_000;

/**
 * Poll `cond` until true; throws after `timeoutMs`. For state that has no event of its own
 * (a driver object in this process, a tmux pane, /proc); output of a Proc has `Proc.until`.
 */
export async function until(cond: () => boolean, what: string, timeoutMs = BOUND_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A detached tmux session of `cols`x`rows` without a status line, running `command` via sh. Each
 * session has its own tmux server on a socket in a private temp dir (`-S`), never the user's
 * default server and never /tmp/tmux-UID: kill() ends the server and removes the dir, so tests
 * leave nothing in /tmp.
 */
export function newTmuxSession(command: string, cols = 120, rows = 40): Tmux {
  const name = `vshm-e2e-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  const dir = mkdtempSync(join(tmpdir(), 'vshm-tmux-'));
  const socket = join(dir, 'tmux.sock');
  const r = spawnSync('tmux', ['-S', socket, 'new-session', '-d', '-s', name, '-x', String(cols), '-y', String(rows), command]);
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`tmux new-session failed: ${r.stderr.toString()}`);
  }
  const t = new Tmux(name, socket, dir);
  t.run('set-option', '-t', name, 'status', 'off');
  t.run('set-option', '-t', name, 'remain-on-exit', 'on');
  return t;
}

export class Tmux {
  constructor(
    readonly name: string,
    /** The private tmux server's socket (`tmux -S`). */
    readonly socket: string,
    private readonly dir: string,
  ) {}

  /** End the session and its private server, remove the socket dir (idempotent). */
  kill(): void {
    spawnSync('tmux', ['-S', this.socket, 'kill-server']);
    rmSync(this.dir, { recursive: true, force: true });
  }

  run(...args: string[]): string {
    const r = spawnSync('tmux', ['-S', this.socket, ...args]);
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

/**
 * Whether a descendant of `root` runs `argv` (exec'd: its /proc cmdline) as the foreground job of
 * its terminal (its process group is the terminal's foreground group): only then does a ^C typed
 * there reach that job. Output the job's shell printed before starting it does not say so.
 */
export function foregroundJob(root: number, argv: readonly string[]): boolean {
  const cmdline = argv.map((a) => `${a}\0`).join('');
  return descendants(root).some((pid) => {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'latin1') !== cmdline) return false;
      // pid (comm) state ppid pgrp session tty_nr tpgid …
      const f = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ').pop()!.split(' ');
      return f[2] === f[5];
    } catch {
      return false; // gone meanwhile
    }
  });
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
