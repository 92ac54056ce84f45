/**
 * Typed errors of the virtio-blk driver and its NBD server: a stable `code` and the
 * spec section ('A' = docs/protocol.md Appendix A, virtio-blk over vshm; '' when none applies).
 */
import { VshmError } from '@vshm/transport';

/**
 * Codes:
 * - VSHM_ERR_BLK_IO: the device answered VIRTIO_BLK_S_IOERR.
 * - VSHM_ERR_BLK_UNSUPPORTED: the device answered VIRTIO_BLK_S_UNSUPP, or the feature the
 *   operation needs (DISCARD, WRITE_ZEROES) was not negotiated.
 * - VSHM_ERR_BLK_READ_ONLY: a write, discard or write-zeroes on a device with VIRTIO_BLK_F_RO.
 * - VSHM_ERR_BLK_RANGE: the byte range leaves the disk (offset + length > capacity).
 * - VSHM_ERR_BLK_ALIGNMENT: offset or length not a multiple of the device's logical block size
 *   (`blockSize`: its blk_size, 512 when it reports none or one out of bounds).
 * - VSHM_ERR_BLK_DEVICE_LOST: the device went away or broke with the request in flight; the
 *   request may or may not have been applied (never retried by the driver).
 * - VSHM_ERR_BLK_NO_MEMORY: a request cannot fit the shared memory even with nothing in flight,
 *   or needs more descriptors than the device's queue holds.
 * - The argument codes (READ_ONLY, RANGE, ALIGNMENT, UNSUPPORTED for a missing feature) come at
 *   the call, and also later for a call that waited across a device change: it is checked again
 *   against the device it is to go to, and fails unsent if that one cannot take it.
 * - VSHM_ERR_CONFIG_BUSY: the device's capacity kept changing while it was read (probe or
 *   config event; the transport then treats the device as broken).
 * - VSHM_ERR_BLK_CLOSED: the driver was closed.
 * - VSHM_ERR_CLOSED: `NbdServer.listen()` called after, or overtaken by, `close()`.
 */
export class BlockError extends VshmError {}
