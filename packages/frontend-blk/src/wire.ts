/**
 * Encoders of the two little structures the driver puts on the wire (OASIS VIRTIO 1.2 §5.2.6).
 * The constants themselves come from `virtio-spec-types` (blk.ts), shared with the back-end.
 */
import { BLK_DWZ_FLAGS, BLK_DWZ_NUM_SECTORS, BLK_DWZ_SECTOR, BLK_DWZ_SEGMENT_SIZE, BLK_REQ_HEADER_SIZE, BLK_REQ_SECTOR, BLK_REQ_TYPE } from 'virtio-spec-types';

/** Encode a request header (`struct virtio_blk_outhdr`: type, reserved 0, sector). */
export function encodeBlkHeader(type: number, sector: number): Uint8Array {
  const b = new Uint8Array(BLK_REQ_HEADER_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(BLK_REQ_TYPE, type, true);
  v.setBigUint64(BLK_REQ_SECTOR, BigInt(sector), true);
  return b;
}

/** Encode one DISCARD / WRITE_ZEROES segment. */
export function encodeDwzSegment(sector: number, sectors: number, flags: number): Uint8Array {
  const b = new Uint8Array(BLK_DWZ_SEGMENT_SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(BLK_DWZ_SECTOR, BigInt(sector), true);
  v.setUint32(BLK_DWZ_NUM_SECTORS, sectors, true);
  v.setUint32(BLK_DWZ_FLAGS, flags, true);
  return b;
}
