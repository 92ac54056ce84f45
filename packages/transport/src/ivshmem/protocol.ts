/**
 * The ivshmem v2 server wire format (spec §1.2) and the stateless INIT checks of §1.8.
 *
 * This is the ONLY file that knows byte offsets on the socket. It is pure: it encodes
 * values to bytes and decodes bytes to values or a typed `ProtocolError`; it never touches a
 * socket or an fd. Fds travel beside these bytes as SCM_RIGHTS and are the caller's business.
 *
 * Every message: `type` u32 at 0, `len` u32 at 4 (total length including the header),
 * little-endian. The server always sends exactly the minimum lengths (QEMU's ivshmem2 device
 * parses messages after INIT in a 32-byte buffer); clients accept longer messages and skip the
 * extra bytes (§1.8).
 */
import { ProtocolError } from '../errors.js';

export const MSG_INIT = 0;
export const MSG_EVENT_FD = 1;
export const MSG_PEER_GONE = 2;

export const HEADER_SIZE = 8;
export const INIT_LEN = 40;
export const EVENT_FD_LEN = 16;
export const PEER_GONE_LEN = 12;
/** Largest `len` a client accepts (§1.8). */
export const MAX_MESSAGE_LEN = 4096;
/** `version` and `compatible_version` the server sends (§1.2). */
export const IVSHMEM_VERSION = 2;

/** Limits from §1.8 (a 4096-byte state table of u32 entries; QEMU's vector cap). */
export const MAX_PEERS_MAX = 1024;
export const VECTORS_MAX = 1024;
/** Protocols at or above this are virtio protocols (§1.5, §0). */
export const PROTOCOL_VIRTIO = 0x8000;
/** Bit that marks the back-end (peer 0) in a virtio protocol (§1.5). */
export const PROTOCOL_BACKEND_BIT = 0x4000;
/** Size of the state table at the start of the memory (§2). */
export const STATE_TABLE_BYTES = 4096;

/** Byte offsets of every field on the wire (§1.2); pinned by test/ivshmem/protocol.test.ts. */
export const OFFSETS = Object.freeze({
  type: 0,
  len: 4,
  init: Object.freeze({
    version: 8,
    compatibleVersion: 12,
    id: 16,
    maxPeers: 20,
    vectors: 24,
    protocol: 28,
    outputSectionSize: 32,
  }),
  eventFd: Object.freeze({ id: 8, vector: 12 }),
  peerGone: Object.freeze({ id: 8 }),
});

export interface MessageHeader {
  type: number;
  len: number;
}

/** INIT: carries the shared-memory fd. */
export interface InitMessage {
  type: 0;
  len: number;
  version: number;
  compatibleVersion: number;
  id: number;
  maxPeers: number;
  vectors: number;
  protocol: number;
  /** u64 on the wire; decoding rejects values ≥ 2^53 (no memory that large can exist). */
  outputSectionSize: number;
}

/** EVENT_FD: carries the eventfd of (`id`, `vector`). */
export interface EventFdMessage {
  type: 1;
  len: number;
  id: number;
  vector: number;
}

/** PEER_GONE: no fd. */
export interface PeerGoneMessage {
  type: 2;
  len: number;
  id: number;
}

/** A message of a type this revision does not define (§1.8 decides whether it is an error). */
export interface UnknownMessage {
  type: number;
  len: number;
}

export type ServerMessage = InitMessage | EventFdMessage | PeerGoneMessage | UnknownMessage;

/** Fields of INIT the sender chooses; `version`/`compatibleVersion` default to 2. */
export interface InitFields {
  id: number;
  maxPeers: number;
  vectors: number;
  protocol: number;
  outputSectionSize: number;
  version?: number;
  compatibleVersion?: number;
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
    throw new RangeError(`${name} must be a u32, got ${v}`);
  }
}

function header(type: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  b.writeUInt32LE(type, OFFSETS.type);
  b.writeUInt32LE(len, OFFSETS.len);
  return b;
}

