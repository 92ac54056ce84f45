/**
 * The virtio-blk device (OASIS VIRTIO 1.2 §5.2) as a vshm back-end plug-in, over a raw image
 * file or block device (image.ts). Public plug-in API only, like examples/virtio-rng.
 *
 * Requests: the header is copied out once (read once, check the copy) and checked by request.ts; data
 * of any segmentation is copied between the chain and a private buffer (never the target or
 * source of asynchronous I/O as a view of shared memory: a session may end while the I/O runs,
 * and the driver may by then have reused that memory). One exception that keeps the rule: an IN
 * request first takes what the page cache holds straight into the chain's writable segments
 * with a read that never waits for the storage (`ImageFile.readCached`, synchronous: it is over
 * before anything else runs), and only the rest goes through a private buffer — one copy and one
 * thread-pool round trip fewer per cached read. Many requests run at once per queue — bounded by
 * `maxInFlight` per queue and `maxInFlightBytes` for the device — on positioned async file I/O;
 * each is pushed when it finishes (out of order) and used entries are published once per burst
 * (one flush per microtask checkpoint).
 *
 * Durability: an OUT completes only after its write call returned (with `cache: 'writethrough'`,
 * or for a driver that did not negotiate FLUSH, after the following fdatasync too); a FLUSH
 * completes only after fdatasync returned, which covers every write completed before the FLUSH
 * was made available. An image I/O error
 * completes the request with IOERR and emits 'io-error'; the device keeps serving. Once an
 * fdatasync failed, every later FLUSH and synced write completes IOERR for the device's life
 * (the kernel reports a lost write-back only once).
 *
 * A session that ends (reset, front-end gone, NEEDS_RESET) leaves its I/O running: results are
 * dropped (the chains belong to nobody any more) and the next session starts serving only when
 * that I/O finished, so a stale write can never land after a read of the new session.
 *
 * Events: 'activate' (features: bigint), 'deactivate' (reason), 'io-error' (err: ImageError),
 * 'resize' (capacitySectors: number).
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { resolve as resolvePath } from 'node:path';
import { ArgumentError } from '@vshm/transport';
import type { ConfigField, ConfigSpace, DeviceChain, DeviceQueueHandle, DeviceSession, SessionEndReason, VirtioDeviceOps } from '@vshm/transport';
import {
  BLK_CONFIG_SIZE, BLK_DWZ_SEGMENT_SIZE, BLK_ID_BYTES, BLK_REQ_HEADER_SIZE, BLK_SECTOR_SIZE,
  BlkConfig, BlkFeature, BlkStatus, VirtioDeviceId, VirtioFeatureMask, featureBit, hasFeature,
} from 'virtio-spec-types';
import { BufferPool } from './buffer-pool.js';
import { ImageError, openImage, type ImageFile } from './image.js';
import { planRequest, planSegments, type RequestFault, type RequestLimits } from './request.js';

export type CacheMode = 'writeback' | 'writethrough';

export interface BlockDeviceOptions {
  /** Offer RO and refuse OUT/DISCARD/WRITE_ZEROES with IOERR. Default: the image's own mode. */
  readOnly?: boolean;
  /** Request queues; > 1 offers MQ. 1…64, default 1. */
  queues?: number;
  /** Queue size offered (power of two, 4…32768). Default 128. */
  queueSize?: number;
  /** GET_ID answer: printable ASCII, ≤ 20 bytes. Default: 20 hex digits of SHA-256 of the absolute image path. */
  serial?: string;
  /**
   * 'writeback' (default): writes complete when written, FLUSH syncs; 'writethrough': after
   * fdatasync. A driver that does not negotiate FLUSH always gets writethrough (VIRTIO 1.2 §5.2.6.2).
   */
  cache?: CacheMode;
  /** Logical block size (BLK_SIZE): power of two 512…65536. Default 512. */
  blockSize?: number;
  /** SIZE_MAX: largest data segment in bytes (≥ blockSize). Default 65536. */
  sizeMax?: number;
  /** SEG_MAX: most data segments per request. Default min(queueSize − 2, 64). */
  segMax?: number;
  /** Offer DISCARD (default true unless read-only). */
  discard?: boolean;
  /** Offer WRITE_ZEROES (default true unless read-only). */
  writeZeroes?: boolean;
  /** Requests running at once per queue. Default 32. */
  maxInFlight?: number;
  /** Data bytes held by running requests, device-wide (one request may overshoot). Default 64 MiB. */
  maxInFlightBytes?: number;
  /**
   * Serve IN data the page cache holds straight into the request's buffers, synchronously, when
   * the image offers `readCached` (see the file comment). Default true.
   */
  cachedReads?: boolean;
  /**
   * Most IN bytes one wake-up copies synchronously from the page cache; requests beyond it in
   * the same pass take the asynchronous path, so a burst of large cached reads cannot hold the
   * event loop (doorbells, other queues, timers) for long. 0…2^31, default 8 MiB (~0.5 ms).
   */
  cachedReadBudget?: number;
}

