/**
 * Thin adapter between the back-end's queue registers and the split-ring engine
 * (device-queue.ts): builds the §6.2 access policy once per backend and a `DeviceQueue` per
 * enabled queue with the negotiated ring features.
 */
import { VirtioFeature, hasFeature } from 'virtio-spec-types';
import { MemoryView } from '../ring/memory.js';
import { createAccessPolicy, type AccessPolicy } from '../ring/validation.js';
import { DeviceQueue } from '../ring/device-queue.js';
import type { QueueAddresses } from '../ring/ring-layout.js';

/** The engine queue as the backend uses it. */
export type BackendRing = DeviceQueue;

export interface RingContext {
  readonly memory: MemoryView;
  readonly policy: AccessPolicy;
}

/**
 * The BE's view of the window: it may read [0, RW + 2·OUT) and write [0, RW) plus its own
 * output section (§6.2); with `enforceIsolation` only the §5.2 placements (needs OUT ≠ 0).
 */
export function createRingContext(window: ArrayBuffer, rwSize: number, outputSectionSize: number, ownPeer: number, enforceIsolation: boolean): RingContext {
  return {
    memory: new MemoryView(window),
    policy: createAccessPolicy({ rwSize, outputSectionSize, maxPeers: 2, ownPeer, enforceIsolation }),
  };
}

/**
 * `queue_enable` := 1 (§4.3): validate (§6.1; throws RingError) and start a device queue. A used
 * ring in the BE's own output section is zeroed here (§5.2) — the engine's default.
 */
export function openRing(ctx: RingContext, addrs: QueueAddresses, offeredMax: number, features: bigint): BackendRing {
  return new DeviceQueue({
    ...addrs,
    memory: ctx.memory,
    policy: ctx.policy,
    offeredMax,
    eventIdx: hasFeature(features, VirtioFeature.RING_EVENT_IDX),
    indirect: hasFeature(features, VirtioFeature.RING_INDIRECT_DESC),
  });
}
