/**
 * virtio-console control messages (OASIS VIRTIO 1.2 §5.3.6.2, vshm spec §7.2): the one file that
 * owns their wire format. Pure: bytes in, values out; no queue, no stream.
 *
 * A message is 8 bytes, little-endian: `id` u32 at 0, `event` u16 at 4, `value` u16 at 6.
 * RESIZE is followed by `cols` u16 then `rows` u16 (the VIRTIO 1.2 order). Linux kernels without
 * the 2025 fix (upstream 5326ab737a47, backported to the stable series) read `rows` first: a
 * device that serves such a guest may encode the legacy order (ConsoleResizeOrder); a vshm FE
 * decodes the VIRTIO order only. PORT_NAME is followed by
 * the name bytes, without a terminating NUL (the Linux driver takes the payload length as the
 * name length).
 */
import {
  CONSOLE_CONTROL_EVENT,
  CONSOLE_CONTROL_ID,
  CONSOLE_CONTROL_SIZE,
  CONSOLE_CONTROL_VALUE,
  CONSOLE_RESIZE_COLS,
  CONSOLE_RESIZE_ROWS,
  CONSOLE_RESIZE_SIZE,
  ConsoleControlEvent,
} from './console.js';

/**
 * The order of the two values after a RESIZE header: `'cols-rows'` is VIRTIO 1.2's;
 * `'rows-cols'` is what Linux's virtio_console read before its 2025 fix.
 */
export type ConsoleResizeOrder = 'cols-rows' | 'rows-cols';

/** A decoded control message. `payload` holds the bytes after the 8-byte header (a copy). */
export interface ConsoleControlMessage {
  readonly id: number;
  readonly event: number;
  readonly value: number;
  readonly payload: Uint8Array;
}

/**
 * A control message that cannot be decoded. Carries a stable `code` and the spec section, like
 * the transport's VshmError (this package has no dependencies, so it defines its own class).
 */
export class ConsoleControlError extends Error {
  readonly code: string;
  readonly section = '7.2';
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ConsoleControlError';
    this.code = code;
  }
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${name} must be a u32, got ${String(v)}`);
}
function checkU16(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${name} must be a u16, got ${String(v)}`);
}

/** Encode the 8-byte header followed by `payload` (default none). */
export function encodeConsoleControl(id: number, event: number, value: number, payload?: Uint8Array): Uint8Array {
  checkU32('id', id);
  checkU16('event', event);
  checkU16('value', value);
  const out = new Uint8Array(CONSOLE_CONTROL_SIZE + (payload?.length ?? 0));
  const dv = new DataView(out.buffer);
  dv.setUint32(CONSOLE_CONTROL_ID, id, true);
  dv.setUint16(CONSOLE_CONTROL_EVENT, event, true);
  dv.setUint16(CONSOLE_CONTROL_VALUE, value, true);
  if (payload !== undefined) out.set(payload, CONSOLE_CONTROL_SIZE);
  return out;
}

/**
 * RESIZE for port `id`: header (value 0) then `cols`, `rows` — 12 bytes. `order` `'rows-cols'`
 * swaps the two values, for a Linux guest without the 2025 fix.
 */
export function encodeConsoleResize(id: number, cols: number, rows: number, order: ConsoleResizeOrder = 'cols-rows'): Uint8Array {
  checkU16('cols', cols);
  checkU16('rows', rows);
  const out = encodeConsoleControl(id, ConsoleControlEvent.RESIZE, 0, new Uint8Array(4));
  const dv = new DataView(out.buffer);
  const legacy = order === 'rows-cols';
  dv.setUint16(CONSOLE_RESIZE_COLS, legacy ? rows : cols, true);
  dv.setUint16(CONSOLE_RESIZE_ROWS, legacy ? cols : rows, true);
  return out;
}

/** PORT_NAME for port `id` (value 1, as QEMU sends it): header then the UTF-8 name, no NUL. */
export function encodeConsolePortName(id: number, name: string): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length === 0) throw new RangeError('port name must not be empty');
  return encodeConsoleControl(id, ConsoleControlEvent.PORT_NAME, 1, bytes);
}

/**
 * Decode one control message from the readable bytes of a control-transmitq/receiveq buffer.
 * Throws ConsoleControlError VSHM_ERR_CONTROL_SHORT for fewer than 8 bytes (the spec says such
 * messages are ignored: callers catch and drop). Unknown events decode fine; callers ignore them.
 */
export function decodeConsoleControl(bytes: Uint8Array): ConsoleControlMessage {
  if (bytes.length < CONSOLE_CONTROL_SIZE) {
    throw new ConsoleControlError('VSHM_ERR_CONTROL_SHORT', `control message of ${bytes.length} bytes, need ${CONSOLE_CONTROL_SIZE}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    id: dv.getUint32(CONSOLE_CONTROL_ID, true),
    event: dv.getUint16(CONSOLE_CONTROL_EVENT, true),
    value: dv.getUint16(CONSOLE_CONTROL_VALUE, true),
    payload: bytes.slice(CONSOLE_CONTROL_SIZE),
  };
}

/**
 * `cols`/`rows` of a decoded RESIZE, read in `order` (VIRTIO 1.2's by default; `'rows-cols'` reads
 * as a Linux guest without the 2025 fix does). Throws VSHM_ERR_CONTROL_SHORT if truncated.
 */
export function decodeConsoleResize(msg: ConsoleControlMessage, order: ConsoleResizeOrder = 'cols-rows'): { cols: number; rows: number } {
  const need = CONSOLE_RESIZE_SIZE - CONSOLE_CONTROL_SIZE;
  if (msg.payload.length < need) {
    throw new ConsoleControlError('VSHM_ERR_CONTROL_SHORT', `RESIZE payload of ${msg.payload.length} bytes, need ${need}`);
  }
  const dv = new DataView(msg.payload.buffer, msg.payload.byteOffset, msg.payload.byteLength);
  const first = dv.getUint16(CONSOLE_RESIZE_COLS - CONSOLE_CONTROL_SIZE, true);
  const second = dv.getUint16(CONSOLE_RESIZE_ROWS - CONSOLE_CONTROL_SIZE, true);
  return order === 'rows-cols' ? { cols: second, rows: first } : { cols: first, rows: second };
}

/**
 * The name of a decoded PORT_NAME: its payload as UTF-8, cut at the first NUL (some devices
 * terminate it). Invalid UTF-8 is replaced, never thrown.
 */
export function decodeConsolePortName(msg: ConsoleControlMessage): string {
  const nul = msg.payload.indexOf(0);
  const bytes = nul < 0 ? msg.payload : msg.payload.subarray(0, nul);
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

/** Name of a known event number (for logs), or `EVENT_<n>`. */
export function consoleControlEventName(event: number): string {
  for (const [name, n] of Object.entries(ConsoleControlEvent)) if (n === event) return name;
  return `EVENT_${event}`;
}

/** Whether two encoded control messages are about the same port: their `id` fields are equal. */
export function sameConsoleControlPort(a: Uint8Array, b: Uint8Array): boolean {
  return a.length >= 4 && b.length >= 4 && a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

/** Whether two encoded control messages are the same message: the same bytes. */
export function sameConsoleControl(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
