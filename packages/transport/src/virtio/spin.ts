/**
 * Adaptive bounded spin: after a doorbell wake-up, keep polling the rings for a
 * short, bounded time before going back to sleep on the eventfd (spec §4.9 "rescan after
 * enabling" makes this safe: every poll ends with the ring re-armed, so a buffer published while
 * we stop spinning still rings the doorbell).
 *
 * Why: an eventfd wake-up costs the receiver an epoll return, a libuv callback and a read(2)
 * (about 5–10 µs on a 2-vCPU VM), which dominates a small-message round trip. A peer that answers
 * within the spin window is seen by a plain memory load instead (< 1 µs).
 *
 * Bounds, so that idle CPU stays ~0:
 * - a spin only ever starts right after a delivered interrupt: a process that receives nothing
 *   never spins;
 * - a front-end spin stops as soon as nothing is in flight (`Pollable.drained`): no completion
 *   can come, and what the application does next may be waiting for the event loop;
 * - it ends after `budgetUs` without new work, and in any case after `maxRunUs` (the event loop
 *   gets its turn: timers, sockets, peer-gone events);
 * - a spin that notices it was preempted (a gap of > 100 µs between two polls: the CPUs are
 *   oversubscribed, or the peer was woken on our CPU, and spinning would only keep it from
 *   running) stops at once and backs off as below;
 * - when fewer than about a quarter of recent spins found work (EWMA), or after a preemption,
 *   spinning pauses for 5 ms, doubling up to 80 ms while it keeps not paying off (each probe
 *   then costs a few budgets: well under 1 % of a core), so on a loaded machine the transport
 *   behaves as without spinning;
 * - the budget adapts, like KVM's halt polling: when a spin expired without work and the next
 *   wake-up came soon after (the work would have been caught by a spin of at most `spinUs`), the
 *   budget doubles; when it came later, it halves (down to `minUs`). A peer that answers within
 *   the window keeps it, a peer that answers rarely (or an idle one) quickly stops costing CPU.
 *
 * Tuning: option `spinUs` (the maximum budget; 0 disables spinning) or the environment variable
 * VSHM_SPIN_US, read when a spinner is created. The default comes from `npm run bench`
 * (bench/README.md): see DEFAULT_SPIN_US.
 *
 * This file touches no shared memory itself: it calls the transport's public `poll()` (which
 * does all the §6 validation) and wraps the device's `onInterrupt` sink. A target that offers
 * `setNotify` (VirtioBackend) also has the peer's doorbells suppressed while it spins: the peer
 * saves its eventfd write, and nothing is lost because re-enabling re-checks the rings.
 */
import { ArgumentError } from '../errors.js';
import type { IvshmemDevice } from '../ivshmem/device.js';

/**
 * Default maximum spin budget in µs, chosen from `npm run bench` on a 2-vCPU VM (bench/README.md):
 * with the two sides on different CPUs a 64-byte round trip took 1.6–2.9 µs median with budgets of
 * 50 and 100 µs, but 70–80 µs with 10 or 20 µs — shorter than this VM's cross-CPU wake-up, so
 * neither side ever caught the other awake. 100 µs also cut the p99 from ~100 µs (at 50) to ~8 µs.
 * On one CPU, or on a busy machine, spins do not pay off and the backoff switches them off.
 */
export const DEFAULT_SPIN_US = 100;
/** Upper bound of one spin session, µs: the event loop is never starved longer than this. */
export const DEFAULT_MAX_RUN_US = 2000;
/**
 * A gap this long between two polls of one spin means the process was preempted (ms). Scheduler
 * preemption lasts a time slice (≥ ~1 ms); shorter gaps are interrupts or hypervisor exits, and
 * counting those (an earlier 20 µs threshold) backed off needlessly: the pinned round-trip p99
 * was 6–90 µs with 20 µs and 1.7–4.5 µs with 100 µs (bench/README.md).
 */
const PREEMPTED_MS = 0.1;
/** Backoff after spins stopped paying off: first pause and upper bound (ms). */
const MIN_BACKOFF_MS = 5;
const MAX_BACKOFF_MS = 80;
/** Environment variable overriding the default budget (µs, 0 = no spinning). */
export const SPIN_ENV = 'VSHM_SPIN_US';

export interface SpinOptions {
  /** Maximum spin budget in µs; 0 disables spinning. Default: $VSHM_SPIN_US, else DEFAULT_SPIN_US. */
  spinUs?: number;
  /** Smallest adaptive budget in µs (≤ spinUs). Default spinUs / 16. */
  minUs?: number;
  /** Upper bound of one spin session in µs. Default DEFAULT_MAX_RUN_US. */
  maxRunUs?: number;
  /** Adapt the budget between minUs and spinUs. Default true. */
  adaptive?: boolean;
  /** Clock in ms (default performance.now); tests inject a fake one so nothing depends on timing. */
  now?: () => number;
}

