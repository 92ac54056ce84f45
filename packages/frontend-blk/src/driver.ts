/**
 * BlockDriver: a userspace virtio-blk driver (OASIS VIRTIO 1.2 §5.2, device id 2) as a vshm
 * front-end plug-in, built on the public scatter-gather API (`DriverQueueHandle.addSgs`) only.
 *
 * Request layout, as Linux's virtio_blk builds it: the 16-byte header in a descriptor of its own,
 * the data in ≤ SEG_MAX segments of ≤ SIZE_MAX bytes (device-readable for OUT, device-writable for
 * IN), the status byte alone in the last descriptor. With RING_INDIRECT_DESC each request takes one
 * ring slot. Write data goes straight into shared memory (`allocOut(len, data)`: one copy); read
 * data is copied out of shared memory into the caller's Buffer on completion (one copy).
 *
 * Ordering (one request queue): requests are handed to the device in call order — parts of a
 * split request consecutively — and never overtake each other in the driver. The device may
 * complete them in any order (virtio-blk promises none), so a read of a range with a write still in
 * flight may see either data: await the write. `flush()` first waits for every write, discard and
 * write-zeroes issued before it to complete, then sends FLUSH (when negotiated; without
 * VIRTIO_BLK_F_FLUSH the device is write-through and completion means durable).
 *
 * In flight: up to what the queue and the shared memory take (one ring slot per request with
 * INDIRECT_DESC, else 2 + segments descriptors); further requests wait in a FIFO in JS and are
 * posted as completions free space.
 *
 * Failure: when the device goes away or breaks, every request in flight fails with
 * VSHM_ERR_BLK_DEVICE_LOST — it may or may not have been applied, and the driver never re-sends
 * it (a re-sent write could land after a later write to the same range: not exactly-once).
 * Requests not yet handed to the device wait for the next device session and are sent then,
 * each call checked again against that device first, as if made then: one it cannot take (a
 * feature it lacks, read-only, off its blocks, past its end) fails with the code it would get,
 * unsent, and a FLUSH for a device without VIRTIO_BLK_F_FLUSH completes unsent — unless an
 * earlier device with a write cache acknowledged writes no FLUSH covered: a write-through device
 * cannot flush those, so every flush on it fails VSHM_ERR_BLK_IO until a device with FLUSH flushes.
 * A call split into several requests settles only once none of them is on the device any more:
 * when one fails, the ones not yet sent never are, and the call rejects once the ones in flight
 * are back — so nothing of it lands on the disk, or in the caller's `into` buffer, after the caller
 * was told it is over.
 */
import { EventEmitter } from 'node:events';
import type { ConfigReader, DriverQueueHandle, DriverSession, VirtioDriverOps } from '@vshm/transport';
import {
  BLK_DWZ_FLAG_UNMAP, BLK_ID_BYTES, BLK_SECTOR_SIZE as SECTOR_SIZE, BlkConfig, BlkFeature, BlkRequestType as BlkType, BlkStatus,
  VirtioFeatureMask,
} from 'virtio-spec-types';
import { encodeBlkHeader, encodeDwzSegment } from './wire.js';
import { BlockError } from './errors.js';

const bit = (n: number): bigint => 1n << BigInt(n);

/** Feature bits the driver accepts with one request queue (MQ is added with `queues` > 1). */
export const BLOCK_DRIVER_FEATURES: bigint =
  bit(BlkFeature.SIZE_MAX) |
  bit(BlkFeature.SEG_MAX) |
  bit(BlkFeature.RO) |
  bit(BlkFeature.BLK_SIZE) |
  bit(BlkFeature.FLUSH) |
  bit(BlkFeature.DISCARD) |
  bit(BlkFeature.WRITE_ZEROES) |
  VirtioFeatureMask.RING_INDIRECT_DESC;

/** Default largest data bytes per virtio request. */
export const DEFAULT_MAX_TRANSFER = 256 * 1024;
/** Largest sector count of one DISCARD / WRITE_ZEROES segment (le32), kept sector-aligned. */
const MAX_DWZ_SECTORS = 0xffffffff - 7;

export interface BlockDriverOptions {
  /** Largest data bytes per virtio request; longer reads/writes are split. Multiple of 512, default 256 KiB. */
  maxTransfer?: number;
  /**
   * Request queues to use, 1…64 (default 1). Above 1 the driver accepts VIRTIO_BLK_F_MQ and sets
   * up min(queues, num_queues) queues; each call goes to the next queue in turn (all parts of a
   * split call on one queue), and order is kept per queue.
   */
  queues?: number;
}

