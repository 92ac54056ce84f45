/**
 * One virtio-console port as a Node `Duplex` (spec §7.2): bytes written to the stream go to the
 * port's transmitq, bytes the device puts into the port's receiveq are pushed to the readable
 * side.
 *
 * The stream object outlives device sessions: the driver attaches the port's queue handles on
 * probe and detaches them on remove (§4.10 recovery), and the port holds every transmit byte
 * until the device reported it used. A transmit request that comes back through `onFailed` (the
 * back-end went away before consuming it) goes back into the queue at its original position and
 * is sent again, in order, exactly once, once the next session attaches.
 *
 * Zero-copy transmit: where the queue offers `allocOut`/`addAllocated` (the transport's queues
 * do), a written chunk is copied once, straight into a shared buffer, and that buffer is the
 * only copy we hold while it is posted. A private copy is taken only when a request fails — in
 * `onFailed`, from the shared buffer, before the transport lets go of it — so the common case
 * allocates nothing per chunk. Until its pieces are posted the port refers to the writer's chunk
 * itself: `_write`'s callback (after which the writer may reuse it) runs only once every piece
 * is in shared memory. A queue without `allocOut` (a test double) gets a private copy per piece
 * and `add()`, as before.
 *
 * Backpressure:
 * - writable: `_write`'s callback runs once every piece of the chunk has been posted to the
 *   transmitq (copied into shared memory). While the ring or the shared memory is full, or no
 *   device is attached, the callback waits — so the Writable's highWaterMark bounds what we hold.
 * - readable: receive buffers are re-posted only while the consumer wants data (`push` returned
 *   true, or `_read` was called). A consumer that stops reading leaves the receiveq empty, so the
 *   device stops delivering and the back-end's own input backs up.
 */
import { Duplex } from 'node:stream';
import { createLogger as createDebug } from '@vshm/transport';
import type { DriverQueueHandle } from '@vshm/transport';
import { ConsoleError } from './errors.js';

const debug = createDebug('vshm:console-fe');

/** Terminal size of a port: `cols` × `rows` (config SIZE or RESIZE, §7.2/§7.3). */
export interface ConsoleSize {
  readonly cols: number;
  readonly rows: number;
}

/** Largest transmit buffer we post (Linux's tty layer sends at most 2048 bytes, §7.3). */
export const DEFAULT_TX_PIECE = 2048;
/**
 * Size of each receive buffer kept posted on the receiveq: one page, as Linux's virtio_console
 * posts. A back-end that fills one buffer per doorbell (Jailhouse's console does) pays one round
 * trip per buffer, so 1 KiB buffers cost it 4× the round trips of a Linux front-end (issue 12).
 */
export const DEFAULT_RX_BUFFER = 4096;
/**
 * Default receive buffer size with MULTIPORT: up to 31 ports keep their receiveqs full out of
 * one shared region (the console back-end's embedded server has 64 KiB), where page-sized
 * buffers on every port would take all of it and starve transmission (see docs/decisions.md).
 */
export const DEFAULT_MULTIPORT_RX_BUFFER = 1024;
/** Largest receive buffer size accepted (ConsolePortOptions.rxBufferSize). */
export const MAX_RX_BUFFER = 65536;
/**
 * Writable highWaterMark of a port when none is given (perf). The port holds a writer's chunks by
 * reference until they are posted, so this bounds no copy, only how much a writer may hand over
 * before write() says wait. With Node's 16 KiB a 64 KiB write always returned false, and the
 * writer posted one chunk per event-loop turn — one kick and one 'drain' per chunk. At 1 MiB a
 * writer fills the transmitq in one turn and the driver kicks once for the batch
 * (the console bench case, 512 MiB tx, 3 pairs: CPU s per GB 1.37 / 1.63 / 1.51 → 1.32 / 1.21 / 1.36).
 */
