/**
 * The `DriverSession` a driver receives on probe (device-api.ts): negotiated features, queues,
 * and config access — reads honour `config_generation` (§4.8), writes are transactions (§4.3).
 * A session dies when the device is lost, broken, reset or closed; afterwards config reads throw
 * and writes reject, and its queues accept nothing.
 */
import { ArgumentError, TransportError } from '../errors.js';
import { PEER_STATE_READY, type IvshmemDevice } from '../ivshmem/device.js';
import type { ConfigReader, ConfigWidth, DriverQueueHandle, DriverSession } from './device-api.js';
import { backendLost, type TransactionWriter } from './frontend-transactions.js';
import { HDR_CONFIG, type FrontendHeader } from './header.js';

/** Spins of a config read while `config_generation` is odd before giving up (§4.8). */
const CONFIG_SPIN_LIMIT = 1 << 20;

/**
 * §4.8 config reads over the FE header: acquire-load `config_generation`, spin while odd (checking
 * the BE every 1024 spins), read the field — or, for `readMany`, every field the caller's function
 * reads — re-read the generation and retry if it changed. Synchronous: a BE mid-update finishes
 * within its own synchronous step, so the spin is short; it is bounded anyway (one budget for the
 * odd spins and the retries together), and a BE that leaves READY meanwhile is a back-end failure
 * (`onLost`, then throw). Used by the session and, before the queues exist, by `queueCount`
 * (device-api.ts).
 */
export class GenerationConfigReader implements ConfigReader {
  readonly size: number;
  private closed = false;
  /** A readMany() call is running: its reader function may load fields. */
  private inMany = false;
  private readonly loadField = (offset: number, width: ConfigWidth): number => {
    if (!this.inMany) throw new ArgumentError('the reader of readConfigMany() is valid only during its call');
    this.check(offset, width);
    return this.header.loadConfig(offset, width);
  };

  constructor(
    private readonly header: FrontendHeader,
    headerSize: number,
    private readonly device: IvshmemDevice,
    private readonly partner: number,
    private readonly onLost: (err: Error) => void,
  ) {
    this.size = headerSize - HDR_CONFIG;
  }

  /** Later reads throw VSHM_ERR_SESSION_DEAD (the reader outlived its call or session). */
  close(): void {
    this.closed = true;
  }

  /** One field: readMany() of that field alone (config reads are rare: probe and config events). */
  read(offset: number, width: ConfigWidth): number {
    this.check(offset, width);
    return this.readMany((load) => load(offset, width));
  }

  /**
   * Several fields under ONE generation check (§4.8; Linux's virtio_cread64 and
   * __virtio_cread_many loop the same way): `fn` reads through `read` and returns what it made of
   * the values; if the back-end updated config meanwhile, `fn` runs again. So `fn` may run more
   * than once and must only read and compute. What it throws propagates (no retry).
   */
  readMany<T>(fn: (read: (offset: number, width: ConfigWidth) => number) => T): T {
    if (typeof fn !== 'function') throw new ArgumentError('readConfigMany needs a function');
    this.checkOpen();
    if (this.inMany) return fn(this.loadField); // nested: the outer call checks the generation
    const h = this.header;
    for (let spins = 0; spins < CONFIG_SPIN_LIMIT; spins++) {
      const g1 = h.configGeneration;
      if ((g1 & 1) !== 0) {
        if ((spins & 1023) === 1023) this.checkBackend();
        continue;
      }
      let v: T;
      this.inMany = true;
      try {
        v = fn(this.loadField);
      } finally {
        this.inMany = false;
      }
      if (h.configGeneration === g1) return v;
    }
    return this.busy();
  }

  /** Argument checks shared with config writes. */
  check(offset: number, width: ConfigWidth): void {
    if (width !== 1 && width !== 2 && width !== 4) throw new ArgumentError(`config width must be 1, 2 or 4, got ${String(width)}`);
    if (!Number.isInteger(offset) || offset < 0 || offset + width > this.size) {
      // §4.2: never read config beyond `size`.
      throw new ArgumentError(`config access [${offset}, +${width}) outside the ${this.size}-byte config space`);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new TransportError('VSHM_ERR_SESSION_DEAD', '4.10', 'session ended');
  }

  /** The generation never settled within the budget: a BE that left meanwhile is lost, else busy. */
  private busy(): never {
    this.checkBackend();
    throw new TransportError('VSHM_ERR_CONFIG_BUSY', '4.8', 'config_generation did not settle');
  }

  private checkBackend(): void {
    if (!this.device.isPresent(this.partner) || this.device.peerState(this.partner) !== PEER_STATE_READY) {
      const err = backendLost('back-end left READY during a config read');
      this.onLost(err);
      throw err;
    }
  }
}

export class FrontendSession implements DriverSession {
  readonly features: bigint;
  readonly queues: readonly DriverQueueHandle[];
  /** Bytes of config space (header `size` − 0x4C). */
  readonly configSize: number;
  /** Generation of this session (1 for the first probe, +1 per re-initialisation). */
  readonly generation: number;
  private readonly txn: TransactionWriter;
  private readonly config: GenerationConfigReader;
  private deadValue = false;

  constructor(args: {
    features: bigint;
    queues: readonly DriverQueueHandle[];
    headerSize: number;
    generation: number;
    header: FrontendHeader;
    txn: TransactionWriter;
    device: IvshmemDevice;
    partner: number;
    onLost: (err: Error) => void;
  }) {
    this.features = args.features;
    this.queues = args.queues;
    this.configSize = args.headerSize - HDR_CONFIG;
    this.generation = args.generation;
    this.txn = args.txn;
    this.config = new GenerationConfigReader(args.header, args.headerSize, args.device, args.partner, args.onLost);
  }

  /** True once the session ended (lost, broken, reset or closed). */
  get dead(): boolean {
    return this.deadValue;
  }

  /** @internal */
  kill(): void {
    this.deadValue = true;
    this.config.close();
  }

  /** §4.8 read (see GenerationConfigReader); throws once the session is dead. */
  readConfig(offset: number, width: ConfigWidth): number {
    return this.config.read(offset, width);
  }

  /** §4.8 read of several fields under one generation check (GenerationConfigReader.readMany). */
  readConfigMany<T>(fn: (read: (offset: number, width: ConfigWidth) => number) => T): T {
    return this.config.readMany(fn);
  }

  /** Write a config field at its width by transaction (§4.3); resolves once the BE completed it. */
  async writeConfig(offset: number, width: ConfigWidth, value: number): Promise<void> {
    this.config.check(offset, width);
    if (!Number.isInteger(value) || value < 0 || value >= 2 ** (8 * width)) {
      throw new ArgumentError(`config value ${value} does not fit ${width} bytes`);
    }
    if (this.deadValue) throw new TransportError('VSHM_ERR_SESSION_DEAD', '4.10', 'session ended');
    await this.txn.write(HDR_CONFIG + offset, width, value);
  }
}
