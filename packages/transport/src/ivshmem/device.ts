/**
 * The ivshmem v2 device model as the virtio layer sees it (spec §3). Implemented by
 * `IvshmemPeer` (a real peer of a server, over the addon) and by `createLoopbackPair()` (two
 * in-process devices over one plain ArrayBuffer, no addon — for unit tests and examples).
 *
 * The virtio layer depends only on this interface, never on the peer or the addon.
 */
import type { EventEmitter } from 'node:events';
import type { SharedMemoryLayout } from './layout.js';

/** State-table value RESET (spec §4.10): the peer is not using the virtio header. */
export const PEER_STATE_RESET = 0;
/** State-table value READY (spec §4.10); any value other than 1 counts as not READY. */
export const PEER_STATE_READY = 1;

/**
 * Events (EventEmitter):
 * - 'peer-state' (id: number, state: number): a partner's state entry changed (seen on vector 0).
 *   Emitted whenever the own vector 0 fires — also while interrupts are disabled — for each peer
 *   whose `peerState()` differs from the last value reported (initially 0). So it reports changes
 *   after connect: read `peerState()` once for the current value.
 * - 'peer-gone'  (id: number): PEER_GONE processed; the peer's eventfds are closed. Vector 0 fires too.
 * - 'server-gone' (): the server socket reached EOF/hang-up (spec §1.8). `IvshmemPeer` then, by
 *   default, treats every other peer as gone: 'peer-gone' for each, then vector 0. The mapping
 *   stays usable until close().
 * - 'error' (err: Error): protocol error or fatal failure; the device is closed afterwards.
 * - 'close' (): the device released its fds and mappings.
 */
export interface IvshmemDevice extends EventEmitter {
  /** INIT `id`. */
  readonly id: number;
  /** INIT `max_peers`. */
  readonly maxPeers: number;
  /** INIT `vectors`: eventfds per peer. */
  readonly vectors: number;
  /** INIT `protocol` (already rewritten per peer by the server, §1.5). */
  readonly protocol: number;
  readonly layout: SharedMemoryLayout;
  /**
   * Bytes [4096, S) of the region: R/W section then output sections. Index with virtio addresses
   * (§4.7). Protections (§2): R/W and the own output section read/write, other output sections
   * read-only (a write faults). Becomes detached (length 0) after close().
   */
  readonly window: ArrayBuffer;
  /** Whether peer `id` is present (has eventfds, no PEER_GONE yet). Own id: true while open. */
  isPresent(id: number): boolean;
  /** Acquire-load of state-table entry `id` (0 for absent peers). */
  peerState(id: number): number;
  /** The own State register (last value written). */
  readonly state: number;
  /** State write (§3): own entry := v, full fence, signal vector 0 of every other present peer on change. */
  setState(v: number): void;
  /** Interrupt Control bit 0. Events arriving while disabled are discarded (not latched). */
  interruptsEnabled: boolean;
  /** One-shot mode (Privileged Control bit 0): delivering an interrupt clears `interruptsEnabled`. */
  oneShot: boolean;
  /**
   * Doorbell(target, vector): write 1 to the target's eventfd `vector` if the target is present
   * (or self) and has that vector; else nothing. Never overtakes earlier memory writes.
   */
  doorbell(target: number, vector: number): void;
  /**
   * The interrupt sink: called once per delivered event with its vector (after the eventfd was
   * cleared). One handler per device; set null to drop events. Must not throw.
   */
  onInterrupt: ((vector: number) => void) | null;
  /**
   * Reset/shutdown (§3): Interrupt Control := 0, State := 0, then release every fd and mapping
   * and emit 'close'. Idempotent.
   */
  close(): void;
  /**
   * Optional: handle now the server messages that have already arrived (departures, arrivals,
   * end of stream), with their events, instead of on a later event-loop turn. A peer that takes
   * a departed peer's id can write to the memory only after the server queued that PEER_GONE and
   * its own EVENT_FDs to everyone (§1.6, §1.3), so a caller that runs this before acting on
   * what it reads there never takes the newcomer for the departed peer. A no-op when called
   * while those messages are being handled, and for a device without a server.
   */
  receivePending?(): void;
}