export const DEFAULT_WRITABLE_HIGH_WATER = 1 << 20;
/** Smallest piece a transmit chunk is split down to when shared memory is short (one 64 B chunk, §5.1). */
const MIN_TX_PIECE = 64;
/**
 * Private memory that received bytes are gathered in (perf): the bytes of a completion run go to
 * the readable side one slab at a time, a push of a view of it, instead of one fresh Buffer and
 * one push per receive buffer. A new slab is taken when the current one is full; the old one
 * lives on only in the views pushed from it.
 *
 * 16 KiB, not 64: slabs are fresh memory every time (the consumer may keep what we push), and
 * freeing 64 KiB blocks makes glibc hand the heap back to the kernel between V8's collections
 * (a free of ≥ 64 KiB runs its trim check), so their pages fault in again on the next use —
 * ~16 µs a fault on this VM. With 64 KiB slabs the front-end took 11–105 K faults per 2 GiB of
 * `console_stream_rx`, with 16 KiB 10.5–15 K, about the floor seen with trimming switched off
 * (docs/decisions.md, branch `cons`). Four pushes per 64 KiB cost less than those faults.
 */
export const RX_SLAB = 16384;
/**
 * A gathered run this short is pushed as its own small copy (from Node's pool) and its slab space
 * reused: an interactive console pushes a few bytes at a time, and a consumer that keeps such
 * chunks must not pin a slab with each.
 */
const RX_SMALL_PUSH = 4096;

/**
 * Where a transmit request's bytes live (`TxToken.data`):
 * - 'chunk': a view of the writer's chunk — only until `_write` calls back, which waits for every
 *   piece to be posted;
 * - 'private': our own copy (a queue without zero-copy posting, or taken when a request failed);
 * - 'shared': the posted shared-memory buffer itself (allocOut), freed by the transport after
 *   onUsed/onFailed.
 */
export type TxHome = 'chunk' | 'private' | 'shared';

/** A transmit request: its bytes, posted or waiting to be. */
export interface TxToken {
  readonly kind: 'tx';
  data: Uint8Array;
  home: TxHome;
  posted: boolean;
}
/** A receive request: an empty device-writable buffer. */
export interface RxToken {
  readonly kind: 'rx';
}
const RX_TOKEN: RxToken = Object.freeze({ kind: 'rx' });

/**
 * How a port asks the driver to kick its queues: batched (one kick per queue per tick, from a
 * microtask), or with `now` at once — together with every kick still pending — where the port
 * knows its batch is complete (the end of a completion run, `onUsedBatch`).
 */
export type KickScheduler = (queue: DriverQueueHandle, now?: boolean) => void;

export interface ConsolePortOptions {
  /** Bytes per posted receive buffer, 1 … MAX_RX_BUFFER. Default DEFAULT_RX_BUFFER (4096). */
  rxBufferSize?: number;
  txPieceSize?: number;
  highWaterMark?: number;
}

/**
 * Events (besides the Duplex ones):
 * - 'name' (name: string): PORT_NAME arrived (MULTIPORT).
 * - 'resize' (size: ConsoleSize): RESIZE for this port, or a config SIZE change of port 0.
 * - 'host-open' / 'host-close': the device side opened/closed the port (PORT_OPEN, MULTIPORT).
 * - 'attach' / 'detach': a device session started/stopped serving this port.
 * - 'removed': DEVICE_REMOVE; the readable side ends.
 * - 'completion': internal — a request completed, shared memory may have been freed.
 */
export class ConsolePort extends Duplex {
  /** Port number (0 … max_nr_ports − 1). */
  readonly id: number;
  /** PORT_NAME, or null for an unnamed port. */
  portName: string | null = null;
  /** True once the device marked this the console port (CONSOLE_PORT), or port 0 without MULTIPORT. */
  isConsole = false;
  /** Device-side open state (PORT_OPEN from the device); null until the current device said anything. */
  hostOpen: boolean | null = null;
  /** Last terminal size seen for this port, or null. */
  size: ConsoleSize | null = null;

