/**
 * Rate limit for repeated warning lines. A flood of misbehaving clients (thousands of connects
 * that hang up at once) must not turn into thousands of identical stderr lines: per kind of
 * warning, the first `burst` lines of a window are written, the rest are counted, and when the
 * window closes one summary line says how many were suppressed. Kinds are independent, so a rare
 * warning is never hidden behind a frequent one.
 */

export interface WarningLimiterOptions {
  /** Lines per kind written in one window before suppression starts. Default 5. */
  burst?: number;
  /** Window length in ms, counted from a kind's first line in it. Default 10 000. */
  windowMs?: number;
  /** Timer hook (tests drive it by hand); the default is an unref'd setTimeout. */
  setTimer?: (fn: () => void, ms: number) => { cancel(): void };
}

interface Window {
  written: number;
  suppressed: number;
  timer: { cancel(): void };
}

export class WarningLimiter {
  private readonly burst: number;
  private readonly windowMs: number;
  private readonly setTimer: NonNullable<WarningLimiterOptions['setTimer']>;
  private readonly windows = new Map<string, Window>();

  /** `write` receives whole lines (without the newline). */
  constructor(
    private readonly write: (line: string) => void,
    opts: WarningLimiterOptions = {},
  ) {
    this.burst = opts.burst ?? 5;
    this.windowMs = opts.windowMs ?? 10_000;
    this.setTimer =
      opts.setTimer ??
      ((fn, ms) => {
        const t = setTimeout(fn, ms).unref();
        return { cancel: () => clearTimeout(t) };
      });
  }

  /** Write `line` unless `kind` already used its burst in the current window. */
  warn(kind: string, line: string): void {
    let w = this.windows.get(kind);
    if (w === undefined) {
      w = { written: 0, suppressed: 0, timer: this.setTimer(() => this.close(kind), this.windowMs) };
      this.windows.set(kind, w);
    }
    if (w.written < this.burst) {
      w.written++;
      this.write(line);
    } else {
      w.suppressed++;
    }
  }

  /** Write the pending summaries now (at shutdown) and stop every timer. */
  flush(): void {
    for (const kind of [...this.windows.keys()]) this.close(kind);
  }

  private close(kind: string): void {
    const w = this.windows.get(kind);
    if (w === undefined) return;
    this.windows.delete(kind);
    w.timer.cancel();
    if (w.suppressed > 0) {
      const secs = Math.round(this.windowMs / 1000);
      this.write(`${w.suppressed} more ${kind} warning${w.suppressed === 1 ? '' : 's'} suppressed in ${secs} s`);
    }
  }
}
