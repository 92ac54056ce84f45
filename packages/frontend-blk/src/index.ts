/**
 * @vshm/frontend-blk: a virtio-blk driver (front-end) on the vshm plug-in API, and an NBD server
 * that exports it to standard block tools.
 */
export { BlockDriver, createBlockDriver, BLOCK_DRIVER_FEATURES, DEFAULT_MAX_TRANSFER, type BlockDriverOptions, type BlockGeometry } from './driver.js';
export { BlockError } from './errors.js';
export { encodeBlkHeader, encodeDwzSegment } from './wire.js';
export { NbdServer, MAX_INFLIGHT, DEFAULT_MAX_CONNECTIONS, type NbdServerOptions } from './nbd-server.js';
export * as nbd from './nbd-protocol.js';
export { openBlock, type OpenBlockOptions, type BlockLink } from './open.js';