  private rx: DriverQueueHandle | null = null;
  private tx: DriverQueueHandle | null = null;
  private readonly kick: KickScheduler;
  /** The rxBufferSize option, or null: the default the driver passes to attach(). */
  private readonly rxBufferOption: number | null;
  private rxBufferSize = DEFAULT_RX_BUFFER;
  private readonly txPieceSize: number;
  /** Every transmit request not yet used by the device, in stream order (posted ones first). */
  private readonly txq: TxToken[] = [];
  /** `_write` callback waiting for its pieces to be posted. */
  private writeCallback: ((err?: Error | null) => void) | null = null;
  /** `_final` callback waiting for txq to drain. */
  private finalCallback: ((err?: Error | null) => void) | null = null;
  /** The consumer wants data: keep the receiveq full. */
  private wantRead = true;
  private removed = false;
  /** A request of the current session failed: the session is ending, post nothing more on it. */
  private sessionFailing = false;
  /** Transmit waits for the driver's word that this is still the same port (see attach()). */
  private txHeld = false;
  /**
   * Receive side gathering (rx queues with `onUsedBatch`): `rxSlab[rxStart, rxEnd)` holds bytes
   * received in the current completion run, not yet pushed.
   */
  private rxSlab: Buffer | null = null;
  private rxStart = 0;
  private rxEnd = 0;
  /** Receive buffers re-posted in place (DriverQueueHandle.repost) and not yet kicked. */
  private rxReposted = 0;
  /** Completions arrived whose follow-up (push, refill, re-post, kick) waits for the run's end. */
  private completionsPending = false;
  private flushQueued = false;
  private readonly flushTask = (): void => {
    this.flushQueued = false;
    this.afterCompletions(false);
  };

  /** @internal Ports are made by the `ConsoleDriver`, never by users. */
  constructor(id: number, kick: KickScheduler, opts: ConsolePortOptions = {}) {
    // Without an explicit highWaterMark the writable side gets DEFAULT_WRITABLE_HIGH_WATER (the
    // readable side keeps Node's default): `highWaterMark`, when given, still sets both.
    super({ allowHalfOpen: true, highWaterMark: opts.highWaterMark, writableHighWaterMark: DEFAULT_WRITABLE_HIGH_WATER });
    this.id = id;
    this.kick = kick;
    const rxb = opts.rxBufferSize;
    if (rxb !== undefined && (!Number.isInteger(rxb) || rxb < 1 || rxb > MAX_RX_BUFFER)) {
      throw new ConsoleError('VSHM_ERR_ARGUMENT', '7.3', `rxBufferSize must be an integer 1…${MAX_RX_BUFFER}, got ${String(rxb)}`);
    }
    this.rxBufferOption = rxb ?? null;
    this.txPieceSize = opts.txPieceSize ?? DEFAULT_TX_PIECE;
  }

  /** Whether a device session currently serves this port. */
  get attached(): boolean {
    return this.rx !== null;
  }

  /** Transmit bytes held (posted or waiting), not yet reported used by the device. */
  get pendingTransmitBytes(): number {
    let n = 0;
    for (const t of this.txq) n += t.data.length;
    return n;
  }

  /**
   * Start serving on a new session's queues (probe, or DEVICE_ADD with MULTIPORT). Installs the
   * queue callbacks, fills the receiveq and re-sends transmit data the last session left.
   * `defaultRxBufferSize` applies unless the rxBufferSize option was given. With `holdTransmit`
   * nothing is posted on the transmitq until releaseTransmit(): the driver has yet to learn
   * whether the new device's port with this id is the port this stream was (PORT_NAME).
   */
  attach(rx: DriverQueueHandle, tx: DriverQueueHandle, defaultRxBufferSize = DEFAULT_RX_BUFFER, holdTransmit = false): void {
    if (this.removed) return;
    this.rxBufferSize = this.rxBufferOption ?? defaultRxBufferSize;
    this.rx = rx;
    this.tx = tx;
    this.sessionFailing = false;
    this.txHeld = holdTransmit;
    this.rxReposted = 0;
    // Queues that tell the end of a completion run (the transport's) get their completions
    // handled per run: one push, one refill, one kick. Others (test doubles) per completion.
    const rxBatched = rx.onUsedBatch !== undefined;
    const txBatched = tx.onUsedBatch !== undefined;
    rx.onUsed = rxBatched ? (_token, data) => this.gather(data) : (_token, data) => this.received(data);
    rx.onFailed = () => {
      // Receive buffers carry no data: nothing to keep. The session is ending.
      this.sessionFailing = true;
    };
    tx.onUsed = txBatched ? (token) => this.transmittedInRun(token as TxToken) : (token) => this.transmitted(token as TxToken);
    tx.onFailed = (token) => this.transmitFailed(token as TxToken);
    if (rxBatched) rx.onUsedBatch = () => this.afterCompletions(true);
    if (txBatched) tx.onUsedBatch = () => this.afterCompletions(true);
    debug('port %d: attached (rxq %d, txq %d), %d tx bytes to (re)send', this.id, rx.index, tx.index, this.pendingTransmitBytes);
    this.emit('attach');
    this.service();
  }