/** Limits and identity read from the device at probe. */
export interface BlockGeometry {
  /** Disk size in bytes. */
  capacity: number;
  readOnly: boolean;
  /**
   * Logical block size: blk_size (VIRTIO_BLK_F_BLK_SIZE) when it is a power of two from 512 to
   * 64 KiB, else 512 — a value out of those bounds is ignored (see reportedBlockSize).
   */
  blockSize: number;
  /** blk_size as the device reported it, null without VIRTIO_BLK_F_BLK_SIZE. */
  reportedBlockSize: number | null;
  /** Data bytes per descriptor (SIZE_MAX) — the driver's own segment size without it. */
  segmentSize: number;
  /** Data descriptors per request (SEG_MAX, else 1 as Linux does). */
  maxSegments: number;
  /** Data bytes per request after splitting rules; 0 when the device's limits allow no sector. */
  maxRequest: number;
  flush: boolean;
  discard: boolean;
  writeZeroes: boolean;
  indirect: boolean;
  maxDiscardSectors: number;
  maxWriteZeroesSectors: number;
}

type OpKind = 'read' | 'write' | 'flush' | 'discard' | 'write-zeroes' | 'get-id';

interface Op {
  readonly kind: OpKind;
  /** Byte range of a read, write, discard or write-zeroes (0, 0 for the others). */
  readonly offset: number;
  readonly length: number;
  /**
   * The geometry the call was checked against. A part that reaches another device (the call
   * waited across a device change) has the call checked again against that one first (pump).
   */
  geo: BlockGeometry | null;
  /** Queue the op's parts go to, chosen when its first part is posted (-1: not yet). */
  queue: number;
  /** Parts not yet completed successfully (posted or waiting). */
  remaining: number;
  /** Parts handed to the device and not back yet: the op settles only once this is 0. */
  posted: number;
  /** The first failure; the op rejects with it once nothing of it is in flight. */
  error: Error | null;
  /** Settled. */
  done: boolean;
  /** A FLUSH: `writesCached` when it was posted (the writes it covers once it completes OK). */
  covers: number;
  result: Buffer | null;
  resolve(v: Buffer | null): void;
  reject(e: Error): void;
  readonly promise: Promise<Buffer | null>;
}

interface Part {
  readonly op: Op;
  readonly type: number;
  readonly sector: number;
  /** IN: destination slice of op.result; OUT: source data. */
  readonly data: Uint8Array | null;
  /** DISCARD / WRITE_ZEROES segment. */
  readonly dwz: Uint8Array | null;
  /**
   * A DISCARD / WRITE_ZEROES range still to be cut into segments: the waiting entry stands for
   * all of them and each is built when posted, so a device's tiny max_discard_sectors costs no
   * memory per segment up front (a whole-disk discard at 1 sector per segment would be billions).
   */
  readonly run: DwzRun | null;
}

interface DwzRun {
  /** First sector not yet sent. */
  sector: number;
  /** Sectors not yet sent. */
  left: number;
  readonly flags: number;
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

/**
 * The virtio-blk driver ops table plus the block API. Events: 'ready' (a device session is live;
 * also after every recovery), 'lost' (err: the device went away; in-flight requests failed),
 * 'capacity' (bytes: a config event changed the capacity).
 */
export class BlockDriver extends EventEmitter implements VirtioDriverOps {
  readonly deviceId = 2;
  readonly features: bigint;
  private readonly maxTransfer: number;
  private readonly maxQueues: number;
  /** The live session's request queues (empty without one). */
  private queues: DriverQueueHandle<Part>[] = [];
  /** Round-robin cursor over `queues`. */
  private nextQueue = 0;
  private geo: BlockGeometry | null = null;
  private readonly waiting: Part[] = [];
  /** Data-changing ops not yet settled (flush waits for those issued before it). */
  private readonly writes = new Set<Op>();
  private probeWaiters: (() => void)[] = [];
  /** Why the live geometry takes no read or write ('' when it does). */
  private noData = '';
  private closed = false;
  /**
   * Write-type requests a device with a volatile cache (VIRTIO_BLK_F_FLUSH) completed OK, and how
   * many of the first of them a completed FLUSH covers. While the second is behind, acknowledged
   * writes may sit in a cache: a write-through device that comes after cannot flush them.
   */
  private writesCached = 0;
  private writesFlushed = 0;

  constructor(opts: BlockDriverOptions = {}) {
    super();
    const m = opts.maxTransfer ?? DEFAULT_MAX_TRANSFER;
    if (!isInt(m) || m < SECTOR_SIZE || m % SECTOR_SIZE !== 0 || m > 64 * 1024 * 1024) {
      throw new BlockError('VSHM_ERR_ARGUMENT', '', `maxTransfer must be a multiple of 512 in 512…64 MiB, got ${String(m)}`);
    }
    this.maxTransfer = m;
    const nq = opts.queues ?? 1;
    if (!isInt(nq) || nq < 1 || nq > 64) throw new BlockError('VSHM_ERR_ARGUMENT', '', `queues must be an integer 1…64, got ${String(nq)}`);
    this.maxQueues = nq;
    this.features = nq > 1 ? BLOCK_DRIVER_FEATURES | bit(BlkFeature.MQ) : BLOCK_DRIVER_FEATURES;
  }

  // ---------------------------------------------------------------------------------------------
  // Block API

  /** Whether a device session is live. */
  get live(): boolean {
    return this.queues.length > 0;
  }

  /** Geometry of the last device session, or null before the first. */
  get geometry(): Readonly<BlockGeometry> | null {
    return this.geo;
  }

