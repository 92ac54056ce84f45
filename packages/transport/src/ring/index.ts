/**
 * `@vshm/transport/ring`: the split-ring engine alone (spec §6) — a memory view, the ring layout,
 * the read-once validation rules, descriptor chains, and the device and driver halves of a queue.
 * It knows nothing of ivshmem, the virtio-over-ivshmem header or the addon: give it any
 * `ArrayBuffer` (a mapping, a `SharedArrayBuffer`, or `new ArrayBuffer(65536)` in a test) and a
 * way to notify the other side. test/ring/import-rule.test.ts keeps it that way.
 */
export * from './memory.js';
export * from './ring-layout.js';
export * from './validation.js';
export * from './chain.js';
export * from './device-queue.js';
export * from './driver-queue.js';
