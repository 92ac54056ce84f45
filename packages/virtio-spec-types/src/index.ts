/**
 * virtio-spec-types: constants and pure helpers of the VIRTIO 1.2 wire formats vshm uses.
 * No runtime dependencies; every value cites its source (OASIS VIRTIO 1.2, vshm spec).
 */
export * from './device-ids.js';
export * from './features.js';
export * from './status.js';
export * from './split-ring.js';
export * from './console.js';
export * from './rng.js';
export * from './console-control.js';
export * from './blk.js';
