import { EventEmitter } from 'node:events';
import { expect } from 'chai';
import { ArgumentError } from '../src/errors.js';
import type { IvshmemDevice } from '../src/ivshmem/device.js';
import { AdaptiveSpin, DEFAULT_SPIN_US, SPIN_ENV, attachSpin, spinUsFromEnv } from '../src/virtio/spin.js';

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

function fakeDevice(): IvshmemDevice {
  const d = new EventEmitter() as unknown as IvshmemDevice & { onInterrupt: ((v: number) => void) | null };
  d.onInterrupt = null;
  return d;
}

describe('virtio spin (adaptive bounded poll)', () => {
  it('keeps polling while work arrives and stops once the peer is quiet', () => {
    const t = scripted([0, 2, 0, 1]);
    const s = new AdaptiveSpin(t, { spinUs: 200, maxRunUs: 100000 });
    expect(s.spin()).to.equal(3);
    expect(t.calls).to.be.greaterThan(4); // polled past the last work until the budget expired
    expect(s.stats.hits).to.equal(2);
    expect(s.stats.sessions).to.equal(1);
  });

  it('spinUs 0 never polls', () => {
    const t = scripted([5]);
    const s = new AdaptiveSpin(t, { spinUs: 0 });
    expect(s.spin()).to.equal(0);
    expect(t.calls).to.equal(0);
  });

  it('maxRunUs bounds a session even when work never stops', () => {
    const s = new AdaptiveSpin({ poll: () => 1 }, { spinUs: 50, maxRunUs: 1000 });
    expect(s.spin()).to.be.greaterThan(0); // returns at all: the loop is bounded
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
      { spinUs: 10 },
    );
    s.spin();
    expect(inner).to.equal(0);
  });

  it('the budget shrinks after a wake-up long after a failed spin, never below minUs', async () => {
    const s = new AdaptiveSpin({ poll: () => 0 }, { spinUs: 40, minUs: 10 });
    expect(s.stats.budgetUs).to.equal(40);
    for (let i = 0; i < 4; i++) {
      s.spin();
      await new Promise((r) => setTimeout(r, 2)); // ≥ 2 ms ≫ 40 µs: the spin could not have caught it
      s.woke();
    }
    expect(s.stats.budgetUs).to.equal(10);
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
    const a = attachSpin(d, t, { spinUs: 20 });
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
