/**
 * virtio-blk (OASIS VIRTIO 1.2 §5.2): feature bits, request types, status values and the
 * configuration-space layout. Offsets are relative to the config start (vshm header 0x4C + offset).
 */

/** Device-specific feature bit numbers (VIRTIO 1.2 §5.2.3). */
export const BlkFeature = {
  /** `size_max`: largest single data segment, in bytes. */
  SIZE_MAX: 1,
  /** `seg_max`: most data segments in one request. */
  SEG_MAX: 2,
  /** `geometry` is valid. */
  GEOMETRY: 4,
  /** The device is read-only. */
  RO: 5,
  /** `blk_size` is valid (logical block size). */
  BLK_SIZE: 6,
  /** FLUSH requests are supported. */
  FLUSH: 9,
  /** `topology` is valid. */
  TOPOLOGY: 10,
  /** `writeback` config field is driver-writable (cache mode toggle). */
  CONFIG_WCE: 11,
  /** `num_queues` request queues. */
  MQ: 12,
  /** DISCARD requests and the discard config fields. */
  DISCARD: 13,
  /** WRITE_ZEROES requests and the write-zeroes config fields. */
  WRITE_ZEROES: 14,
} as const;

/** Request types: the `type` field of the request header (VIRTIO 1.2 §5.2.6). */
export const BlkRequestType = {
  IN: 0,
  OUT: 1,
  FLUSH: 4,
  GET_ID: 8,
  DISCARD: 11,
  WRITE_ZEROES: 13,
} as const;

/** Values of the status byte the device writes last (VIRTIO 1.2 §5.2.6). */
export const BlkStatus = {
  OK: 0,
  IOERR: 1,
  UNSUPP: 2,
} as const;

/** Sector unit of `capacity` and of the header `sector`, whatever `blk_size` is (VIRTIO 1.2
 * §5.2.4). */
export const BLK_SECTOR_SIZE = 512;
/** Request header: `type` u32 at 0, `reserved` u32 at 4, `sector` u64 at 8. */
export const BLK_REQ_HEADER_SIZE = 16;
export const BLK_REQ_TYPE = 0;
export const BLK_REQ_SECTOR = 8;
/** GET_ID answers with at most this many bytes (the serial, NUL-padded, not NUL-terminated if 20 long). */
export const BLK_ID_BYTES = 20;
/**
 * One DISCARD / WRITE_ZEROES segment (`virtio_blk_discard_write_zeroes`): `sector` u64 at 0,
 * `num_sectors` u32 at 8, `flags` u32 at 12 (bit 0 unmap).
 */
export const BLK_DWZ_SEGMENT_SIZE = 16;
export const BLK_DWZ_SECTOR = 0;
export const BLK_DWZ_NUM_SECTORS = 8;
export const BLK_DWZ_FLAGS = 12;
export const BLK_DWZ_FLAG_UNMAP = 1;

/** Config-space offsets (VIRTIO 1.2 §5.2.4, `struct virtio_blk_config`). */
export const BlkConfig = {
  /** u64: size in 512-byte sectors. */
  CAPACITY: 0,
  /** u32 (SIZE_MAX). */
  SIZE_MAX: 8,
  /** u32 (SEG_MAX). */
  SEG_MAX: 12,
  /** u16 cylinders, u8 heads, u8 sectors (GEOMETRY). */
  GEOMETRY_CYLINDERS: 16,
  GEOMETRY_HEADS: 18,
  GEOMETRY_SECTORS: 19,
  /** u32 (BLK_SIZE). */
  BLK_SIZE: 20,
  /** TOPOLOGY: u8 physical_block_exp, u8 alignment_offset, u16 min_io_size, u32 opt_io_size. */
  PHYSICAL_BLOCK_EXP: 24,
  ALIGNMENT_OFFSET: 25,
  MIN_IO_SIZE: 26,
  OPT_IO_SIZE: 28,
  /** u8 (CONFIG_WCE). */
  WRITEBACK: 32,
  /** u16 (MQ). */
  NUM_QUEUES: 34,
  /** u32 ×3 (DISCARD). */
  MAX_DISCARD_SECTORS: 36,
  MAX_DISCARD_SEG: 40,
  DISCARD_SECTOR_ALIGNMENT: 44,
  /** u32 ×2, u8 (WRITE_ZEROES). */
  MAX_WRITE_ZEROES_SECTORS: 48,
  MAX_WRITE_ZEROES_SEG: 52,
  WRITE_ZEROES_MAY_UNMAP: 56,
} as const;

/** Config bytes up to and including the write-zeroes fields (57, padded to 60). */
export const BLK_CONFIG_SIZE = 60;