  /** Disk size in bytes (0 before the first device session). */
  get capacity(): number {
    return this.geo?.capacity ?? 0;
  }

  /** VIRTIO_BLK_F_RO was negotiated. */
  get readOnly(): boolean {
    return this.geo?.readOnly ?? false;
  }

  /** Logical block size in bytes (512 without BLK_SIZE). */
  get blockSize(): number {
    return this.geo?.blockSize ?? SECTOR_SIZE;
  }

  /** Requests handed to the device and not yet completed. */
  get inFlight(): number {
    let n = 0;
    for (const q of this.queues) n += q.inFlight;
    return n;
  }

  /** Request queues of the live session (0 without one; > 1 only with MQ and `queues` > 1). */
  get queuesInUse(): number {
    return this.queues.length;
  }

  /**
   * Entries waiting in the driver for ring space or a device: one per request of a read or write,
   * one per DISCARD / WRITE_ZEROES call however many segments it still has to send.
   */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Resolves once a device session is live (immediately if one is), or once the driver is closed
   * (immediately if it is: a closed driver takes no device's requests, so waiting would be for
   * ever — an NbdServer's listen() on it used to hang).
   */
  whenReady(): Promise<void> {
    if (this.queues.length > 0 || this.closed) return Promise.resolve();
    return new Promise((r) => this.probeWaiters.push(r));
  }

  /**
   * Read `length` bytes at `offset` (both multiples of `blockSize`, inside the disk). With `into` (at
   * least `length` bytes) the data lands there and the Buffer returned is a view of it: a caller
   * that reads in a loop reuses one buffer instead of paying a fresh allocation's page faults per
   * call. Do not touch `into` until the promise settles.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    return this.run(() => {
      const g = this.check('read', offset, length);
      if (into !== undefined && (!(into instanceof Uint8Array) || into.length < length)) {
        throw new BlockError('VSHM_ERR_ARGUMENT', '', `read: into must be a Uint8Array of at least ${length} bytes`);
      }
      if (length === 0) return Promise.resolve(Buffer.alloc(0));
      if (g.maxRequest === 0) throw new BlockError('VSHM_ERR_BLK_NO_MEMORY', 'A', `read: ${this.noData}`);
      const op = this.newOp('read', offset, length);
      op.result = into === undefined ? Buffer.allocUnsafe(length) : Buffer.from(into.buffer, into.byteOffset, length);
      const parts: Part[] = [];
      for (let at = 0; at < length; at += g.maxRequest) {
        const n = Math.min(g.maxRequest, length - at);
        parts.push({ op, type: BlkType.IN, sector: (offset + at) / SECTOR_SIZE, data: op.result.subarray(at, at + n), dwz: null, run: null });
      }
      return this.submit(op, parts) as Promise<Buffer>;
    });
  }

  /**
   * Write `data` at `offset` (offset and data.length multiples of `blockSize`, inside the disk). The
   * bytes are copied into shared memory when each part is posted, which may be after this call
   * returns (ring full): do not modify `data` until the promise settles.
   */
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.run(() => {
      if (!(data instanceof Uint8Array)) throw new BlockError('VSHM_ERR_ARGUMENT', '', 'write: data must be a Uint8Array');
      const g = this.check('write', offset, data.length);
      if (data.length === 0) return Promise.resolve();
      if (g.maxRequest === 0) throw new BlockError('VSHM_ERR_BLK_NO_MEMORY', 'A', `write: ${this.noData}`);
      const op = this.newOp('write', offset, data.length);
      const parts: Part[] = [];
      for (let at = 0; at < data.length; at += g.maxRequest) {
        const n = Math.min(g.maxRequest, data.length - at);
        parts.push({ op, type: BlkType.OUT, sector: (offset + at) / SECTOR_SIZE, data: data.subarray(at, at + n), dwz: null, run: null });
      }
      return this.submit(op, parts).then(() => undefined);
    });
  }

  /**
   * Make every write, discard and write-zeroes issued before this call durable: waits for them
   * to complete (failures included), then sends FLUSH (if negotiated; without it the device is
   * write-through and there is nothing to send).
   */
  flush(): Promise<void> {
    return this.run(() => {
      const before = [...this.writes].map((o) => o.promise.catch(() => undefined));
      return Promise.all(before).then(() =>
        this.run(() => {
          const g = this.geo as BlockGeometry;
          if (!g.flush) {
            const lost = this.uncoverable();
            return lost === null ? Promise.resolve() : Promise.reject(lost);
          }
          const op = this.newOp('flush');
          return this.submit(op, [{ op, type: BlkType.FLUSH, sector: 0, data: null, dwz: null, run: null }]).then(() => undefined);
        }),
      );
    });
  }

  /** Discard (deallocate) a range; needs VIRTIO_BLK_F_DISCARD. */
  discard(offset: number, length: number): Promise<void> {
    return this.run(() => {
      const g = this.check('discard', offset, length);
      if (!g.discard) throw new BlockError('VSHM_ERR_BLK_UNSUPPORTED', 'A', 'discard: the device does not offer VIRTIO_BLK_F_DISCARD');
      return this.dwz('discard', BlkType.DISCARD, offset, length, 0);
    });
  }

