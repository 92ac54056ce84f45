/**
 * An in-process pair of ivshmem v2 devices (spec §3) over plain ArrayBuffers: no server, no
 * socket, no addon. For unit tests of the virtio layer and for examples.
 *
 * Memory: an ArrayBuffer cannot alias a sub-range of another, so the region of `size` bytes is
 * two buffers shared by both devices — the 4096-byte state table and the window [4096, size).
 * Both devices return the very same `window` object. There is NO memory protection (§2): a
 * write to the partner's output section or to the state table does not fault here; only a real
 * `IvshmemPeer` enforces that. `window` is not detached by close() (the partner still uses it).
 *
 * Interrupts behave like eventfds: a doorbell sets a per-vector pending flag on the target and
 * schedules ONE setImmediate for that device; several doorbells before it runs coalesce into a
 * single event per vector. Delivery is never synchronous inside doorbell()/setState().
 */
import { EventEmitter } from 'node:events';
import { ArgumentError } from '../errors.js';
import type { IvshmemDevice } from '../ivshmem/device.js';
import { STATE_TABLE_SIZE, SharedMemoryLayout } from '../ivshmem/layout.js';

export interface LoopbackOptions {
  /** Total region size S in bytes, state table included. Default 65536. */
  size?: number;
  /** OUT. Default 0. */
  outputSectionSize?: number;
  /** Eventfds (vectors) per peer, 1…1024. Default 3. */
  vectors?: number;
  /** Configured protocol (server `-P`), rewritten per id as in §1.5. Default 0x8003. */
  protocol?: number;
}

const LOOPBACK_PEERS = 2;

/** §1.5: P ≥ 0x8000 → peer 0 gets the BE form (bit 14 set), the others the FE form. */
function rewriteProtocol(p: number, id: number): number {
  if (p < 0x8000) return p;
  return id === 0 ? (p & ~0x4000) | 0x4000 : p & ~0x4000;
}

function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new ArgumentError(`${name} must be an integer ${min}…${max}, got ${String(v)}`);
  }
  return v;
}

/** What both devices of a pair share. */
interface Link {
  readonly table: Uint32Array;
  readonly window: ArrayBuffer;
  readonly devices: LoopbackDevice[];
}

class LoopbackDevice extends EventEmitter implements IvshmemDevice {
  readonly id: number;
  readonly maxPeers = LOOPBACK_PEERS;
  readonly vectors: number;
  readonly protocol: number;
  readonly layout: SharedMemoryLayout;
  interruptsEnabled = false;
  oneShot = false;
  onInterrupt: ((vector: number) => void) | null = null;

  private readonly link: Link;
  private stateValue = 0;
  private closed = false;
  /** simulateServerGone() ran: the partner counts as gone, nothing is announced any more. */
  private serverLost = false;
  /** Per-vector "eventfd counter non-zero" flag. */
  private readonly pending: Uint8Array;
  private anyPending = false;
  private scheduled = false;
  /** Last state seen per peer, for 'peer-state' on vector 0. */
  private readonly seenState: Uint32Array;
  private readonly runPending = (): void => this.deliverPending();

  constructor(link: Link, id: number, vectors: number, protocol: number, layout: SharedMemoryLayout) {
    super();
    this.link = link;
    this.id = id;
    this.vectors = vectors;
    this.protocol = protocol;
    this.layout = layout;
    this.pending = new Uint8Array(vectors);
    this.seenState = new Uint32Array(LOOPBACK_PEERS);
  }

  get window(): ArrayBuffer {
    return this.link.window;
  }

  get state(): number {
    return this.stateValue;
  }

  isPresent(id: number): boolean {
    if (id === this.id) return !this.closed;
    const other = this.link.devices[id];
    return !this.closed && !this.serverLost && other !== undefined && !other.closed;
  }

  peerState(id: number): number {
    // Like IvshmemPeer: 0 for ids that are not present (a closed partner's entry is zeroed too).
    if (!this.isPresent(id)) return 0;
    return Atomics.load(this.link.table, id);
  }

  setState(v: number): void {
    if (this.closed) return;
    const value = v >>> 0;
    Atomics.store(this.link.table, this.id, value); // seq-cst store: also the §3 full fence
    if (value === this.stateValue) return;
    this.stateValue = value;
    for (const d of this.link.devices) {
      if (d !== this && this.isPresent(d.id)) d.raise(0);
    }
  }