/** A bad option: `code` VSHM_ERR_ARGUMENT. */
export class BlockOptionError extends ArgumentError {}

export interface BlockDeviceStats {
  /** Requests completed by op ('in', 'out', 'flush', 'get-id', 'discard', 'write-zeroes'). */
  completed: Record<string, number>;
  /** Requests failed by fault (request.ts), plus 'io' for image I/O errors. */
  faults: Record<string, number>;
  /** Chains returned with 0 bytes because they had no writable byte for a status. */
  noStatus: number;
  /** Completions dropped because their session had ended. */
  dropped: number;
  sessions: number;
  lastEnd: SessionEndReason | null;
  /** Most requests seen running at once (any queue). */
  peakInFlight: number;
  /** Wake-ups that served nothing because an ended session's I/O was still running. */
  deferred: number;
  /** IN requests served whole from the page cache, without asynchronous I/O. */
  cachedReads: number;
  /** IN data bytes copied from the page cache straight into requests (whole or in part). */
  cachedBytes: number;
}

/** Largest DISCARD / WRITE_ZEROES segment, in sectors (32 MiB: where fallocate cannot, zeroes are written). */
export const BLK_MAX_DWZ_SECTORS = 65536;
/** Most segments in one DISCARD / WRITE_ZEROES request. */
export const BLK_MAX_DWZ_SEG = 8;
/** Default `cachedReadBudget`: 8 MiB, about half a millisecond of copying. */
const CACHED_READ_BUDGET = 8 << 20;

interface QueueState {
  readonly handle: DeviceQueueHandle;
  inFlight: number;
  flushScheduled: boolean;
  /** A serve() on the next event-loop turn is scheduled (a wake-up stopped at its pop cap). */
  serveScheduled: boolean;
}

/**
 * The feature bits a device with these options offers: SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH,
 * TOPOLOGY and RING_INDIRECT_DESC always; RO when read-only; MQ with more than one queue;
 * DISCARD and WRITE_ZEROES unless read-only or switched off.
 */
export function blockDeviceFeatures(opts: Pick<BlockDeviceOptions, 'readOnly' | 'queues' | 'discard' | 'writeZeroes'>): bigint {
  const readOnly = opts.readOnly ?? false;
  let f = featureBit(BlkFeature.SIZE_MAX) | featureBit(BlkFeature.SEG_MAX) | featureBit(BlkFeature.BLK_SIZE) |
    featureBit(BlkFeature.FLUSH) | featureBit(BlkFeature.TOPOLOGY) | VirtioFeatureMask.RING_INDIRECT_DESC;
  if (readOnly) f |= featureBit(BlkFeature.RO);
  if ((opts.queues ?? 1) > 1) f |= featureBit(BlkFeature.MQ);
  if ((opts.discard ?? true) && !readOnly) f |= featureBit(BlkFeature.DISCARD);
  if ((opts.writeZeroes ?? true) && !readOnly) f |= featureBit(BlkFeature.WRITE_ZEROES);
  return f;
}

/** Names of the bits set in `features` (BlkFeature names, then RING_INDIRECT_DESC). */
export function blockFeatureNames(features: bigint): string[] {
  const names = Object.entries(BlkFeature).filter(([, bit]) => hasFeature(features, bit)).map(([n]) => n);
  if ((features & VirtioFeatureMask.RING_INDIRECT_DESC) !== 0n) names.push('RING_INDIRECT_DESC');
  return names;
}

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function intOpt(name: string, v: number | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < min || v > max) throw new BlockOptionError(`${name} must be an integer ${min}…${max}, got ${String(v)}`);
  return v;
}

