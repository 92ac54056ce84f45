/**
 * VIRTIO device IDs (OASIS VIRTIO 1.2 §5). vshm carries the ID in the low 14 bits of the ivshmem
 * protocol (spec §4.1: `protocol & 0x3FFF`); the Linux front-end binds only IDs < 256.
 */
export const VirtioDeviceId = {
  NET: 1,
  BLOCK: 2,
  CONSOLE: 3,
  RNG: 4,
  BALLOON: 5,
  SCSI: 8,
  NINEP: 9,
  GPU: 16,
  INPUT: 18,
  VSOCK: 19,
  CRYPTO: 20,
  FS: 26,
  PMEM: 27,
  SOUND: 25,
} as const;

export type VirtioDeviceIdName = keyof typeof VirtioDeviceId;
export type VirtioDeviceIdValue = (typeof VirtioDeviceId)[VirtioDeviceIdName];

/** Largest device ID that fits the ivshmem protocol encoding (spec §4.1). */
export const VSHM_MAX_DEVICE_ID = 0x3fff;