  /**
   * The session ended (§4.10): stop touching its queues. Every in-flight request was already
   * returned through onFailed, so unused transmit data is back in `txq` waiting to be re-sent.
   */
  detach(): void {
    if (this.rx === null) return;
    // Bytes received in the ending session's last run are ours: deliver them now.
    this.pushGathered();
    this.rx = null;
    this.tx = null;
    this.txHeld = false; // the next attach decides again
    // Defensive: a transport that skipped onFailed for some request must not make us lose it.
    for (let i = 0; i < this.txq.length; i++) {
      const t = this.txq[i];
      if (t.posted && !this.keep(t)) this.txq.splice(i--, 1);
    }
    debug('port %d: detached, %d tx bytes kept', this.id, this.pendingTransmitBytes);
    this.emit('detach');
  }

  /** Whether transmission waits for releaseTransmit() (attached with `holdTransmit`). */
  get transmitHeld(): boolean {
    return this.txHeld;
  }

  /** The device confirmed the port: post what waits. */
  releaseTransmit(): void {
    if (!this.txHeld) return;
    this.txHeld = false;
    this.service();
  }

  /** Retry whatever waits for ring space or shared memory (called after any completion). */
  service(): void {
    this.pumpTransmit();
    this.refillReceive();
  }

  /** DEVICE_REMOVE: the port is gone for good. The readable side ends; writes fail. */
  markRemoved(): void {
    if (this.removed) return;
    this.pushGathered(); // received before the removal: delivered before the end
    this.removed = true;
    this.detach();
    this.emit('removed');
    this.push(null);
    // Nothing held can be delivered any more: fail the waiting writer (and end()), drop the bytes.
    this.txq.length = 0;
    const err = new ConsoleError('VSHM_ERR_PORT_REMOVED', '7.2', `port ${this.id} was removed by the device`);
    const cb = this.writeCallback;
    this.writeCallback = null;
    if (cb !== null) cb(err);
    const fin = this.finalCallback;
    this.finalCallback = null;
    if (fin !== null) fin(err);
  }

  // --------------------------------------------------------------------------------- receive

  private received(data: Uint8Array): void {
    // A removed port's buffers may still come back from the ring: the stream has ended.
    if (this.removed) return;
    if (data.length > 0) {
      // `data` views shared memory only for the duration of the call: copy it.
      if (!this.push(Buffer.from(data))) this.wantRead = false;
    }
    this.refillReceive();
    this.emit('completion');
  }

  /**
   * One receive completion of a run (queues with `onUsedBatch`): copy its bytes into the slab;
   * the push, the refill and the kick follow once per run in afterCompletions(). A microtask
   * does it too, should a run end without its batch call.
   */
  private gather(data: Uint8Array): void {
    if (this.removed) return;
    const n = data.length;
    if (n > 0) {
      let slab = this.rxSlab;
      if (slab === null || slab.length - this.rxEnd < n) {
        this.pushGathered(); // a short run is copied out and its space reused: look again
        slab = this.rxSlab;
        if (slab === null || slab.length - this.rxEnd < n) {
          slab = this.rxSlab = Buffer.allocUnsafe(Math.max(RX_SLAB, n)); // every byte handed out is written first
          this.rxStart = this.rxEnd = 0;
        }
      }
      slab.set(data, this.rxEnd);
      this.rxEnd += n;
    }
    // The bytes are copied out: give the same buffer back to the device (published by the kick at
    // the run's end) rather than free it there and allocate — and zero, §5.1 — a new one.
    const rx = this.rx;
    if (rx !== null && rx.repost !== undefined && this.wantRead && !this.sessionFailing && rx.repost()) this.rxReposted++;
    this.noteCompletion();
  }

