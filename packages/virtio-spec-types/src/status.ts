/**
 * Device status bits (OASIS VIRTIO 1.2 §2.1, vshm spec §4.5). Status lives in the low 8 bits of
 * the header's `device_status` word. The FE writes it by transaction; DEVICE_NEEDS_RESET is the
 * only bit the BE sets itself (spec §6.3), and clearing FEATURES_OK is how it rejects features.
 */
export const DeviceStatus = {
  /** 0 written by the FE: reset the device. */
  RESET: 0,
  ACKNOWLEDGE: 0x01,
  DRIVER: 0x02,
  DRIVER_OK: 0x04,
  FEATURES_OK: 0x08,
  DEVICE_NEEDS_RESET: 0x40,
  FAILED: 0x80,
} as const;

export type DeviceStatusName = keyof typeof DeviceStatus;

/** Only the low 8 bits of `device_status` carry status (spec §4.2). */
export const DEVICE_STATUS_MASK = 0xff;
