/**
 * virtio-console (OASIS VIRTIO 1.2 §5.3, vshm spec §7.2).
 */

/** Device-specific feature bit numbers. */
export const ConsoleFeature = {
  /** `cols`/`rows` are valid. */
  SIZE: 0,
  /** Multiple ports and the control queues. */
  MULTIPORT: 1,
  /** `emerg_wr` config field. */
  EMERG_WRITE: 2,
} as const;

/** Config-space field offsets (relative to config start; header offset = 0x4C + this). */
export const CONSOLE_CONFIG_COLS = 0; // u16
export const CONSOLE_CONFIG_ROWS = 2; // u16
export const CONSOLE_CONFIG_MAX_NR_PORTS = 4; // u32
export const CONSOLE_CONFIG_EMERG_WR = 8; // u32, driver-written
/** Bytes of console config space. */
export const CONSOLE_CONFIG_SIZE = 12;

/** Control message events (spec §7.2). */
export const ConsoleControlEvent = {
  /** driver → device; value 1 ok. */
  DEVICE_READY: 0,
  /** device → driver. */
  DEVICE_ADD: 1,
  /** device → driver. */
  DEVICE_REMOVE: 2,
  /** driver → device; value 1 ok. */
  PORT_READY: 3,
  /** device → driver. */
  CONSOLE_PORT: 4,
  /** device → driver; followed by `cols` u16, `rows` u16 (VIRTIO 1.2 order). */
  RESIZE: 5,
  /** both ways; value 1 open, 0 closed. */
  PORT_OPEN: 6,
  /** device → driver; followed by the name bytes. */
  PORT_NAME: 7,
} as const;

export type ConsoleControlEventName = keyof typeof ConsoleControlEvent;

/** Control message layout: `id` u32 at 0, `event` u16 at 4, `value` u16 at 6; 8 bytes. */
export const CONSOLE_CONTROL_SIZE = 8;
export const CONSOLE_CONTROL_ID = 0;
export const CONSOLE_CONTROL_EVENT = 4;
export const CONSOLE_CONTROL_VALUE = 6;
/** RESIZE payload after the 8-byte header: `cols` u16 at 8, `rows` u16 at 10. */
export const CONSOLE_RESIZE_COLS = 8;
export const CONSOLE_RESIZE_ROWS = 10;
export const CONSOLE_RESIZE_SIZE = 12;
/** `id` meaning "no port" in DEVICE_READY replies (VIRTIO_CONSOLE_BAD_ID). */
export const CONSOLE_BAD_ID = 0xffffffff;

/** Queue indices (spec §7.2). */
export const CONSOLE_RECEIVEQ = 0;
export const CONSOLE_TRANSMITQ = 1;
export const CONSOLE_CONTROL_RECEIVEQ = 2;
export const CONSOLE_CONTROL_TRANSMITQ = 3;

/** receiveq index of port `n`: 0 for port 0, 2n+2 for n ≥ 1. */
export function consoleReceiveQueue(port: number): number {
  return port === 0 ? CONSOLE_RECEIVEQ : 2 * port + 2;
}
/** transmitq index of port `n`: 1 for port 0, 2n+3 for n ≥ 1. */
export function consoleTransmitQueue(port: number): number {
  return port === 0 ? CONSOLE_TRANSMITQ : 2 * port + 3;
}
/** Queue count Q: 2, or 2·maxNrPorts + 2 with MULTIPORT. */
export function consoleQueueCount(multiport: boolean, maxNrPorts: number): number {
  return multiport ? 2 * maxNrPorts + 2 : 2;
}
