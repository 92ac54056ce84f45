/**
 * vshm-server's warning rate limit: per kind, `burst` lines a window, then a count, then one
 * summary line when the window closes (or at shutdown). Timers are driven by hand.
 */
import { expect } from 'chai';
import { WarningLimiter } from '../../src/server/warning-limiter.js';

function manualTimers() {
  const pending: { fn: () => void; ms: number; live: boolean }[] = [];
  return {
    pending,
    setTimer(fn: () => void, ms: number) {
      const t = { fn, ms, live: true };
      pending.push(t);
      return { cancel: () => (t.live = false) };
    },
    /** Fire every live timer (the window ends). */
    fireAll() {
      for (const t of pending.splice(0)) if (t.live) t.fn();
    },
  };
}

describe('WarningLimiter (vshm-server log flood)', () => {
  it('writes the first `burst` lines of a kind, counts the rest, and summarises them once', () => {
    const lines: string[] = [];
    const timers = manualTimers();
    const lim = new WarningLimiter((l) => lines.push(l), { burst: 3, windowMs: 10_000, setTimer: timers.setTimer });
    for (let i = 0; i < 30_000; i++) lim.warn('VSHM_ERR_INIT_SEND', `could not send INIT to new peer ${i}`);
    expect(lines).to.have.length(3);
    expect(timers.pending).to.have.length(1);
    expect(timers.pending[0].ms).to.equal(10_000);
    timers.fireAll();
    expect(lines).to.have.length(4);
    expect(lines[3]).to.equal('29997 more VSHM_ERR_INIT_SEND warnings suppressed in 10 s');
    // A new window starts afresh.
    lim.warn('VSHM_ERR_INIT_SEND', 'again');
    expect(lines[4]).to.equal('again');
  });

  it('keeps kinds apart: a rare warning is not hidden behind a frequent one', () => {
    const lines: string[] = [];
    const timers = manualTimers();
    const lim = new WarningLimiter((l) => lines.push(l), { burst: 1, setTimer: timers.setTimer });
    lim.warn('A', 'a1');
    lim.warn('A', 'a2');
    lim.warn('B', 'b1');
    expect(lines).to.deep.equal(['a1', 'b1']);
    lim.flush();
    expect(lines).to.deep.equal(['a1', 'b1', '1 more A warning suppressed in 10 s']);
    expect(timers.pending.every((t) => !t.live)).to.equal(true);
  });

  it('writes no summary for a window without suppressed lines', () => {
    const lines: string[] = [];
    const timers = manualTimers();
    const lim = new WarningLimiter((l) => lines.push(l), { burst: 5, setTimer: timers.setTimer });
    lim.warn('A', 'a1');
    timers.fireAll();
    lim.flush();
    expect(lines).to.deep.equal(['a1']);
  });
});
