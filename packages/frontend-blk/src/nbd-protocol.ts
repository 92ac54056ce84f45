/**
 * NBD wire format (the NetworkBlockDevice protocol, fixed-newstyle negotiation and simple
 * replies): magics, option / reply / command numbers, flags, error values, and pure encoders.
 * Decoding is done by the server as bytes arrive (nbd-server.ts); nothing here touches a socket.
 * All integers are big-endian.
 */

export const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const NBD_IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const NBD_OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;

/** Handshake flags (server) and client flags. */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

export const NbdOpt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
} as const;

export const NbdRep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

export const NbdInfo = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags. */
export const NbdFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
} as const;

export const NbdCmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

/** Command flags. */
export const NbdCmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Error values on the wire (Linux errno numbers, fixed by the protocol). */
export const NbdErr = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Largest READ/WRITE payload the server accepts (the protocol's recommended cap). */
export const NBD_MAX_PAYLOAD = 32 * 1024 * 1024;
/**
 * Connections the server serves at once unless told otherwise: room for the usual
 * multi-connection clients (nbdcopy opens 4, nbd-client -C a few), while each connection can
 * hold about 100 MiB of buffered requests and replies, and a descriptor.
 */
export const DEFAULT_MAX_CONNECTIONS = 16;
/** Largest connection limit the server takes. */
export const MAX_CONNECTIONS_LIMIT = 1024;
/** Largest option payload the server reads; longer options close the connection. */
export const NBD_MAX_OPTION = 64 * 1024;
/** Request header size. */
export const NBD_REQUEST_SIZE = 28;

/** Server greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(NBD_IHAVEOPT, 8);
  b.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return b;
}

/** One option reply. */
export function encodeOptReply(option: number, type: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(NBD_OPT_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  b.set(data, 20);
  return b;
}

/** NBD_INFO_EXPORT: size and transmission flags. */
export function encodeInfoExport(size: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(NbdInfo.EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

/** NBD_INFO_BLOCK_SIZE: minimum, preferred, maximum. */
export function encodeInfoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(NbdInfo.BLOCK_SIZE, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

/** NBD_INFO_NAME / NBD_INFO_DESCRIPTION: a string. */
export function encodeInfoString(type: number, s: string): Buffer {
  const t = Buffer.from(s, 'utf8');
  const b = Buffer.alloc(2 + t.length);
  b.writeUInt16BE(type, 0);
  b.set(t, 2);
  return b;
}

/** Reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes unless NO_ZEROES. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : 124));
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

/** Simple reply header (followed by the data of a successful READ). */
export function encodeSimpleReply(error: number, cookie: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeBigUInt64BE(cookie, 8);
  return b;
}

/** A decoded transmission request header. */
export interface NbdRequest {
  flags: number;
  type: number;
  cookie: bigint;
  offset: bigint;
  length: number;
}

/** Decode a 28-byte request header; null when the magic is wrong. */
export function decodeRequest(b: Buffer): NbdRequest | null {
  if (b.readUInt32BE(0) !== NBD_REQUEST_MAGIC) return null;
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    cookie: b.readBigUInt64BE(8),
    offset: b.readBigUInt64BE(16),
    length: b.readUInt32BE(24),
  };
}