  /** Push what gather() collected: one chunk (a slab view, or a small copy). */
  private pushGathered(): void {
    const slab = this.rxSlab;
    const start = this.rxStart;
    const end = this.rxEnd;
    if (slab === null || end === start) return;
    let chunk: Buffer;
    if (end - start < RX_SMALL_PUSH) {
      chunk = Buffer.from(slab.subarray(start, end)); // small: copy out, reuse the space
      this.rxEnd = start;
    } else {
      chunk = slab.subarray(start, end); // the slab space is the consumer's from now on
      this.rxStart = end;
    }
    if (!this.push(chunk)) this.wantRead = false;
  }

  /** A completion of a run: remember it, and make sure its follow-up runs even without a batch call. */
  private noteCompletion(): void {
    this.completionsPending = true;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushTask);
    }
  }

  /**
   * The end of a completion run (or the microtask behind it): push the gathered bytes, re-post
   * receive buffers and waiting transmit pieces, and — at a run's end — publish them at once
   * rather than from a microtask: a run inside the transport's bounded spin is followed by more
   * polling in the same turn, and the device must see the new buffers meanwhile.
   */
  private afterCompletions(runEnd: boolean): void {
    if (!this.completionsPending) return;
    this.completionsPending = false;
    this.pushGathered();
    this.pumpTransmit(runEnd);
    this.refillReceive(runEnd);
    this.emit('completion');
  }

  /** Keep the receiveq full of empty device-writable buffers while the consumer reads. */
  private refillReceive(kickNow = false): void {
    const rx = this.rx;
    if (rx === null || rx.live === false || !this.wantRead || this.removed || this.sessionFailing) return;
    let added = 0;
    while (rx.inFlight < rx.size && rx.add(null, this.rxBufferSize, RX_TOKEN)) added++;
    if (added > 0 || this.rxReposted > 0) {
      this.rxReposted = 0;
      this.kick(rx, kickNow);
    }
  }

  override _read(): void {
    this.wantRead = true;
    this.refillReceive();
  }

  // -------------------------------------------------------------------------------- transmit

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.removed) {
      callback(new ConsoleError('VSHM_ERR_PORT_REMOVED', '7.2', `port ${this.id} was removed by the device`));
      return;
    }
    // Pieces refer to the chunk until they are posted (copied into shared memory, or privately
    // for a queue without allocOut); the callback waits for that, so the writer cannot reuse the
    // chunk under us. Copies we may need after a back-end restart (§4.10) come from onFailed.
    const piece = this.txPieceSize;
    if (chunk.length <= piece) {
      this.txq.push({ kind: 'tx', data: chunk, home: 'chunk', posted: false });
    } else {
      for (let off = 0; off < chunk.length; off += piece) {
        this.txq.push({ kind: 'tx', data: chunk.subarray(off, Math.min(chunk.length, off + piece)), home: 'chunk', posted: false });
      }
    }
    this.writeCallback = callback;
    if (this.tx === null) debug('port %d: no session, %d tx bytes held', this.id, this.pendingTransmitBytes);
    this.pumpTransmit();
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.txq.length === 0) {
      callback();
      return;
    }
    this.finalCallback = callback;
    this.maybeCallBack();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // The pending write's callback will never run, so its writer may reuse the chunk: what is
    // still queued from it must not refer to it any more.
    for (const t of this.txq) {
      if (t.home === 'chunk') {
        t.data = new Uint8Array(t.data);
        t.home = 'private';
      }
    }
    this.writeCallback = null;
    this.finalCallback = null;
    callback(err);
  }

  /** Post waiting transmit pieces in order; call back the writer once its chunk is posted. */
  private pumpTransmit(kickNow = false): void {
    // A queue whose session is ending (its acknowledged completions are being delivered, §4.10)
    // takes nothing: do not post, and above all do not split pieces for it.
    const tx = this.sessionFailing || this.txHeld || this.tx?.live === false ? null : this.tx;
    if (tx !== null) {
      let added = 0;
      // No `inFlight < size` shortcut: a refused add() is how the transport learns that a
      // producer waits, and then reclaims completions a back-end may never notify (§4.9).
      for (let i = 0; i < this.txq.length; i++) {
        const t = this.txq[i];
        if (t.posted) continue;
        if (this.post(tx, t)) {
          added++;
          continue;
        }
        // Shared memory short. If nothing of ours is in flight no completion of this port will
        // ever retry, so split the piece smaller (down to one 64 B chunk) and try again.
        if (tx.inFlight === 0 && t.data.length > MIN_TX_PIECE) {
          const half = Math.max(MIN_TX_PIECE, t.data.length >> 1);
          this.txq.splice(i + 1, 0, { kind: 'tx', data: t.data.subarray(half), home: t.home, posted: false });
          t.data = t.data.subarray(0, half);
          i--;
          continue;
        }
        break;
      }
      if (added > 0) this.kick(tx, kickNow);
    }
    this.maybeCallBack();
  }

  /**
   * Post one waiting piece. Zero-copy where the queue allows it: one copy into a shared buffer,
   * which then holds the bytes (our other reference is dropped). Else a private copy, then add().
   */
  private post(tx: DriverQueueHandle, t: TxToken): boolean {
    if (tx.allocOut !== undefined && tx.addAllocated !== undefined && tx.freeOut !== undefined) {
      const view = tx.allocOut(t.data.length, t.data); // the one copy, into shared memory
      if (view === null) return false;
      if (!tx.addAllocated(view, 0, t)) {
        tx.freeOut(view);
        return false;
      }
      t.data = view;
      t.home = 'shared';
      t.posted = true;
      return true;
    }
    // The writer may reuse its chunk once we call back: keep our own copy for a re-send.
    if (t.home === 'chunk') {
      t.data = new Uint8Array(t.data);
      t.home = 'private';
    }
    if (!tx.add(t.data, 0, t)) return false;
    t.posted = true;
    return true;
  }

  /**
   * A posted request of an ending session: make its bytes private again (from the shared buffer,
   * still readable in onFailed) and mark it waiting. False if they are gone: the ivshmem device
   * was closed and its mapping detached — no session will follow to re-send them to.
   * Trust: in the §5.1 layout the back-end can write the R/W section, so a faulty one could have
   * changed these bytes before failing (as it could mangle what it consumed); in the isolated
   * layout (§5.2) they sit in our output section, read-only to it.
   */
  private keep(t: TxToken): boolean {
    t.posted = false;
    if (t.home !== 'shared') return true;
    const len = t.data.length;
    if (len === 0 || t.data.buffer.byteLength === 0) {
      debug('port %d: %d tx bytes lost with a closed device', this.id, len);
      return false;
    }
    t.data = new Uint8Array(t.data);
    t.home = 'private';
    return true;
  }

  private maybeCallBack(): void {
    if (this.writeCallback !== null && !this.txq.some((t) => !t.posted)) {
      const cb = this.writeCallback;
      this.writeCallback = null;
      cb();
    }
    if (this.finalCallback !== null && this.txq.length === 0) {
      const cb = this.finalCallback;
      this.finalCallback = null;
      cb();
    } else if (this.finalCallback !== null && this.tx !== null && !this.sessionFailing && this.txq.every((t) => t.posted)) {
      // end() waits for completions a back-end may never notify (§4.9, Jailhouse): have them reclaimed.
      this.tx.awaitCompletions?.();
    }
  }

  private transmitted(token: TxToken): void {
    this.forget(token);
    this.pumpTransmit();
    this.emit('completion');
  }

  /** A transmit completion of a run (queues with `onUsedBatch`): re-posting follows at its end. */
  private transmittedInRun(token: TxToken): void {
    this.forget(token);
    this.noteCompletion();
  }

  /** The device used `token`: its bytes are delivered, drop them. */
  private forget(token: TxToken): void {
    // Completions come in posting order as a rule: look at the front first.
    const i = this.txq[0] === token ? 0 : this.txq.indexOf(token);
    if (i === 0) this.txq.shift();
    else if (i > 0) this.txq.splice(i, 1);
  }

  private transmitFailed(token: TxToken): void {
    // The device never reported these bytes consumed: keep them, at their position, for the
    // next session (§4.10 "reports every in-flight request as failed — never dropped"). A shared
    // buffer dies with the session: copy it now, while the transport still holds it.
    this.sessionFailing = true;
    if (!this.keep(token)) {
      const i = this.txq.indexOf(token);
      if (i >= 0) this.txq.splice(i, 1);
    }
  }
}