  /** Write zeroes over a range; `unmap` lets the device deallocate it. Needs VIRTIO_BLK_F_WRITE_ZEROES. */
  writeZeroes(offset: number, length: number, opts: { unmap?: boolean } = {}): Promise<void> {
    return this.run(() => {
      const g = this.check('write-zeroes', offset, length);
      if (!g.writeZeroes) throw new BlockError('VSHM_ERR_BLK_UNSUPPORTED', 'A', 'writeZeroes: the device does not offer VIRTIO_BLK_F_WRITE_ZEROES');
      return this.dwz('write-zeroes', BlkType.WRITE_ZEROES, offset, length, opts.unmap === true ? BLK_DWZ_FLAG_UNMAP : 0);
    });
  }

  /** The device serial (VIRTIO_BLK_T_GET_ID, up to 20 bytes, NUL-padded). */
  serial(): Promise<string> {
    return this.run(() => {
      const op = this.newOp('get-id');
      op.result = Buffer.alloc(BLK_ID_BYTES);
      return this.submit(op, [{ op, type: BlkType.GET_ID, sector: 0, data: op.result, dwz: null, run: null }]).then((id) => {
        const b = id as Buffer;
        const nul = b.indexOf(0);
        return b.subarray(0, nul < 0 ? b.length : nul).toString('latin1');
      });
    });
  }

  /** Fail every request not yet handed to the device and refuse new ones (VSHM_ERR_BLK_CLOSED). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = this.closedError();
    for (const p of this.waiting.splice(0)) this.fail(p.op, err);
    for (const w of this.probeWaiters.splice(0)) w();
  }

  // ---------------------------------------------------------------------------------------------
  // VirtioDriverOps

  /** Request queues for the negotiated features: min(queues option, num_queues) with MQ, else 1. */
  queueCount(features: bigint, config?: ConfigReader): number {
    if ((features & bit(BlkFeature.MQ)) === 0n || config === undefined) return 1;
    const offered = config.read(BlkConfig.NUM_QUEUES, 2);
    return Math.max(1, Math.min(this.maxQueues, offered));
  }

  probe(session: DriverSession): void {
    const qs = session.queues as DriverQueueHandle<Part>[];
    for (const q of qs) {
      if (typeof q.addSgs !== 'function' || typeof q.allocOut !== 'function') {
        throw new BlockError('VSHM_ERR_ARGUMENT', '', 'BlockDriver needs queues with addSgs() and allocOut()');
      }
    }
    this.geo = this.readGeometry(session, Math.min(...qs.map((q) => q.size)));
    for (const q of qs) {
      q.onUsed = (part, _data, segs) => this.completed(part, segs);
      q.onFailed = (part, err) => {
        part.op.posted--;
        this.fail(part.op, new BlockError('VSHM_ERR_BLK_DEVICE_LOST', '4.10', `device lost with the ${part.op.kind} in flight (it may or may not have been applied): ${err.message}`, { cause: err }));
      };
    }
    this.queues = [...qs];
    this.nextQueue = 0;
    this.recut();
    for (const w of this.probeWaiters.splice(0)) w();
    this.emit('ready', session.features);
    this.pump();
  }

  remove(reason: Error): void {
    // Every in-flight part already came back through onFailed (device-api contract). The unsent
    // parts of the calls that failed so go now, not when the next device comes: they hold the
    // callers' data and would count as waiting.
    this.queues = [];
    this.dropFailed();
    this.emit('lost', reason);
  }

  configChanged(session: DriverSession): void {
    if (this.geo === null) return;
    // Whole logical blocks only, as at probe (readGeometry): a tail shorter than a block can be
    // neither read nor written.
    const bytes = readCapacity(session);
    const cap = bytes - (bytes % this.geo.blockSize);
    if (cap !== this.geo.capacity) {
      this.geo.capacity = cap;
      this.emit('capacity', cap);
    }
  }

  // ---------------------------------------------------------------------------------------------

  private closedError(): BlockError {
    return new BlockError('VSHM_ERR_BLK_CLOSED', '', 'the block driver was closed');
  }