/**
 * Whether `s` may be a GET_ID serial's text: printable ASCII (VIRTIO 1.2 §5.2.6: the ID is an
 * ASCII string, NUL-padded — a NUL inside would cut it, a control character or a byte ≥ 0x80
 * would reach the guest's disk names, e.g. /dev/disk/by-id, as garbage).
 */
export function isSerialText(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

/** The default serial: 20 hex digits of SHA-256 over the absolute image path (stable per path). */
export function defaultSerial(imagePath: string): string {
  return createHash('sha256').update(resolvePath(imagePath)).digest('hex').slice(0, BLK_ID_BYTES);
}

export class BlockDevice extends EventEmitter implements VirtioDeviceOps {
  readonly deviceId = VirtioDeviceId.BLOCK;
  readonly features: bigint;
  readonly configSize = BLK_CONFIG_SIZE;
  readonly configFields: readonly ConfigField[];
  readonly image: ImageFile;
  readonly readOnly: boolean;
  readonly queues: number;
  readonly queueSize: number;
  readonly serial: Uint8Array;
  readonly cache: CacheMode;
  readonly blockSize: number;
  readonly sizeMax: number;
  readonly segMax: number;
  readonly maxInFlight: number;
  readonly maxInFlightBytes: number;
  readonly cachedReads: boolean;
  readonly cachedReadBudget: number;
  readonly stats: BlockDeviceStats = {
    completed: {}, faults: {}, noStatus: 0, dropped: 0, sessions: 0, lastEnd: null, peakInFlight: 0, deferred: 0, cachedReads: 0, cachedBytes: 0,
  };
  private capacity: number;
  /** resize() calls started, and the latest of them whose size was applied. */
  private resizeCalls = 0;
  private resizeApplied = 0;
  /** The capacity (sectors) the config space carries: what the last initConfig / update wrote. */
  private publishedSectors = -1;
  private session: DeviceSession | null = null;
  /**
   * Writes of this session are synced before they complete: `cache: 'writethrough'`, or a driver
   * that did not negotiate FLUSH (it cannot ask for stability, so VIRTIO 1.2 §5.2.6.2 makes every
   * completed write stable when FLUSH was offered).
   */
  private syncWrites = false;
  /**
   * The first failed fdatasync of this image, kept for the device's life. Linux reports a lost
   * write-back once (per open file) and marks the pages that failed clean, so the next fdatasync
   * returns 0 with acknowledged writes gone: after one failure no FLUSH (nor synced write) may
   * complete OK, or it would vouch for data the image no longer holds.
   */
  private syncFailure: ImageError | null = null;
  private epoch = 0;
  private queueStates: QueueState[] = [];
  /** Requests whose I/O has not finished, any session. */
  private running = 0;
  private runningBytes = 0;
  /** Of `running`, the requests of ended sessions (the next session waits for them). */
  private staleRunning = 0;
  /**
   * Requests started and not yet settled: their I/O finished and their completion, their pooled
   * buffer's return and the wake-up after them done. drain() waits for this, not for `running`.
   */
  private unsettled = 0;
  private drainWaiters: (() => void)[] = [];
  private readonly limits: RequestLimits;
  /** IN / OUT data buffers, reused (buffer-pool.ts: fresh ones cost a page fault per page). */
  private readonly pool = new BufferPool();
  /** Bytes the current serve() pass may still read synchronously (cachedReadBudget). */
  private cachedBudget = 0;

  /**
   * A device over an open image of `sizeBytes` bytes (use `openBlockDevice` to open by path).
   * Throws BlockOptionError for a bad option.
   */
  constructor(image: ImageFile, sizeBytes: number, opts: BlockDeviceOptions = {}) {
    super();
    this.image = image;
    this.readOnly = opts.readOnly ?? image.readOnly;
    if (!this.readOnly && image.readOnly) throw new BlockOptionError('readOnly: false needs an image opened read-write');
    this.queues = intOpt('queues', opts.queues, 1, 1, 64);
    this.queueSize = intOpt('queueSize', opts.queueSize, 128, 4, 32768);
    if (!isPow2(this.queueSize)) throw new BlockOptionError(`queueSize must be a power of two, got ${this.queueSize}`);
    this.blockSize = intOpt('blockSize', opts.blockSize, BLK_SECTOR_SIZE, BLK_SECTOR_SIZE, 65536);
    if (!isPow2(this.blockSize)) throw new BlockOptionError(`blockSize must be a power of two, got ${this.blockSize}`);
    this.sizeMax = intOpt('sizeMax', opts.sizeMax, 65536, this.blockSize, 1 << 24);
    this.segMax = intOpt('segMax', opts.segMax, Math.min(this.queueSize - 2, 64), 1, 1024);
    this.maxInFlight = intOpt('maxInFlight', opts.maxInFlight, 32, 1, 32768);
    this.maxInFlightBytes = intOpt('maxInFlightBytes', opts.maxInFlightBytes, 64 << 20, 1, 2 ** 40);
    if (opts.cache !== undefined && opts.cache !== 'writeback' && opts.cache !== 'writethrough') {
      throw new BlockOptionError(`cache must be 'writeback' or 'writethrough', got '${String(opts.cache)}'`);
    }
    this.cache = opts.cache ?? 'writeback';
    this.cachedReads = opts.cachedReads ?? true;
    this.cachedReadBudget = intOpt('cachedReadBudget', opts.cachedReadBudget, CACHED_READ_BUDGET, 0, 2 ** 31);
    const serial = Buffer.from(opts.serial ?? defaultSerial(image.path), 'utf8');
    if (serial.length > BLK_ID_BYTES) throw new BlockOptionError(`serial must be at most ${BLK_ID_BYTES} bytes, got ${serial.length}`);
    if (!isSerialText(opts.serial ?? '')) throw new BlockOptionError(`serial must be printable ASCII, got ${JSON.stringify(opts.serial)}`);
    this.serial = new Uint8Array(serial);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new BlockOptionError(`image size must be a safe integer ≥ 0, got ${String(sizeBytes)}`);
    this.capacity = sizeBytes;

    this.features = blockDeviceFeatures({ ...opts, readOnly: this.readOnly, queues: this.queues });
    this.limits = {
      capacityBytes: sizeBytes,
      blockSize: this.blockSize,
      maxTransfer: this.sizeMax * this.segMax,
      readOnly: this.readOnly,
      discard: false,
      writeZeroes: false,
      maxDwzSegments: BLK_MAX_DWZ_SEG,
    };
    const field = (name: string, offset: number, width: 1 | 2 | 4): ConfigField => ({ name, offset, width });
    this.configFields = [
      field('capacity.lo', BlkConfig.CAPACITY, 4), field('capacity.hi', BlkConfig.CAPACITY + 4, 4),
      field('size_max', BlkConfig.SIZE_MAX, 4), field('seg_max', BlkConfig.SEG_MAX, 4),
      field('blk_size', BlkConfig.BLK_SIZE, 4),
      field('physical_block_exp', BlkConfig.PHYSICAL_BLOCK_EXP, 1), field('alignment_offset', BlkConfig.ALIGNMENT_OFFSET, 1),
      field('min_io_size', BlkConfig.MIN_IO_SIZE, 2), field('opt_io_size', BlkConfig.OPT_IO_SIZE, 4),
      field('writeback', BlkConfig.WRITEBACK, 1), field('num_queues', BlkConfig.NUM_QUEUES, 2),
      field('max_discard_sectors', BlkConfig.MAX_DISCARD_SECTORS, 4), field('max_discard_seg', BlkConfig.MAX_DISCARD_SEG, 4),
      field('discard_sector_alignment', BlkConfig.DISCARD_SECTOR_ALIGNMENT, 4),
      field('max_write_zeroes_sectors', BlkConfig.MAX_WRITE_ZEROES_SECTORS, 4), field('max_write_zeroes_seg', BlkConfig.MAX_WRITE_ZEROES_SEG, 4),
      field('write_zeroes_may_unmap', BlkConfig.WRITE_ZEROES_MAY_UNMAP, 1),
    ];
  }

  /**
   * The disk's size in 512-byte sectors: the image's whole logical blocks (a partial last block
   * is not served; at 512-byte blocks, a partial last sector). A capacity that ends inside a
   * block would give the driver a last block it can neither read nor write whole: Linux reads
   * the end of a disk to probe partitions and gets I/O errors there.
   */
  get capacitySectors(): number {
    return Math.floor(this.capacity / this.blockSize) * (this.blockSize / BLK_SECTOR_SIZE);
  }

  /** Whether a driver session is live. */
  get active(): boolean {
    return this.session !== null;
  }

  /** Requests whose I/O is running (any session). */
  get inFlight(): number {
    return this.running;
  }

  /** Private data buffers held by requests (taken from the pool, not yet given back): 0 when idle. */
  get buffersTaken(): number {
    return this.pool.taken;
  }

  /**
   * Resolves once no request's I/O is running and every request is done with it (its pooled
   * buffer given back): before closing the image, or to find the device idle.
   */
  drain(): Promise<void> {
    if (this.unsettled === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  queueCount(features: bigint): number {
    return hasFeature(features, BlkFeature.MQ) ? this.queues : 1;
  }

  queueMaxSize(): number {
    return this.queueSize;
  }

  initConfig(c: ConfigSpace): void {
    this.writeCapacity(c);
    c.write(BlkConfig.SIZE_MAX, 4, this.sizeMax);
    c.write(BlkConfig.SEG_MAX, 4, this.segMax);
    c.write(BlkConfig.BLK_SIZE, 4, this.blockSize);
    // TOPOLOGY: image files live on 4 KiB-block file systems; say so, so the guest aligns.
    const perPhysical = Math.max(1, 4096 / this.blockSize);
    c.write(BlkConfig.PHYSICAL_BLOCK_EXP, 1, Math.log2(perPhysical));
    c.write(BlkConfig.ALIGNMENT_OFFSET, 1, 0);
    c.write(BlkConfig.MIN_IO_SIZE, 2, perPhysical);
    c.write(BlkConfig.OPT_IO_SIZE, 4, 0);
    c.write(BlkConfig.NUM_QUEUES, 2, this.queues);
    c.write(BlkConfig.MAX_DISCARD_SECTORS, 4, BLK_MAX_DWZ_SECTORS);
    c.write(BlkConfig.MAX_DISCARD_SEG, 4, BLK_MAX_DWZ_SEG);
    c.write(BlkConfig.DISCARD_SECTOR_ALIGNMENT, 4, this.blockSize / BLK_SECTOR_SIZE);
    c.write(BlkConfig.MAX_WRITE_ZEROES_SECTORS, 4, BLK_MAX_DWZ_SECTORS);
    c.write(BlkConfig.MAX_WRITE_ZEROES_SEG, 4, BLK_MAX_DWZ_SEG);
    c.write(BlkConfig.WRITE_ZEROES_MAY_UNMAP, 1, 0);
  }

  activate(session: DeviceSession): void {
    this.epoch++;
    this.stats.sessions++;
    this.session = session;
    this.limits.discard = hasFeature(session.features, BlkFeature.DISCARD);
    this.limits.writeZeroes = hasFeature(session.features, BlkFeature.WRITE_ZEROES);
    this.syncWrites = this.cache === 'writethrough' || !hasFeature(session.features, BlkFeature.FLUSH);
    this.queueStates = [];
    for (const h of session.queues) {
      if (h === undefined) continue; // a queue the driver did not enable: nothing to serve
      const qs: QueueState = { handle: h, inFlight: 0, flushScheduled: false, serveScheduled: false };
      h.onAvailable = () => this.serve(qs);
      this.queueStates.push(qs);
    }
    // A resize while no session was live could not reach the config space (the transport fills
    // it when the header is initialised, which may have been before that resize): the driver
    // probed with the old capacity, so publish the current one now, with a config event.
    if (this.publishedSectors !== this.capacitySectors) session.updateConfig((c) => this.writeCapacity(c));
    this.emit('activate', session.features);
    this.serveAll(); // requests posted before DRIVER_OK
  }

  deactivate(reason: SessionEndReason): void {
    this.epoch++; // running requests now belong to a dead session: their results are dropped
    this.staleRunning = this.running;
    this.session = null;
    this.queueStates = [];
    this.stats.lastEnd = reason;
    this.emit('deactivate', reason);
  }

  /**
   * Re-read the image size and publish the new capacity (config generation rule + config event,
   * §4.8) if a session is live; otherwise the next session gets it, at activation, with a config
   * event (its driver may have probed the config before). Resolves with the capacity in sectors
   * (a call overtaken by a later one resolves with the later one's); rejects with an ImageError
   * (the old capacity stays).
   */
  async resize(): Promise<number> {
    // Size reads of overlapping calls (two SIGHUPs) may finish in any order: an older read must
    // not undo a newer one, so a result applies only if no later call's result did already.
    const seq = ++this.resizeCalls;
    let size: number;
    try {
      size = await this.image.size();
    } catch (err) {
      throw ImageError.from(err, 'fstat', this.image.path); // an ImageFile other than ours may throw a bare errno error
    }
    if (seq < this.resizeApplied) return this.capacitySectors;
    this.resizeApplied = seq;
    this.capacity = size;
    this.limits.capacityBytes = size;
    this.session?.updateConfig((c) => this.writeCapacity(c));
    this.emit('resize', this.capacitySectors);
    return this.capacitySectors;
  }

  private writeCapacity(c: ConfigSpace): void {
    const sectors = this.capacitySectors;
    c.write(BlkConfig.CAPACITY, 4, sectors % 2 ** 32);
    c.write(BlkConfig.CAPACITY + 4, 4, Math.floor(sectors / 2 ** 32));
    this.publishedSectors = sectors;
  }

  /**
   * Serve every live queue, starting after `after` (the queue whose request just completed), so
   * that room a completion frees under the device-wide `maxInFlightBytes` goes to the other
   * queues first: walking them from queue 0 every time let a busy queue 0 take it again and again
   * while a later queue waited until queue 0 ran dry.
   */
  private serveAll(after?: QueueState): void {
    const all = this.queueStates;
    const from = after === undefined ? 0 : all.indexOf(after) + 1; // -1 + 1: an ended session's queue, from 0
    for (let i = 0; i < all.length; i++) this.serve(all[(from + i) % all.length]);
  }

  /** Start as many available requests as the bounds allow. */
  private serve(qs: QueueState): void {
    // A previous session's I/O still runs: wait for it (see the file comment).
    if (this.session === null || !this.queueStates.includes(qs)) return;
    if (this.staleRunning > 0) {
      this.stats.deferred++;
      return;
    }
    this.cachedBudget = this.cachedReadBudget;
    // At most a ring's worth of chains per wake-up, the cap the transport puts on a kick: requests
    // that complete at once (refused, or read from the page cache) do not count against the
    // in-flight bounds, and a wake-up from a completion is no kick, so without it a driver that
    // re-posts as fast as they complete would keep this loop, and the event loop, busy for good.
    let left = qs.handle.size;
    while (qs.inFlight < this.maxInFlight && this.runningBytes < this.maxInFlightBytes) {
      if (left === 0) {
        this.serveLater(qs);
        break;
      }
      const chain = qs.handle.pop();
      if (chain === null) break;
      left--;
      this.start(qs, chain);
    }
  }

  /** serve(qs) again on the next event-loop turn (once, however often asked meanwhile). */
  private serveLater(qs: QueueState): void {
    if (qs.serveScheduled) return;
    qs.serveScheduled = true;
    setImmediate(() => {
      qs.serveScheduled = false;
      this.serve(qs);
    });
  }

  /** Check one request; fail it at once or start its I/O. */
  private start(qs: QueueState, chain: DeviceChain): void {
    const header = new Uint8Array(BLK_REQ_HEADER_SIZE);
    if (chain.readableLength >= BLK_REQ_HEADER_SIZE) chain.read(header, 0); // the one read of the header
    const plan = planRequest(header, chain.readableLength, chain.writableLength, this.limits);
    switch (plan.op) {
      case 'none':
        this.stats.noStatus++;
        this.complete(qs, chain, this.epoch, null);
        return;
      case 'fail':
        this.fault(plan.fault);
        this.complete(qs, chain, this.epoch, plan.status);
        return;
      case 'flush':
        this.run(qs, chain, 0, async () => {
          await this.datasync();
          return 0;
        }, 'flush');
        return;
      case 'get-id': {
        const n = Math.min(plan.length, BLK_ID_BYTES);
        const id = new Uint8Array(n);
        id.set(this.serial.subarray(0, n));
        chain.write(id, 0);
        this.count('get-id');
        this.complete(qs, chain, this.epoch, 'OK');
        return;
      }
      case 'in': {
        const cached = this.readCached(chain, plan.length, plan.position);
        if (cached === plan.length && cached > 0) {
          this.stats.cachedReads++;
          this.count('in');
          this.complete(qs, chain, this.epoch, 'OK');
          return;
        }
        // The rest (all of it without a cached read) through a private buffer, written into the
        // chain after `cached` bytes once the read finished — if the session still lives.
        const rest = plan.length - cached;
        const buf = this.pool.take(rest); // filled completely before use (read zero-fills past EOF)
        this.run(qs, chain, rest, async () => {
          await this.image.read(buf, plan.position + cached);
          return buf;
        }, 'in', buf, cached);
        return;
      }
      case 'out': {
        const sync = this.syncWrites;
        const buf = this.pool.take(plan.length); // filled completely by chain.read just below
        chain.read(buf, BLK_REQ_HEADER_SIZE); // private copy before any await
        this.run(qs, chain, plan.length, async () => {
          await this.image.write(buf, plan.position);
          if (sync) await this.datasync();
          return 0;
        }, 'out', buf);
        return;
      }
      case 'discard':
      case 'write-zeroes': {
        const payload = new Uint8Array(plan.segments * BLK_DWZ_SEGMENT_SIZE);
        chain.read(payload, BLK_REQ_HEADER_SIZE);
        const sync = this.syncWrites;
        const segs = planSegments(payload, plan.op === 'discard', BLK_MAX_DWZ_SECTORS, this.limits);
        if (!Array.isArray(segs)) {
          this.fault(segs.fault);
          this.complete(qs, chain, this.epoch, segs.status);
          return;
        }
        this.run(qs, chain, 0, async () => {
          // DISCARD punches holes, WRITE_ZEROES zeroes in place (write_zeroes_may_unmap is 0, so
          // its unmap flag does not deallocate); the image writes zeroes where it cannot.
          // A segment of 0 sectors asks for nothing (QEMU answers it OK too): no call of 0 bytes.
          for (const s of segs) if (s.length > 0) await this.image.zeroRange(s.position, s.length, plan.op === 'discard' ? 'discard' : 'zeroes');
          if (sync) await this.datasync();
          return 0;
        }, plan.op);
        return;
      }
    }
  }

  /**
   * fdatasync, failing for good once one failed (`syncFailure`). A sync that was running when
   * another failed fails too: the kernel may have told only the other about the lost pages.
   */
  private async datasync(): Promise<void> {
    const failed = (): ImageError => {
      const first = this.syncFailure!;
      return new ImageError('fdatasync', first.path, first.errnoCode, `an earlier fdatasync failed (${first.reason}): written data may be lost; restart on a checked image`);
    };
    if (this.syncFailure !== null) throw failed();
    try {
      await this.image.datasync();
    } catch (err) {
      const e = ImageError.from(err, 'fdatasync', this.image.path);
      this.syncFailure ??= e;
      throw e;
    }
    if (this.syncFailure !== null) throw failed();
  }

  /**
   * Copy what the page cache holds of an IN request's data into its writable segments, now
   * (ImageFile.readCached: no I/O outlives the call). Returns the bytes copied, from the start
   * of the data; 0 when switched off, without readCached, or past this pass's budget.
   */
  private readCached(chain: DeviceChain, length: number, position: number): number {
    const image = this.image;
    if (!this.cachedReads || image.readCached === undefined || length === 0 || this.cachedBudget < length) return 0;
    // Only the data part: the status byte (the last writable byte) is written on completion.
    let n = 0;
    try {
      n = image.readCached(chain.writableSegments(), length, position);
    } catch {
      n = 0; // a seam that throws: the asynchronous read repeats it and reports any error
    }
    const got = Number.isSafeInteger(n) && n > 0 ? Math.min(n, length) : 0;
    this.cachedBudget -= got;
    this.stats.cachedBytes += got;
    return got;
  }

  /**
   * Run `io` for a request; on success copy IN data (into the writable part from `dataOffset`),
   * then status OK; on an image error IOERR. `pooled`: the request's data buffer, given back to
   * the pool once the I/O settled and the data was copied (never while the file call may still
   * use it).
   */
  private run(qs: QueueState, chain: DeviceChain, bytes: number, io: () => Promise<Uint8Array | 0>, op: string, pooled?: Buffer, dataOffset = 0): void {
    const epoch = this.epoch;
    qs.inFlight++;
    this.running++;
    this.unsettled++;
    this.runningBytes += bytes;
    if (this.running > this.stats.peakInFlight) this.stats.peakInFlight = this.running;
    io().then(
      (data) => {
        this.finish(qs, epoch, bytes);
        if (epoch !== this.epoch) return;
        if (data !== 0) chain.write(data, dataOffset);
        this.count(op);
        this.complete(qs, chain, epoch, 'OK');
      },
      (err: unknown) => {
        this.finish(qs, epoch, bytes);
        const e = ImageError.from(err, op, this.image.path);
        this.fault('io');
        // Completed first: a listener that throws must not keep the request from its driver.
        if (epoch === this.epoch) this.complete(qs, chain, epoch, 'IOERR');
        this.emit('io-error', e);
      },
    ).finally(() => {
      if (pooled !== undefined) this.pool.give(pooled);
      this.settled();
      // Room again (or a stale session's I/O drained): serve what waits, on every live queue.
      if (this.session !== null) this.serveAll(qs);
    }).catch((err: unknown) => {
      // Not an image error (those were handled above): an 'io-error' listener threw, or the
      // completion itself failed. Raise it outside the promise chain, where an emitter's caller
      // would see it, rather than relabel it as another 'io-error'.
      process.nextTick(() => {
        throw err;
      });
    });
  }

  private finish(qs: QueueState, epoch: number, bytes: number): void {
    qs.inFlight--;
    this.running--;
    this.runningBytes -= bytes;
    if (epoch !== this.epoch) {
      this.stats.dropped++;
      this.staleRunning = Math.max(0, this.staleRunning - 1);
    }
  }

  /** A request is done with everything (run()'s last step): wake drain() once none is left. */
  private settled(): void {
    this.unsettled--;
    if (this.unsettled === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Write the status byte (the last writable byte) and push. `status` null: no status can be
   * written (no writable byte), the chain goes back with 0 bytes. Used length: the whole
   * writable part when the status was written (it is its last byte), as the data before it is
   * the request's own (IN data, or bytes the device left untouched on an error).
   */
  private complete(qs: QueueState, chain: DeviceChain, epoch: number, status: keyof typeof BlkStatus | null): void {
    if (epoch !== this.epoch) return;
    let written = 0;
    if (status !== null) {
      chain.write(Uint8Array.of(BlkStatus[status]), chain.writableLength - 1);
      written = chain.writableLength;
    }
    qs.handle.push(chain, written);
    if (!qs.flushScheduled) {
      qs.flushScheduled = true;
      queueMicrotask(() => {
        qs.flushScheduled = false;
        if (this.queueStates.includes(qs)) qs.handle.flush();
      });
    }
  }

  private count(op: string): void {
    this.stats.completed[op] = (this.stats.completed[op] ?? 0) + 1;
  }

  private fault(f: RequestFault | 'io'): void {
    this.stats.faults[f] = (this.stats.faults[f] ?? 0) + 1;
  }
}

/** Open `path` and make a device over it (sized now; `resize()` re-reads the size later). */
export async function openBlockDevice(path: string, opts: BlockDeviceOptions = {}): Promise<BlockDevice> {
  const image = await openImage(path, { readOnly: opts.readOnly ?? false, cachedReads: opts.cachedReads ?? true });
  try {
    return new BlockDevice(image, await image.size(), opts);
  } catch (err) {
    await image.close().catch(() => undefined);
    throw err;
  }
}
