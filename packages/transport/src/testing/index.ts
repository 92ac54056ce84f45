/**
 * `@vshm/transport/testing`: the test kit, behind its own door. Test doubles that play
 * the other side of a ring over the same memory (MockDriver, MockDevice), an in-process loopback
 * pair of ivshmem devices, the seeded hostile-ring generator and its PRNG, and the
 * structure-aware queue-operation fuzzer. For tests, benches and
 * fuzzing; product code (packages' and examples' src/) never imports this subpath.
 */
export { createLoopbackPair, simulateServerGone, type LoopbackOptions } from './loopback.js';
export { MockDriver, type MockSegment, type MockUsed } from './mock-driver.js';
export { MockDevice, type MockChain } from './mock-device.js';
export {
  runHostileDeviceCase,
  runHostileDriverCase,
  HostileAssertionError,
  type HostileCaseResult,
  type HostileDriverResult,
} from './hostile.js';
export { Prng } from './prng.js';
export { runQueueOpsCase, type QueueOpsResult } from './queue-ops.js';