  /**
   * Run `fn` now when a geometry is known — so requests are queued synchronously, in call order
   * — else once the first device session is live: synchronously inside probe(), in call order,
   * before 'ready' is emitted or any whenReady() continuation runs, so a call made from either
   * cannot overtake one made before the device came. A throw becomes a rejection.
   */
  private run<R>(fn: () => Promise<R>): Promise<R> {
    if (this.closed) return Promise.reject(this.closedError());
    if (this.geo === null) return new Promise<R>((resolve, reject) => this.probeWaiters.push(() => this.run(fn).then(resolve, reject)));
    try {
      return fn();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Argument, alignment, read-only and range checks against the current geometry. */
  private check(kind: OpKind, offset: number, length: number): BlockGeometry {
    if (!isInt(offset) || offset < 0 || !isInt(length) || length < 0) {
      throw new BlockError('VSHM_ERR_ARGUMENT', '', `${kind}: offset and length must be safe integers ≥ 0, got ${String(offset)}, ${String(length)}`);
    }
    // The device's logical block (blk_size when it is one, else 512): a device with 4096-byte
    // blocks refuses what is not on whole blocks with IOERR, as real disks do, and Linux's block
    // layer never sends it such a request. Refused here with the reason instead.
    const g = this.geo as BlockGeometry;
    if (offset % g.blockSize !== 0 || length % g.blockSize !== 0) {
      const unit = g.blockSize === SECTOR_SIZE ? `${SECTOR_SIZE}` : `the device's ${g.blockSize}-byte blocks`;
      throw new BlockError('VSHM_ERR_BLK_ALIGNMENT', 'A', `${kind}: offset ${offset} and length ${length} must be multiples of ${unit}`);
    }
    if (kind !== 'read' && g.readOnly) throw new BlockError('VSHM_ERR_BLK_READ_ONLY', 'A', `${kind}: the device is read-only (VIRTIO_BLK_F_RO)`);
    if (offset + length > g.capacity) {
      throw new BlockError('VSHM_ERR_BLK_RANGE', 'A', `${kind}: [${offset}, +${length}) leaves the disk of ${g.capacity} bytes`);
    }
    return g;
  }

  private dwz(kind: OpKind, type: number, offset: number, length: number, flags: number): Promise<void> {
    if (length === 0) return Promise.resolve();
    const op = this.newOp(kind, offset, length);
    const run: DwzRun = { sector: offset / SECTOR_SIZE, left: length / SECTOR_SIZE, flags };
    // The run counts as one outstanding request until its last segment is posted (pump).
    return this.submit(op, [{ op, type, sector: 0, data: null, dwz: null, run }]).then(() => undefined);
  }

  private newOp(kind: OpKind, offset = 0, length = 0): Op {
    let resolve!: (v: Buffer | null) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<Buffer | null>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const op: Op = { kind, offset, length, geo: this.geo, queue: -1, remaining: 0, posted: 0, error: null, done: false, covers: 0, result: null, resolve, reject, promise };
    if (kind === 'write' || kind === 'discard' || kind === 'write-zeroes') {
      this.writes.add(op);
      promise.then(
        () => this.writes.delete(op),
        () => this.writes.delete(op),
      );
    }
    return op;
  }

  /** Queue `parts` (a DwzRun counts as one until its last segment is posted) and pump. */
  private submit(op: Op, parts: Part[]): Promise<Buffer | null> {
    if (this.closed) {
      this.fail(op, this.closedError());
      return op.promise;
    }
    op.remaining = parts.length;
    for (const p of parts) this.waiting.push(p);
    this.pump();
    return op.promise;
  }

  /**
   * Post waiting parts in call order until a queue refuses one, then kick each queue posted to
   * once. Each op goes to the next queue in turn (all its parts to that one); a refusal stops
   * everything behind it, so no call overtakes an earlier one on any queue.
   */
  private pump(): void {
    const queues = this.queues;
    if (queues.length === 0) return;
    const kicked = new Set<DriverQueueHandle<Part>>();
    while (this.waiting.length > 0) {
      const head = this.waiting[0];
      if (head.op.done || head.op.error !== null) {
        // A part of a failed op is never sent: the op settles with its error.
        this.waiting.shift();
        continue;
      }
      if (head.op.geo !== this.geo && !this.recheck(head)) continue;
      const run = head.run;
      // The request to post: the head itself, or the next segment of its DISCARD / WRITE_ZEROES
      // run, cut to the live device's limit.
      const cut = run === null ? 0 : Math.min(this.dwzStep(head.type), run.left);
      const p: Part = run === null ? head : { op: head.op, type: head.type, sector: 0, data: null, dwz: encodeDwzSegment(run.sector, cut, run.flags), run: null };
      if (p.op.queue < 0 || p.op.queue >= queues.length) {
        p.op.queue = this.nextQueue;
        this.nextQueue = (this.nextQueue + 1) % queues.length;
      }
      const q = queues[p.op.queue];
      // Reads and writes are cut to fit every queue of ≥ 3 entries (readGeometry, recut), and
      // the other requests take ≤ 3 descriptors: only a smaller queue needs the check.
      const need = q.size < 3 ? this.descriptors(p) : 0;
      if (need > q.size) {
        // No chain — direct or indirect — may be longer than the queue (VIRTIO 1.2 §2.7.5.3.1):
        // a device that offers a queue this small can never take this request.
        this.waiting.shift();
        this.fail(p.op, new BlockError('VSHM_ERR_BLK_NO_MEMORY', 'A', `${p.op.kind}: the request needs ${need} descriptors, the queue holds ${q.size}`));
        continue;
      }
      if (!this.post(q, p)) {
        // Shared memory is common to all queues: only an idle driver proves the request can never
        // fit — while its session is live (a queue of an ending session refuses everything).
        if (this.inFlight === 0 && this.queues === queues && q.live !== false) {
          // Nothing in flight will ever free space: this request can never fit.
          this.waiting.shift();
          this.fail(p.op, new BlockError('VSHM_ERR_BLK_NO_MEMORY', '5', `${p.op.kind}: the request does not fit the shared memory or the queue even when idle`));
          continue;
        }
        break;
      }
      p.op.posted++;
      if (p.type === BlkType.FLUSH) p.op.covers = this.writesCached;
      kicked.add(q);
      if (run !== null) {
        run.sector += cut;
        run.left -= cut;
        p.op.remaining++;
        if (run.left > 0) continue;
        p.op.remaining--; // the run itself is all posted
      }
      this.waiting.shift();
    }
    for (const q of kicked) q.kick();
  }

  /**
   * `head` is the first part of its call to reach a device other than the one the call was
   * checked against (it waited across a device change): check the call again against this one,
   * as if it were made now, so that no request breaks the rules of the device it goes to — no
   * FLUSH, DISCARD or WRITE_ZEROES it did not negotiate, no write to a read-only device, nothing
   * off its logical blocks or past its end. A FLUSH for a device without VIRTIO_BLK_F_FLUSH (a
   * write-through one) completes without being sent, as flush() does; a call that fails the
   * check fails with the code it would get if made now, and none of its parts is sent. Returns
   * whether `head` is still to be posted (false: it was taken off the FIFO).
   */
  private recheck(head: Part): boolean {
    const op = head.op;
    const g = this.geo as BlockGeometry;
    op.geo = g;
    if (op.kind === 'flush' && !g.flush) {
      this.waiting.shift();
      const lost = this.uncoverable();
      if (lost !== null) this.fail(op, lost);
      else if (--op.remaining === 0 && op.posted === 0) {
        op.done = true;
        op.resolve(null);
      }
      return false;
    }
    if (op.kind === 'flush' || op.kind === 'get-id') return true;
    let err: BlockError | null = null;
    try {
      this.check(op.kind, op.offset, op.length);
      if (op.kind === 'discard' && !g.discard) err = new BlockError('VSHM_ERR_BLK_UNSUPPORTED', 'A', 'discard: the device it was to go to does not offer VIRTIO_BLK_F_DISCARD');
      if (op.kind === 'write-zeroes' && !g.writeZeroes) err = new BlockError('VSHM_ERR_BLK_UNSUPPORTED', 'A', 'writeZeroes: the device it was to go to does not offer VIRTIO_BLK_F_WRITE_ZEROES');
    } catch (e) {
      err = e as BlockError;
    }
    if (err === null) return true;
    this.waiting.shift();
    this.fail(op, err);
    return false;
  }

  /** Remove from the FIFO the entries of calls that failed or settled (they are never sent). */
  private dropFailed(): void {
    let k = 0;
    for (const p of this.waiting) if (!p.op.done && p.op.error === null) this.waiting[k++] = p;
    this.waiting.length = k;
  }

  /**
   * Sectors per DISCARD / WRITE_ZEROES segment on the live device (0 in config: no limit but the
   * le32), rounded down to whole logical blocks: a run cut at a limit that is not a multiple of
   * the block (max_discard_sectors 12 on a 4096-byte device) would start its next segment inside
   * a block, which the device refuses (Linux rounds its discard split to the granularity the
   * same way). A limit below one block still gets one block per segment: nothing smaller is
   * aligned.
   */
  private dwzStep(type: number): number {
    const g = this.geo as BlockGeometry;
    const max = type === BlkType.DISCARD ? g.maxDiscardSectors : g.maxWriteZeroesSectors;
    const block = g.blockSize / SECTOR_SIZE;
    const step = Math.min(max > 0 ? max : MAX_DWZ_SECTORS, MAX_DWZ_SECTORS);
    return Math.max(block, step - (step % block));
  }

  /**
   * A new device may take smaller requests than the one the waiting reads and writes were cut
   * for (size_max, seg_max, queue size): cut them again, in place and in order, so no request
   * breaks the limits of the device it goes to.
   */
  private recut(): void {
    const max = (this.geo as BlockGeometry).maxRequest;
    if (!this.waiting.some((p) => p.data !== null && p.type !== BlkType.GET_ID && p.data.length > max)) return;
    const parts: Part[] = [];
    for (const p of this.waiting) {
      const d = p.data;
      if (d === null || p.type === BlkType.GET_ID || d.length <= max) {
        parts.push(p);
        continue;
      }
      if (max === 0) {
        this.fail(p.op, new BlockError('VSHM_ERR_BLK_NO_MEMORY', 'A', `${p.op.kind}: ${this.noData}`));
        continue;
      }
      for (let at = 0; at < d.length; at += max) {
        parts.push({ op: p.op, type: p.type, sector: p.sector + at / SECTOR_SIZE, data: d.subarray(at, Math.min(d.length, at + max)), dwz: null, run: null });
      }
      p.op.remaining += Math.ceil(d.length / max) - 1;
    }
    this.waiting.length = 0;
    for (const p of parts) this.waiting.push(p); // no spread: the list may be long
  }

  /** Descriptors of one request as post() builds it: header, data segments, status. */
  private descriptors(p: Part): number {
    switch (p.type) {
      case BlkType.IN:
      case BlkType.OUT:
        return 2 + Math.ceil((p.data as Uint8Array).length / (this.geo as BlockGeometry).segmentSize);
      case BlkType.GET_ID:
      case BlkType.DISCARD:
      case BlkType.WRITE_ZEROES:
        return 3;
      default:
        return 2;
    }
  }

  /** One virtio request: header | data… | status. False when short of ring space or memory. */
  private post(q: DriverQueueHandle<Part>, p: Part): boolean {
    const g = this.geo as BlockGeometry;
    const header = encodeBlkHeader(p.type, p.sector);
    switch (p.type) {
      case BlkType.IN: {
        const d = p.data as Uint8Array;
        const ins: (number | Uint8Array)[] = [];
        for (let at = 0; at < d.length; at += g.segmentSize) ins.push(d.subarray(at, Math.min(d.length, at + g.segmentSize)));
        ins.push(1);
        return (q.addSgs as NonNullable<typeof q.addSgs>)([header], ins, p);
      }
      case BlkType.OUT: {
        const d = p.data as Uint8Array;
        const outs: Uint8Array[] = [header];
        for (let at = 0; at < d.length; at += g.segmentSize) {
          const seg = d.subarray(at, Math.min(d.length, at + g.segmentSize));
          // Zero-copy posting: the data is copied once, straight into shared memory.
          const v = (q.allocOut as NonNullable<typeof q.allocOut>)(seg.length, seg);
          if (v === null) {
            for (let k = 1; k < outs.length; k++) q.freeOut?.(outs[k]);
            return false;
          }
          outs.push(v);
        }
        const ok = (q.addSgs as NonNullable<typeof q.addSgs>)(outs, [1], p);
        if (!ok) for (let k = 1; k < outs.length; k++) q.freeOut?.(outs[k]);
        return ok;
      }
      case BlkType.GET_ID:
        return (q.addSgs as NonNullable<typeof q.addSgs>)([header], [p.data as Uint8Array, 1], p);
      case BlkType.DISCARD:
      case BlkType.WRITE_ZEROES:
        return (q.addSgs as NonNullable<typeof q.addSgs>)([header, p.dwz as Uint8Array], [1], p);
      default:
        return (q.addSgs as NonNullable<typeof q.addSgs>)([header], [1], p);
    }
  }

  private completed(part: Part, segs: readonly Uint8Array[]): void {
    const op = part.op;
    op.posted--;
    if (!op.done) {
      const last = segs[segs.length - 1];
      const status = last !== undefined && last.length === 1 ? last[0] : -1;
      if (status === BlkStatus.OK) {
        if (part.type === BlkType.FLUSH) this.writesFlushed = Math.max(this.writesFlushed, op.covers);
        else if ((part.type === BlkType.OUT || part.type === BlkType.DISCARD || part.type === BlkType.WRITE_ZEROES) && this.geo?.flush === true) this.writesCached++;
        if (--op.remaining === 0) {
          op.done = true;
          op.resolve(op.result);
        } else if (op.error !== null && op.posted === 0) {
          this.settleFailed(op);
        }
      } else if (status === BlkStatus.UNSUPP) {
        this.fail(op, new BlockError('VSHM_ERR_BLK_UNSUPPORTED', 'A', `${op.kind}: the device answered UNSUPP`));
      } else {
        const why = status < 0 ? 'the device did not write the status byte' : `status ${status}`;
        this.fail(op, new BlockError('VSHM_ERR_BLK_IO', 'A', `${op.kind} at sector ${part.sector}: I/O error (${why})`));
      }
    }
    this.pump();
  }

  /**
   * Record the op's failure. It rejects only once none of its parts is in flight any more: a
   * part still on the device may yet write into the caller's `into` buffer (read) or land on the
   * disk (write), and the caller, told the op is over, would reuse the buffer or re-write the
   * range — the late part would then overwrite what came after it. Its parts not yet sent never are.
   */
  private fail(op: Op, err: Error): void {
    if (op.done) return;
    op.error ??= err;
    if (op.posted === 0) this.settleFailed(op);
  }

  /**
   * Why a flush on this write-through device (no VIRTIO_BLK_F_FLUSH) cannot succeed, or null: an
   * earlier device with a volatile cache acknowledged writes that no FLUSH covered before it went.
   * This device cannot ask for them to be made durable; completing the flush would claim they are.
   * A FLUSH on a later device with VIRTIO_BLK_F_FLUSH (the same storage back) covers them again.
   */
  private uncoverable(): BlockError | null {
    if (this.writesCached <= this.writesFlushed) return null;
    return new BlockError('VSHM_ERR_BLK_IO', 'A', 'flush: writes an earlier device with a write cache acknowledged were never flushed, and this device (no VIRTIO_BLK_F_FLUSH) cannot flush them');
  }

  private settleFailed(op: Op): void {
    op.done = true;
    op.reject(op.error as Error);
  }

  private readGeometry(s: DriverSession, queueSize: number): BlockGeometry {
    const f = s.features;
    const has = (b: number): boolean => (f & bit(b)) !== 0n;
    const discard = has(BlkFeature.DISCARD);
    const writeZeroes = has(BlkFeature.WRITE_ZEROES);
    // Every field under one generation check (§4.8): the capacity's two halves and the limits
    // of one config state, never some from before a back-end update and some from after it.
    const c = s.readConfigMany((read) => {
      const u32 = (off: number): number => read(off, 4) >>> 0;
      return {
        capacity: capacityFrom(read),
        blkSize: has(BlkFeature.BLK_SIZE) ? u32(BlkConfig.BLK_SIZE) : null,
        sizeMax: has(BlkFeature.SIZE_MAX) ? u32(BlkConfig.SIZE_MAX) : 0,
        segMax: has(BlkFeature.SEG_MAX) ? u32(BlkConfig.SEG_MAX) : 1,
        maxDiscardSectors: discard ? u32(BlkConfig.MAX_DISCARD_SECTORS) : 0,
        maxWriteZeroesSectors: writeZeroes ? u32(BlkConfig.MAX_WRITE_ZEROES_SECTORS) : 0,
      };
    });
    const reportedBlockSize = c.blkSize;
    // VIRTIO 1.2 §5.2.4 gives blk_size no bounds, and VIRTIO 1.2 §5.2.5 makes it a hint: the
    // protocol's units stay 512 bytes whatever it says. Linux's virtio_blk refuses a device whose blk_size is not a
    // power of two from 512 to 64 KiB; refusing in probe here would have the transport reset and
    // re-probe the device in a tight loop, so such a value is ignored instead — 512-byte blocks,
    // the device failing what it cannot do with IOERR — and reportedBlockSize shows it.
    const blockSize = reportedBlockSize !== null && validBlockSize(reportedBlockSize) ? reportedBlockSize : SECTOR_SIZE;
    const { sizeMax, segMax } = c;
    // The data segments plus header and status must fit one chain (≤ queue size,
    // VIRTIO 1.2 §2.7.5.3.1) on every queue. Below 3 descriptors no data request fits at all:
    // those fail one by one (pump), FLUSH still works.
    const maxSegments = Math.max(1, Math.min(segMax > 0 ? segMax : 1, queueSize - 2));
    const segmentSize = sizeMax > 0 ? Math.min(sizeMax, this.maxTransfer) : this.maxTransfer;
    let maxRequest = Math.min(this.maxTransfer, maxSegments * segmentSize);
    maxRequest -= maxRequest % SECTOR_SIZE;
    // Below one sector no read or write can be built: keep the device (FLUSH, GET_ID, DISCARD
    // still work) and fail each read and write clearly — refusing it in probe would make the
    // transport re-initialise it for ever while every call waited.
    this.noData = maxRequest < SECTOR_SIZE ? `the device's limits (size_max ${sizeMax}, seg_max ${segMax}) allow no 512-byte request` : '';
    if (maxRequest < SECTOR_SIZE) maxRequest = 0;
    return {
      // Whole logical blocks only: a tail shorter than a block can be neither read nor written
      // (every call must be on whole blocks), and an NBD export should be a multiple of its
      // minimum block size. Our back-end already reports whole blocks; another may not.
      capacity: c.capacity - (c.capacity % blockSize),
      readOnly: has(BlkFeature.RO),
      blockSize,
      reportedBlockSize,
      segmentSize,
      maxSegments,
      maxRequest,
      flush: has(BlkFeature.FLUSH),
      discard,
      writeZeroes,
      indirect: (f & VirtioFeatureMask.RING_INDIRECT_DESC) !== 0n,
      maxDiscardSectors: c.maxDiscardSectors,
      maxWriteZeroesSectors: c.maxWriteZeroesSectors,
    };
  }
}

/**
 * Largest logical block size taken from a device: Linux's limit for a logical block (64 KiB,
 * BLK_MAX_BLOCK_SIZE) and the NBD protocol's for a minimum block size (2^16) alike.
 */
const MAX_BLOCK_SIZE = 64 * 1024;

/** A logical block size the driver can use: a power of two from 512 to MAX_BLOCK_SIZE. */
function validBlockSize(n: number): boolean {
  return n >= SECTOR_SIZE && n <= MAX_BLOCK_SIZE && (n & (n - 1)) === 0;
}

/** Capacity in bytes, both halves under one generation check (§4.8, like Linux's virtio_cread64). */
function readCapacity(s: DriverSession): number {
  return s.readConfigMany(capacityFrom);
}

/** Capacity in bytes from the two 4-byte halves of the u64 (inside one `readConfigMany`). */
function capacityFrom(read: (offset: number, width: 4) => number): number {
  const lo = read(BlkConfig.CAPACITY, 4) >>> 0;
  const hi = read(BlkConfig.CAPACITY + 4, 4) >>> 0;
  const sectors = hi * 0x100000000 + lo;
  // Byte offsets stay exact below 2^53.
  return Math.min(sectors, Math.floor(Number.MAX_SAFE_INTEGER / SECTOR_SIZE)) * SECTOR_SIZE;
}

/** A fresh virtio-blk driver. */
export function createBlockDriver(opts: BlockDriverOptions = {}): BlockDriver {
  return new BlockDriver(opts);
}

