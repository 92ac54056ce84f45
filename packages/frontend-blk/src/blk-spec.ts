/**
 * virtio-blk wire facts the driver needs (OASIS VIRTIO 1.2 §5.2): feature bits, config offsets,
 * request types, status values and the request header. Kept in this package rather than in
 * `virtio-spec-types` while the back-end is built in parallel (docs/decisions.md, "virtio-blk
 * driver"): the integrator may move them there once both sides agree.
 */

/** Sectors are always 512 bytes on the wire, whatever `blk_size` says (VIRTIO 1.2 §5.2.6). */
export const SECTOR_SIZE = 512;

/** Device-specific feature bits (VIRTIO 1.2 §5.2.3). */
export const BlkFeature = {
  SIZE_MAX: 1,
  SEG_MAX: 2,
  GEOMETRY: 4,
  RO: 5,
  BLK_SIZE: 6,
  FLUSH: 9,
  TOPOLOGY: 10,
  CONFIG_WCE: 11,
  MQ: 12,
  DISCARD: 13,
  WRITE_ZEROES: 14,
} as const;

/** Config space offsets (VIRTIO 1.2 §5.2.4, struct virtio_blk_config, little-endian). */
export const BlkConfig = {
  CAPACITY: 0, // le64, in 512-byte sectors
  SIZE_MAX: 8, // le32
  SEG_MAX: 12, // le32
  BLK_SIZE: 20, // le32
  NUM_QUEUES: 34, // le16
  MAX_DISCARD_SECTORS: 36, // le32
  MAX_DISCARD_SEG: 40, // le32
  DISCARD_SECTOR_ALIGNMENT: 44, // le32
  MAX_WRITE_ZEROES_SECTORS: 48, // le32
  MAX_WRITE_ZEROES_SEG: 52, // le32
  WRITE_ZEROES_MAY_UNMAP: 56, // u8
} as const;

/** Size of the config space up to and including `write_zeroes_may_unmap` and its padding. */
export const BLK_CONFIG_SIZE = 60;

/** Request types (VIRTIO 1.2 §5.2.6). */
export const BlkType = {
  IN: 0,
  OUT: 1,
  FLUSH: 4,
  GET_ID: 8,
  DISCARD: 11,
  WRITE_ZEROES: 13,
} as const;

/** Status byte values (VIRTIO 1.2 §5.2.6). */
export const BlkStatus = {
  OK: 0,
  IOERR: 1,
  UNSUPP: 2,
} as const;

/** `struct virtio_blk_outhdr`: le32 type, le32 reserved, le64 sector. */
export const BLK_HEADER_SIZE = 16;
/** GET_ID answers with up to 20 bytes, NUL-padded. */
export const BLK_ID_BYTES = 20;
/** One DISCARD / WRITE_ZEROES segment: le64 sector, le32 num_sectors, le32 flags. */
export const BLK_DWZ_SEGMENT_SIZE = 16;
/** Flag of a WRITE_ZEROES segment: the device may deallocate the range. */
export const BLK_WZ_FLAG_UNMAP = 1;

/** Encode a request header. */
export function encodeBlkHeader(type: number, sector: number): Uint8Array {
  const b = new Uint8Array(BLK_HEADER_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, type, true);
  v.setBigUint64(8, BigInt(sector), true);
  return b;
}

/** Encode one DISCARD / WRITE_ZEROES segment. */
export function encodeDwzSegment(sector: number, sectors: number, flags: number): Uint8Array {
  const b = new Uint8Array(BLK_DWZ_SEGMENT_SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(sector), true);
  v.setUint32(8, sectors, true);
  v.setUint32(12, flags, true);
  return b;
}