  doorbell(target: number, vector: number): void {
    if (this.closed) return;
    if (target !== this.id && !this.isPresent(target)) return;
    const d = this.link.devices[target];
    if (d === undefined || d.closed || !Number.isInteger(vector) || vector < 0 || vector >= d.vectors) return;
    d.raise(vector);
  }

  close(): void {
    if (this.closed) return;
    // §3 reset: Interrupt Control := 0, State write(0), then leave.
    this.interruptsEnabled = false;
    this.setState(0);
    this.closed = true;
    this.pending.fill(0);
    this.anyPending = false;
    // What the server does on disconnect (§1.6) and the partner's device model on PEER_GONE (§3).
    Atomics.store(this.link.table, this.id, 0);
    for (const d of this.link.devices) {
      if (d !== this && !d.closed && !this.serverLost) d.peerGone(this.id);
    }
    this.emit('close');
  }

  /** @internal See simulateServerGone(). */
  loseServer(): void {
    if (this.closed || this.serverLost) return;
    const present = this.link.devices.filter((d) => d !== this && this.isPresent(d.id));
    this.serverLost = true;
    this.emit('server-gone');
    for (const d of present) this.emit('peer-gone', d.id);
    if (present.length > 0) this.raise(0);
  }

  /** The eventfd of `vector` becomes readable (counter += 1; coalesces). */
  private raise(vector: number): void {
    this.pending[vector] = 1;
    this.anyPending = true;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.runPending);
    }
  }

  private peerGone(id: number): void {
    this.emit('peer-gone', id);
    this.raise(0);
  }

  /** The watcher side: clear each readable "eventfd" and deliver or discard the event (§3). */
  private deliverPending(): void {
    this.scheduled = false;
    if (this.closed || !this.anyPending) return;
    this.anyPending = false;
    const pending = this.pending;
    for (let v = 0; v < pending.length; v++) {
      if (pending[v] === 0) continue;
      pending[v] = 0;
      if (v === 0) this.scanStates();
      if (this.closed) return;
      if (this.interruptsEnabled) {
        if (this.oneShot) this.interruptsEnabled = false;
        const sink = this.onInterrupt;
        if (sink !== null) sink(v);
        if (this.closed) return;
      }
    }
  }

  /** On vector 0: report partners whose state entry differs from the last one seen. */
  private scanStates(): void {
    for (let id = 0; id < LOOPBACK_PEERS; id++) {
      if (id === this.id) continue;
      const s = Atomics.load(this.link.table, id);
      if (s !== this.seenState[id]) {
        this.seenState[id] = s;
        this.emit('peer-state', id, s);
      }
    }
  }
}

/**
 * Two connected devices, ids 0 (back-end protocol) and 1 (front-end protocol), maxPeers 2.
 * Both see the same state table and window; see the file comment for what differs from a real
 * peer (no protection, window never detached).
 */
export function createLoopbackPair(opts: LoopbackOptions = {}): [IvshmemDevice, IvshmemDevice] {
  const size = checkInt('size', opts.size ?? 65536, STATE_TABLE_SIZE, 2 ** 31);
  const out = checkInt('outputSectionSize', opts.outputSectionSize ?? 0, 0, 2 ** 31);
  const vectors = checkInt('vectors', opts.vectors ?? 3, 1, 1024);
  const protocol = checkInt('protocol', opts.protocol ?? 0x8003, 0, 0xffff);
  const layout = new SharedMemoryLayout(size, LOOPBACK_PEERS, out); // throws LayoutError if it does not fit
  const link: Link = {
    table: new Uint32Array(new ArrayBuffer(STATE_TABLE_SIZE)),
    window: new ArrayBuffer(size - STATE_TABLE_SIZE),
    devices: [],
  };
  const a = new LoopbackDevice(link, 0, vectors, rewriteProtocol(protocol, 0), layout);
  const b = new LoopbackDevice(link, 1, vectors, rewriteProtocol(protocol, 1), layout);
  link.devices.push(a, b);
  return [a, b];
}

/**
 * Test hook: make loopback devices behave as an `IvshmemPeer` does when the server socket hits
 * EOF (§1.8): 'server-gone', then 'peer-gone' for the partner and vector 0; from then on the
 * partner is absent (doorbells to it are no-ops, `peerState()` reads 0) and close() is no longer
 * announced to it. Call it with both devices of a pair to mimic a server that stopped.
 */
export function simulateServerGone(...devices: IvshmemDevice[]): void {
  for (const d of devices) {
    if (!(d instanceof LoopbackDevice)) throw new ArgumentError('simulateServerGone() takes loopback devices only');
  }
  for (const d of devices) (d as LoopbackDevice).loseServer();
}