/** INIT, exactly 40 bytes (§1.2). */
export function encodeInit(f: InitFields): Buffer {
  const version = f.version ?? IVSHMEM_VERSION;
  const compatibleVersion = f.compatibleVersion ?? IVSHMEM_VERSION;
  for (const [n, v] of [
    ['version', version],
    ['compatibleVersion', compatibleVersion],
    ['id', f.id],
    ['maxPeers', f.maxPeers],
    ['vectors', f.vectors],
    ['protocol', f.protocol],
  ] as const) {
    checkU32(n, v);
  }
  if (!Number.isSafeInteger(f.outputSectionSize) || f.outputSectionSize < 0) {
    throw new RangeError(`outputSectionSize must be a safe integer ≥ 0, got ${f.outputSectionSize}`);
  }
  const o = OFFSETS.init;
  const b = header(MSG_INIT, INIT_LEN);
  b.writeUInt32LE(version, o.version);
  b.writeUInt32LE(compatibleVersion, o.compatibleVersion);
  b.writeUInt32LE(f.id, o.id);
  b.writeUInt32LE(f.maxPeers, o.maxPeers);
  b.writeUInt32LE(f.vectors, o.vectors);
  b.writeUInt32LE(f.protocol, o.protocol);
  b.writeBigUInt64LE(BigInt(f.outputSectionSize), o.outputSectionSize);
  return b;
}

/** EVENT_FD(id, vector), exactly 16 bytes (§1.2). */
export function encodeEventFd(id: number, vector: number): Buffer {
  checkU32('id', id);
  checkU32('vector', vector);
  const b = header(MSG_EVENT_FD, EVENT_FD_LEN);
  b.writeUInt32LE(id, OFFSETS.eventFd.id);
  b.writeUInt32LE(vector, OFFSETS.eventFd.vector);
  return b;
}

/** PEER_GONE(id), exactly 12 bytes (§1.2). */
export function encodePeerGone(id: number): Buffer {
  checkU32('id', id);
  const b = header(MSG_PEER_GONE, PEER_GONE_LEN);
  b.writeUInt32LE(id, OFFSETS.peerGone.id);
  return b;
}

/**
 * Minimum `len` for a message type (§1.8): 40 / 16 / 12, and the bare header for other types
 * (whose acceptance §1.8 decides from the INIT `version`, not from the length).
 */
