/**
 * A command on a pseudo-terminal (node-pty) whose output the test can stop reading: a terminal
 * that stalls, as an ssh session whose network stopped or a frozen terminal emulator does. The
 * test sees what the terminal shows, types into it, stops and resumes reading its master side,
 * and asks the kernel whether the terminal takes more output (`full()`). Waits are woken by the
 * terminal's output and exit events, never by sleeping.
 */
import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
import { spawn, type IPty } from 'node-pty';
import { BOUND_MS, descendants } from './e2e-system.js';

/**
 * Whether the terminal or FIFO at `path` takes no more output: one byte written to it without
 * blocking fails with EAGAIN. (A byte it does take reaches its reader like any other.)
 */
export function takesNoMore(path: string): boolean {
  const fd = openSync(path, constants.O_WRONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
  try {
    writeSync(fd, '.');
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return true;
    throw err;
  } finally {
    closeSync(fd);
  }
}

export class PtyProc {
  readonly pty: IPty;
  readonly name: string;
  /** Everything the terminal has shown so far (read while not paused). */
  output = '';
  /** The exit of the pty's own process, once it came. */
  exit: { exitCode: number; signal?: number } | null = null;
  readonly exited: Promise<{ exitCode: number; signal?: number }>;
  private waiters: (() => void)[] = [];

  /** `env` is added to this process's. */
  constructor(name: string, file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
    this.name = name;
    const env = { ...process.env, ...opts.env } as Record<string, string>;
    this.pty = spawn(file, args, { cols: 100, rows: 30, env, ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }) });
    this.pty.onData((d) => {
      this.output += d;
      this.wake();
    });
    this.exited = new Promise((resolve) => {
      this.pty.onExit((e) => {
        this.exit = e;
        this.wake();
        resolve(e);
      });
    });
  }

  /** The terminal's slave side, as the command sees it (/dev/pts/N). */
  get slave(): string {
    return (this.pty as unknown as { ptsName: string }).ptsName;
  }

  /**
   * Resolve once `cond()` holds, re-checked on every output and on exit, and every 20 ms for
   * state without events of its own (`full()`, /proc); throws after `timeoutMs`.
   */
  async until(cond: () => boolean, what: string, timeoutMs = BOUND_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: timed out waiting for ${what}; terminal (tail): ${JSON.stringify(this.output.slice(-1500))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 20));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  untilOutput(re: RegExp, timeoutMs?: number): Promise<void> {
    return this.until(() => re.test(this.output), `terminal output ${re}`, timeoutMs);
  }

  /** Stop reading the master side: once the kernel's buffer is full, the terminal takes no more output. */
  pause(): void {
    this.pty.pause();
  }

  resume(): void {
    this.pty.resume();
  }

  /**
   * Close the master side: the terminal hangs up, as when its window closes — SIGHUP to the
   * command, EIO on its descriptors. (node-pty has destroy() but does not declare it.)
   */
  hangUp(): void {
    (this.pty as unknown as { destroy(): void }).destroy();
  }

  /** Type `text` (keys go to the command's stdin whatever its output does). */
  type(text: string): void {
    this.pty.write(text);
  }

  /**
   * Whether the terminal takes no more output: one byte written to its slave side, without
   * blocking, fails with EAGAIN. (A byte it does take is shown like any other output.)
   */
  full(): boolean {
    return takesNoMore(this.slave);
  }

  /** Write into the terminal from here until it takes no more (the master must be paused); returns the bytes written. */
  fill(): number {
    const fd = openSync(this.slave, constants.O_WRONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
    const chunk = Buffer.alloc(4096, 0x2e);
    let n = 0;
    try {
      // A paused terminal holds well under 1 MiB (the kernel's pty buffers).
      while (n < 1 << 20) n += writeSync(fd, chunk);
      throw new Error(`${this.name}: the terminal took 1 MiB without filling up: is its master side still read?`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    } finally {
      closeSync(fd);
    }
    return n;
  }

  /**
   * Stall the terminal (pause, then fill it) so that it stays full: a moment after a write the
   * kernel moves up to 4 KiB on to the master's line discipline, which frees that much room
   * once; filled again until a refill a poll later finds no room, it takes nothing more.
   */
  async stall(): Promise<void> {
    this.pause();
    this.fill();
    let empty = 0;
    await this.until(() => (this.fill() === 0 ? ++empty : (empty = 0)) >= 2, 'the terminal to stay full');
  }

  /**
   * The pid of the process the pty's process started (or, after `exec`, that process itself)
   * whose command line names `bin`. Descendants first: a shell's own command line names it too.
   */
  childRunning(bin: string): number {
    for (const pid of [...descendants(this.pty.pid), this.pty.pid]) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(bin)) return pid;
      } catch {
        // gone meanwhile
      }
    }
    throw new Error(`${this.name}: no process running ${bin}`);
  }

  /** SIGKILL to the pty's process and everything it started, then wait for its exit. */
  async kill(): Promise<void> {
    for (const pid of descendants(this.pty.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    if (this.exit !== null) return;
    this.pty.kill('SIGKILL');
    await this.exited;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
