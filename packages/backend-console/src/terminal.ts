/**
 * Raw mode on the back-end's terminal, restored on every way out: normal exit, signals (the CLI
 * calls restore() before exiting), uncaught errors ('exit' still runs) — a shell left in raw
 * mode is the one failure users remember.
 */
import type { ReadStream } from 'node:tty';

export class TerminalGuard {
  private readonly input: ReadStream | null;
  private active = false;
  private readonly onExit = (): void => this.restore();

  constructor(input: NodeJS.ReadStream) {
    this.input = input.isTTY ? (input as unknown as ReadStream) : null;
  }

  /** Whether the input is a terminal (raw mode possible). */
  get isTTY(): boolean {
    return this.input !== null;
  }

  /** Enter raw mode (no-op without a TTY). */
  enterRaw(): void {
    if (this.input === null || this.active) return;
    this.input.setRawMode(true);
    this.active = true;
    process.on('exit', this.onExit);
  }

  /** Leave raw mode; idempotent, never throws (the terminal may already be gone). */
  restore(): void {
    if (!this.active || this.input === null) return;
    this.active = false;
    process.off('exit', this.onExit);
    try {
      this.input.setRawMode(false);
    } catch {
      // EIO after a hang-up: nothing left to restore
    }
  }
}