export function minLength(type: number): number {
  switch (type) {
    case MSG_INIT:
      return INIT_LEN;
    case MSG_EVENT_FD:
      return EVENT_FD_LEN;
    case MSG_PEER_GONE:
      return PEER_GONE_LEN;
    default:
      return HEADER_SIZE;
  }
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decode the 8-byte header. Throws `ProtocolError` VSHM_ERR_MSG_TRUNCATED if fewer than 8 bytes
 * are given, VSHM_ERR_MSG_LEN if `len` < 8 or > 4096 (§1.8). The type-specific minimum is checked
 * by `decodeMessage` (a reader needs only this to know how many body bytes to ask for).
 */
export function decodeHeader(bytes: Uint8Array): MessageHeader {
  if (bytes.byteLength < HEADER_SIZE) {
    throw new ProtocolError('VSHM_ERR_MSG_TRUNCATED', '1.8', `header needs ${HEADER_SIZE} bytes, got ${bytes.byteLength}`);
  }
  const dv = view(bytes);
  const type = dv.getUint32(OFFSETS.type, true);
  const len = dv.getUint32(OFFSETS.len, true);
  if (len < HEADER_SIZE || len > MAX_MESSAGE_LEN) {
    throw new ProtocolError('VSHM_ERR_MSG_LEN', '1.8', `message type ${type}: len ${len} outside ${HEADER_SIZE}…${MAX_MESSAGE_LEN}`);
  }
  return { type, len };
}

/**
 * Decode a whole message (header and body, exactly `len` bytes or more — bytes past `len` are
 * ignored). Errors (`ProtocolError`, section 1.8):
 * - VSHM_ERR_MSG_TRUNCATED: fewer bytes given than the header's `len`;
 * - VSHM_ERR_MSG_LEN: `len` < 8 or > 4096;
 * - VSHM_ERR_MSG_SHORT: `len` below the type's minimum (40/16/12);
 * - VSHM_ERR_INIT_OUTPUT_SIZE: `output_section_size` ≥ 2^53.
 * Bytes beyond a type's minimum length are skipped (a 48-byte INIT decodes like a 40-byte one).
 * Unknown types decode to `{type, len}`; §1.8 policy on them belongs to the client.
 */
export function decodeMessage(bytes: Uint8Array): ServerMessage {
  const { type, len } = decodeHeader(bytes);
  if (bytes.byteLength < len) {
    throw new ProtocolError('VSHM_ERR_MSG_TRUNCATED', '1.8', `message type ${type}: len ${len} but only ${bytes.byteLength} bytes`);
  }
  const min = minLength(type);
  if (len < min) {
    throw new ProtocolError('VSHM_ERR_MSG_SHORT', '1.8', `message type ${type}: len ${len} below its minimum ${min}`);
  }
  const dv = view(bytes);
  switch (type) {
    case MSG_INIT: {
      const o = OFFSETS.init;
      const out = dv.getBigUint64(o.outputSectionSize, true);
      if (out > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new ProtocolError('VSHM_ERR_INIT_OUTPUT_SIZE', '1.8', `output_section_size ${out} cannot fit any memory`);
      }
      return {
        type: MSG_INIT,
        len,
        version: dv.getUint32(o.version, true),
        compatibleVersion: dv.getUint32(o.compatibleVersion, true),
        id: dv.getUint32(o.id, true),
        maxPeers: dv.getUint32(o.maxPeers, true),
        vectors: dv.getUint32(o.vectors, true),
        protocol: dv.getUint32(o.protocol, true),
        outputSectionSize: Number(out),
      };
    }
    case MSG_EVENT_FD:
      return {
        type: MSG_EVENT_FD,
        len,
        id: dv.getUint32(OFFSETS.eventFd.id, true),
        vector: dv.getUint32(OFFSETS.eventFd.vector, true),
      };
    case MSG_PEER_GONE:
      return { type: MSG_PEER_GONE, len, id: dv.getUint32(OFFSETS.peerGone.id, true) };
    default:
      return { type, len };
  }
}

/**
 * The stateless INIT checks of §1.8. `memorySize` is the `fstat` size of the received memory fd;
 * omit it to skip the size check (e.g. before fstat). Throws `ProtocolError` (section 1.8):
 * - VSHM_ERR_INIT_VERSION: `compatible_version` ≠ 2;
 * - VSHM_ERR_INIT_MAX_PEERS: `max_peers` 0 or > 1024;
 * - VSHM_ERR_INIT_ID: `id` ≥ `max_peers`;
 * - VSHM_ERR_INIT_VECTORS: `vectors` 0 or > 1024;
 * - VSHM_ERR_INIT_PROTOCOL: protocol ≥ 0x8000 with `max_peers` ≠ 2;
 * - VSHM_ERR_INIT_MEMORY: size < 4096 + `max_peers`·`output_section_size` (computed without
 *   overflow: the product is compared in bigint).
 */
export function validateInit(msg: InitMessage, memorySize?: number): void {
  if (msg.compatibleVersion !== IVSHMEM_VERSION) {
    throw new ProtocolError('VSHM_ERR_INIT_VERSION', '1.8', `compatible_version ${msg.compatibleVersion}, need ${IVSHMEM_VERSION}`);
  }
  if (msg.maxPeers === 0 || msg.maxPeers > MAX_PEERS_MAX) {
    throw new ProtocolError('VSHM_ERR_INIT_MAX_PEERS', '1.8', `max_peers ${msg.maxPeers} outside 1…${MAX_PEERS_MAX}`);
  }
  if (msg.id >= msg.maxPeers) {
    throw new ProtocolError('VSHM_ERR_INIT_ID', '1.8', `id ${msg.id} ≥ max_peers ${msg.maxPeers}`);
  }
  if (msg.vectors === 0 || msg.vectors > VECTORS_MAX) {
    throw new ProtocolError('VSHM_ERR_INIT_VECTORS', '1.8', `vectors ${msg.vectors} outside 1…${VECTORS_MAX}`);
  }
  if (msg.protocol >= PROTOCOL_VIRTIO && msg.maxPeers !== 2) {
    throw new ProtocolError(
      'VSHM_ERR_INIT_PROTOCOL',
      '1.8',
      `virtio protocol 0x${msg.protocol.toString(16)} needs max_peers 2, got ${msg.maxPeers}`,
    );
  }
  if (memorySize !== undefined) {
    const need = BigInt(STATE_TABLE_BYTES) + BigInt(msg.maxPeers) * BigInt(msg.outputSectionSize);
    if (!Number.isSafeInteger(memorySize) || memorySize < 0 || BigInt(memorySize) < need) {
      throw new ProtocolError(
        'VSHM_ERR_INIT_MEMORY',
        '1.8',
        `memory of ${memorySize} bytes < 4096 + ${msg.maxPeers}·${msg.outputSectionSize} = ${need}`,
      );
    }
  }
}

/**
 * The protocol value peer `id` receives in INIT (§1.5): for P ≥ 0x8000 peer 0 gets the back-end
 * bit set and every other peer gets it cleared; P < 0x8000 is passed unchanged.
 */
export function protocolForPeer(protocol: number, id: number): number {
  if (protocol < PROTOCOL_VIRTIO) return protocol;
  const base = protocol & ~PROTOCOL_BACKEND_BIT;
  return id === 0 ? base | PROTOCOL_BACKEND_BIT : base;
}