/** Something that can be polled without an interrupt: VirtioFrontend and VirtioBackend. */
export interface Pollable {
  /** Do pending work; return how much (0 = nothing found). Must not throw. */
  poll(): number;
  /**
   * Optional: `false` asks the peer not to ring the doorbell while we spin (we poll anyway);
   * `true` asks for doorbells again and returns whether work arrived in between (the spinner
   * then polls once more). VirtioBackend implements it (kick suppression, §4.9), and
   * frontendPollable() for a front-end (interrupt suppression). Must not throw.
   */
  setNotify?(on: boolean): boolean;
  /**
   * Optional: true when no work can arrive without a new action of our own — a front-end with
   * nothing in flight waits for no completion. A spin that finds nothing stops at once then, so
   * work the application deferred (a microtask, a stream callback that posts the next request)
   * runs now instead of after a budget of empty polls. Must not throw.
   */
  drained?(): boolean;
}

/** Counters for benchmarks and tests. */
export interface SpinStats {
  /** Spin sessions started. */
  sessions: number;
  /** Polls inside spins that found work (wake-ups saved). */
  hits: number;
  /** Sessions that ended without finding anything. */
  misses: number;
  /** Times spinning was paused because it stopped paying off. */
  backoffs: number;
  /** Sessions cut short because the process was preempted while spinning. */
  preempted: number;
  /** Sessions ended because nothing was left to wait for (Pollable.drained). */
  drained: number;
  /** The current adaptive budget, µs. */
  budgetUs: number;
}

function checkUs(name: string, v: number, max = 1e6): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) {
    throw new ArgumentError(`${name} must be a number of µs in 0…${max}, got ${String(v)}`);
  }
  return v;
}

/** The budget from the environment, or the default. A malformed value is an ArgumentError. */
export function spinUsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[SPIN_ENV];
  if (raw === undefined || raw === '') return DEFAULT_SPIN_US;
  const v = Number(raw);
  return checkUs(`${SPIN_ENV}='${raw}'`, v);
}

export class AdaptiveSpin {
  readonly maxUs: number;
  readonly minUs: number;
  readonly maxRunUs: number;
  readonly adaptive: boolean;
  private readonly target: Pollable;
  private readonly now: () => number;
  private budget: number;
  private inSpin = false;
  /** Share of recent spins that found work (EWMA). */
  private score = 1;
  /** No spinning before this performance.now() (backoff), and the next backoff length. */
  private offUntil = 0;
  private backoffMs = MIN_BACKOFF_MS;
  /** performance.now() when the last spin gave up, 0 when none is pending. */
  private missAt = 0;
  readonly stats: SpinStats;

  constructor(target: Pollable, opts: SpinOptions = {}) {
    for (const k of Object.keys(opts)) {
      if (!['spinUs', 'minUs', 'maxRunUs', 'adaptive', 'now'].includes(k)) throw new ArgumentError(`AdaptiveSpin: unknown option '${k}'`);
    }
    this.target = target;
    this.maxUs = opts.spinUs === undefined ? spinUsFromEnv() : checkUs('spinUs', opts.spinUs);
    this.minUs = opts.minUs === undefined ? this.maxUs / 16 : checkUs('minUs', opts.minUs, this.maxUs);
    this.maxRunUs = opts.maxRunUs === undefined ? DEFAULT_MAX_RUN_US : checkUs('maxRunUs', opts.maxRunUs);
    this.adaptive = opts.adaptive ?? true;
    this.now = opts.now ?? (() => performance.now());
    this.budget = this.maxUs;
    this.stats = { sessions: 0, hits: 0, misses: 0, preempted: 0, drained: 0, backoffs: 0, budgetUs: this.budget };
  }

  /**
   * A wake-up arrived (call before handling it). Adapts the budget to the time since the last
   * spin expired without work: short enough to have been caught → grow, else shrink.
   */
  woke(): void {
    if (this.missAt === 0 || !this.adaptive) return;
    const sleptUs = (this.now() - this.missAt) * 1000;
    this.missAt = 0;
    if (sleptUs + this.budget <= this.maxUs) this.budget = Math.min(this.maxUs, Math.max(this.minUs, this.budget * 2));
    else this.budget = Math.max(this.minUs, this.budget / 2);
    this.stats.budgetUs = this.budget;
  }

