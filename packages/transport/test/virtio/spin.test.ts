import { EventEmitter } from 'node:events';
import { expect } from 'chai';
import { ArgumentError } from '../../src/errors.js';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import { AdaptiveSpin, DEFAULT_SPIN_US, SPIN_ENV, attachSpin, frontendPollable, spinUsFromEnv } from '../../src/virtio/spin.js';

/** A Pollable that reports scripted work counts, then nothing. */
function scripted(work: number[]): { poll(): number; calls: number } {
  const t = {
    calls: 0,
    poll(): number {
      return work[t.calls++] ?? 0;
    },
  };
  return t;
}

/** A fake clock (ms): every reading advances it by `stepUs` µs; `jump(ms)` moves it on. */
function fakeClock(stepUs = 1): { now: () => number; jump(ms: number): void } {
  let t = 1000;
  return {
    now: () => (t += stepUs / 1000),
    jump(ms: number) {
      t += ms;
    },
  };
}

function fakeDevice(): IvshmemDevice {
  const d = new EventEmitter() as unknown as IvshmemDevice & { onInterrupt: ((v: number) => void) | null };
  d.onInterrupt = null;
  return d;
}

describe('virtio spin (adaptive bounded poll)', () => {
  it('keeps polling while work arrives and stops once the peer is quiet', () => {
    const t = scripted([0, 2, 0, 1]);
    const s = new AdaptiveSpin(t, { spinUs: 200, maxRunUs: 100000, now: fakeClock().now });
    expect(s.spin()).to.equal(3);
    // polled past the last work until 200 µs (200 clock steps) passed without any
    expect(t.calls).to.be.within(195, 210);
    expect(s.stats.hits).to.equal(2);
    expect(s.stats.sessions).to.equal(1);
  });

  it('stops at the first empty poll once nothing is left to wait for (drained), counting no miss', () => {
    let inFlight = 3;
    const t = {
      calls: 0,
      poll(): number {
        t.calls++;
        if (inFlight === 0) return 0;
        inFlight--; // one completion per poll
        return 1;
      },
      drained: () => inFlight === 0,
    };
    const s = new AdaptiveSpin(t, { spinUs: 200, maxRunUs: 100000, now: fakeClock().now });
    expect(s.spin()).to.equal(3);
    expect(t.calls).to.equal(4); // three hits, one empty poll, then drained: no 200 µs of empty polls
    expect(s.stats).to.include({ hits: 3, misses: 0, drained: 1 });
    // Drained before anything arrived: not a miss either, and the budget is left as it was.
    const idle = new AdaptiveSpin({ poll: () => 0, drained: () => true }, { spinUs: 200, now: fakeClock().now });
    expect(idle.spin()).to.equal(0);
    expect(idle.stats).to.include({ misses: 0, drained: 1, backoffs: 0, budgetUs: 200 });
  });

  it('frontendPollable is drained exactly when no queue of the session has a request in flight', () => {
    const queues = [{ inFlight: 0 }, { inFlight: 0 }];
    const fe = { poll: () => 0, session: { queues } as { queues: { inFlight: number }[] } | null };
    const p = frontendPollable(fe);
    expect(p.drained!()).to.equal(true);
    queues[1].inFlight = 2;
    expect(p.drained!()).to.equal(false);
    queues[1].inFlight = 0;
    fe.session = null; // between sessions nothing can complete
    expect(p.drained!()).to.equal(true);
  });

  it('spinUs 0 never polls', () => {
    const t = scripted([5]);
    const s = new AdaptiveSpin(t, { spinUs: 0 });
    expect(s.spin()).to.equal(0);
    expect(t.calls).to.equal(0);
  });

  it('maxRunUs bounds a session even when work never stops', () => {
    const s = new AdaptiveSpin({ poll: () => 1 }, { spinUs: 50, maxRunUs: 1000, now: fakeClock().now });
    expect(s.spin()).to.be.within(990, 1010); // one poll per µs step, for 1000 µs
  });

  it('a re-entrant spin (from inside poll) does nothing', () => {
    let inner = -1;
    const s: AdaptiveSpin = new AdaptiveSpin(
      {
        poll: () => {
          if (inner < 0) inner = s.spin();
          return 0;
        },
      },
      { spinUs: 10, now: fakeClock().now },
    );
    s.spin();
    expect(inner).to.equal(0);
  });

  it('the budget shrinks after a wake-up long after a failed spin, never below minUs', () => {
    const clock = fakeClock();
    const s = new AdaptiveSpin({ poll: () => 0 }, { spinUs: 40, minUs: 10, now: clock.now });
    expect(s.stats.budgetUs).to.equal(40);
    s.spin();
    clock.jump(2); // 2 ms ≫ 40 µs: no spin could have caught this wake-up
    s.woke();
    expect(s.stats.budgetUs).to.equal(20);
    for (let i = 0; i < 4; i++) {
      s.spin();
      clock.jump(2);
      s.woke();
    }
    expect(s.stats.budgetUs).to.equal(10);
  });

  it('the budget grows when the wake-up came just after a spin gave up', () => {
    const clock = fakeClock();
    const s = new AdaptiveSpin({ poll: () => 0 }, { spinUs: 40, minUs: 5, now: clock.now });
    s.spin();
    clock.jump(2);
    s.woke(); // → 20
    s.spin();
    clock.jump(0.005); // 5 µs later: a 40 µs spin would have caught it
    s.woke();
    expect(s.stats.budgetUs).to.equal(40);
  });

  it('a preempted spin stops at once and pauses spinning', () => {
    // Readings 1 µs apart, except a 1 ms jump at the 4th: the process was descheduled.
    let ms = 1000;
    let n = 0;
    const clock = (): number => (ms += ++n === 4 ? 1 : 0.001);
    const t = scripted([]);
    const s = new AdaptiveSpin(t, { spinUs: 50, now: clock });
    s.spin();
    expect(s.stats.preempted).to.equal(1);
    expect(t.calls).to.equal(3);
    s.spin();
    expect(t.calls).to.equal(3); // paused
  });

  it('pauses spinning once spins stop paying off (idle or oversubscribed peer)', () => {
    const t = scripted([]);
    const s = new AdaptiveSpin(t, { spinUs: 5, now: fakeClock().now });
    for (let i = 0; i < 20; i++) s.spin();
    expect(s.stats.backoffs).to.be.greaterThan(0);
    const before = t.calls;
    s.spin(); // inside the backoff pause (≥ 10 ms; the loop above takes far less)
    expect(t.calls).to.equal(before);
  });

  it('checks options and the environment variable', () => {
    expect(() => new AdaptiveSpin({ poll: () => 0 }, { spinUs: -1 })).to.throw(ArgumentError);
    expect(() => new AdaptiveSpin({ poll: () => 0 }, { spinUs: 10, bogus: 1 } as never)).to.throw(ArgumentError);
    expect(spinUsFromEnv({})).to.equal(DEFAULT_SPIN_US);
    expect(spinUsFromEnv({ [SPIN_ENV]: '0' })).to.equal(0);
    expect(spinUsFromEnv({ [SPIN_ENV]: '25' })).to.equal(25);
    expect(() => spinUsFromEnv({ [SPIN_ENV]: 'fast' })).to.throw(ArgumentError);
  });

  it('attachSpin wraps the interrupt sink, spins after it, and detach restores it', () => {
    const d = fakeDevice();
    const seen: number[] = [];
    const sink = (v: number): void => {
      seen.push(v);
    };
    d.onInterrupt = sink;
    const t = scripted([]);
    const a = attachSpin(d, t, { spinUs: 20, now: fakeClock().now });
    expect(d.onInterrupt).to.not.equal(sink);
    d.onInterrupt!(1);
    expect(seen).to.deep.equal([1]);
    expect(t.calls).to.be.greaterThan(0);
    a.detach();
    expect(d.onInterrupt).to.equal(sink);
  });

  it('attachSpin with a zero budget leaves the sink alone', () => {
    const d = fakeDevice();
    const sink = (): void => {};
    d.onInterrupt = sink;
    attachSpin(d, { poll: () => 0 }, { spinUs: 0 });
    expect(d.onInterrupt).to.equal(sink);
  });
});