  /**
   * Poll until `budget` µs pass without work (or maxRunUs in total). Call it right after a
   * wake-up has been handled. Returns the work found. Re-entrant calls (from inside poll()) return 0.
   */
  spin(): number {
    if (this.maxUs === 0 || this.inSpin) return 0;
    const clock = this.now;
    const start = clock();
    if (start < this.offUntil) {
      this.missAt = 0;
      return 0;
    }
    this.inSpin = true;
    const target = this.target;
    const notify = target.setNotify !== undefined;
    if (notify) target.setNotify!(false);
    const budgetMs = this.budget / 1000;
    const stopAt = start + this.maxRunUs / 1000;
    let last = start;
    let now = start;
    let found = 0;
    let preempted = false;
    let drained = false;
    this.stats.sessions++;
    try {
      for (;;) {
        const prev = now;
        const n = target.poll();
        now = clock();
        if (n > 0) {
          found += n;
          this.stats.hits++;
          last = now;
        } else {
          // An empty poll takes well under a microsecond. A gap of a time slice means the
          // scheduler took the CPU away: the machine is oversubscribed (or the peer was woken on
          // our CPU), and spinning only delays the peer we wait for. Give up and back off.
          if (now - prev > PREEMPTED_MS) {
            preempted = true;
            break;
          }
          if (now - last >= budgetMs) break;
          if (target.drained !== undefined && target.drained()) {
            drained = true;
            break;
          }
        }
        if (now >= stopAt) break;
      }
    } finally {
      // Doorbells back on before we sleep; work that slipped in meanwhile is taken now (its
      // doorbell was suppressed).
      if (notify && target.setNotify!(true)) found += target.poll();
      this.inSpin = false;
    }
    if (found === 0 && !drained) this.stats.misses++;
    if (preempted) this.stats.preempted++;
    if (drained) {
      // Nothing was awaited: neither a hit nor a miss of the budget, and the next wake-up says
      // nothing about it (it follows our own next request).
      this.stats.drained++;
      this.missAt = 0;
      return found;
    }
    if (this.adaptive) {
      // Pay-off score: the share of recent spins that found work (EWMA, weight 1/8).
      this.score += ((found > 0 ? 1 : 0) - this.score) / 8;
      if (preempted || this.score < 0.25) {
        // Spinning does not pay here (a slow peer, or CPUs shared with other work): back off
        // for a while, doubling the pause each time (≤ MAX_BACKOFF_MS), then try again.
        this.offUntil = now + this.backoffMs;
        this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
        // The next probe gets the full window: a short one could never see a peer that only
        // answers after its own wake-up.
        this.score = 0.5;
        this.budget = this.stats.budgetUs = this.maxUs;
        this.missAt = 0;
        this.stats.backoffs++;
      } else if (found > 0) {
        this.backoffMs = MIN_BACKOFF_MS;
      }
    }
    // Either way the spin ended without work for `budget`: the next wake-up tells how far off it was.
    this.missAt = now;
    return found;
  }
}

/** The part of VirtioFrontend a spin needs (structural, so this file imports no front-end code). */
export interface SpinnableFrontend {
  poll(): number;
  readonly session: { readonly queues: readonly unknown[] } | null;
}

/** True when no queue of the live session has a request in flight (or there is no session). */
function nothingInFlight(fe: SpinnableFrontend): boolean {
  const qs = fe.session?.queues;
  if (qs === undefined) return true;
  for (let i = 0; i < qs.length; i++) {
    const q = qs[i] as { inFlight?: number } | undefined;
    if (q !== undefined && q.inFlight !== 0) return false;
  }
  return true;
}

/**
 * A Pollable over a front-end that also suppresses the device's used-buffer interrupts while it
 * spins (FrontendQueue.setCallbacks), on whatever session is live at the time (sessions change
 * across recoveries, §4.10).
 */
export function frontendPollable(fe: SpinnableFrontend): Pollable {
  return {
    poll: () => fe.poll(),
    // A front-end with nothing in flight waits for no completion (config events and a lost
    // back-end come by interrupt whether we spin or not).
    drained: () => nothingInFlight(fe),
    setNotify(on: boolean): boolean {
      const qs = fe.session?.queues;
      if (qs === undefined) return false;
      let pending = false;
      for (const q of qs) {
        const set = (q as { setCallbacks?: (on: boolean) => boolean }).setCallbacks;
        if (set !== undefined && set.call(q, on)) pending = true;
      }
      return pending;
    },
  };
}

/** Handle returned by attachSpin. */
export interface SpinAttachment {
  readonly spinner: AdaptiveSpin;
  /** Restore the device's previous interrupt sink (if it is still ours). */
  detach(): void;
}

/**
 * Wrap `device.onInterrupt` (installed by the transport's start()) so that every delivered
 * interrupt is followed by a bounded spin on `target` — the VirtioBackend itself, or
 * `frontendPollable(frontend)`. Call after `start()`, and `detach()` before closing the
 * transport (its close() only clears a sink that is still its own). With a budget of 0 nothing
 * is wrapped.
 */
export function attachSpin(device: IvshmemDevice, target: Pollable, opts: SpinOptions = {}): SpinAttachment {
  const spinner = new AdaptiveSpin(target, opts);
  const inner = device.onInterrupt;
  if (spinner.maxUs === 0 || inner === null) return { spinner, detach() {} };
  const wrapped = (vector: number): void => {
    spinner.woke();
    inner(vector);
    spinner.spin();
  };
  device.onInterrupt = wrapped;
  return {
    spinner,
    detach() {
      if (device.onInterrupt === wrapped) device.onInterrupt = inner;
    },
  };
}
