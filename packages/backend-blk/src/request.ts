/**
 * Pure checks of one virtio-blk request (VIRTIO 1.2 §5.2.6): given the private copy of the
 * header and the chain's readable/writable byte counts, decide what the device does. No I/O, no
 * chain access — the device (device.ts) and the tests share it.
 *
 * Layout the device accepts, whatever the descriptor boundaries:
 *   readable  = header (16) + data-out (OUT, DISCARD, WRITE_ZEROES)
 *   writable  = data-in (IN, GET_ID) + status (1, the very last writable byte)
 * A data part in the wrong direction for the type is an IOERR.
 */
import { BLK_DWZ_SEGMENT_SIZE, BLK_REQ_HEADER_SIZE, BLK_SECTOR_SIZE, BlkRequestType } from 'virtio-spec-types';

/** Limits and state a request is checked against. */
export interface RequestLimits {
  /** Image size in bytes (its whole blocks are served; a tail shorter than a block is not). */
  capacityBytes: number;
  /** Logical block size (512 … 65536, power of two): offsets and lengths must be multiples. */
  blockSize: number;
  /** Largest IN/OUT data part in bytes. */
  maxTransfer: number;
  readOnly: boolean;
  /** DISCARD / WRITE_ZEROES negotiated. */
  discard: boolean;
  writeZeroes: boolean;
  /** Most segments of one DISCARD / WRITE_ZEROES request. */
  maxDwzSegments: number;
}

/** Why a request failed (recorded in device stats; the driver only sees the status byte). */
export type RequestFault =
  | 'short-header'
  | 'wrong-direction'
  | 'misaligned'
  | 'oversize'
  | 'out-of-range'
  | 'read-only'
  | 'bad-segments'
  | 'unsupported';

export type RequestPlan =
  /** No writable byte for the status: nothing can be reported; return the chain with 0 bytes. */
  | { op: 'none' }
  | { op: 'fail'; status: 'IOERR' | 'UNSUPP'; fault: RequestFault }
  | { op: 'in'; position: number; length: number }
  | { op: 'out'; position: number; length: number }
  | { op: 'flush' }
  | { op: 'get-id'; length: number }
  | { op: 'discard' | 'write-zeroes'; segments: number };

const fail = (status: 'IOERR' | 'UNSUPP', fault: RequestFault): RequestPlan => ({ op: 'fail', status, fault });

/** Sectors from 2^44 on start at or past byte 2^53: beyond any image whose size is a safe integer. */
const MAX_SECTOR_HIGH = 2 ** 12;

/**
 * Byte offset of the u64 sector `sectorHigh`·2^32 + `sectorLow` — exact, as sectors below 2^44
 * are exact doubles times 512 — or -1 for a sector beyond any image (2^44 and up).
 */
export function sectorPosition(sectorLow: number, sectorHigh: number): number {
  if (sectorHigh >= MAX_SECTOR_HIGH) return -1;
  return (sectorHigh * 2 ** 32 + sectorLow) * BLK_SECTOR_SIZE;
}

/**
 * Check a byte range [sector·512, +length) against the image and the block size; null when fine.
 * `sectorLow` / `sectorHigh` are the two u32 halves of the request's u64 sector (disks of 2 TiB
 * and more have sectors at and past 2^32).
 */
export function checkRange(sectorLow: number, sectorHigh: number, length: number, l: RequestLimits): RequestFault | null {
  if (length % BLK_SECTOR_SIZE !== 0) return 'misaligned';
  const position = sectorPosition(sectorLow, sectorHigh);
  if (position < 0) return 'out-of-range';
  if (position % l.blockSize !== 0 || length % l.blockSize !== 0) return 'misaligned';
  const end = Math.floor(l.capacityBytes / l.blockSize) * l.blockSize;
  if (position > end || length > end - position) return 'out-of-range';
  return null;
}

/** What to do with a request whose header copy is `header` (≥ 16 bytes when readable ≥ 16). */
export function planRequest(header: Uint8Array, readable: number, writable: number, l: RequestLimits): RequestPlan {
  if (writable === 0) return { op: 'none' };
  if (readable < BLK_REQ_HEADER_SIZE) return fail('IOERR', 'short-header');
  const dv = new DataView(header.buffer, header.byteOffset, BLK_REQ_HEADER_SIZE);
  const type = dv.getUint32(0, true);
  const sectorLow = dv.getUint32(8, true);
  const sectorHigh = dv.getUint32(12, true);
  const dataOut = readable - BLK_REQ_HEADER_SIZE;
  const dataIn = writable - 1;
  switch (type) {
    case BlkRequestType.IN: {
      if (dataOut !== 0) return fail('IOERR', 'wrong-direction');
      if (dataIn > l.maxTransfer) return fail('IOERR', 'oversize');
      const f = checkRange(sectorLow, sectorHigh, dataIn, l);
      return f !== null ? fail('IOERR', f) : { op: 'in', position: sectorPosition(sectorLow, sectorHigh), length: dataIn };
    }
    case BlkRequestType.OUT: {
      if (dataIn !== 0) return fail('IOERR', 'wrong-direction');
      if (l.readOnly) return fail('IOERR', 'read-only');
      if (dataOut > l.maxTransfer) return fail('IOERR', 'oversize');
      const f = checkRange(sectorLow, sectorHigh, dataOut, l);
      return f !== null ? fail('IOERR', f) : { op: 'out', position: sectorPosition(sectorLow, sectorHigh), length: dataOut };
    }
    case BlkRequestType.FLUSH:
      // Linux sends header + status only; a data part is a malformed request.
      return dataOut !== 0 || dataIn !== 0 ? fail('IOERR', 'wrong-direction') : { op: 'flush' };
    case BlkRequestType.GET_ID:
      if (dataOut !== 0 || dataIn === 0) return fail('IOERR', 'wrong-direction');
      return { op: 'get-id', length: dataIn };
    case BlkRequestType.DISCARD:
    case BlkRequestType.WRITE_ZEROES: {
      const isDiscard = type === BlkRequestType.DISCARD;
      if (!(isDiscard ? l.discard : l.writeZeroes)) return fail('UNSUPP', 'unsupported');
      if (dataIn !== 0) return fail('IOERR', 'wrong-direction');
      if (l.readOnly) return fail('IOERR', 'read-only');
      if (dataOut === 0 || dataOut % BLK_DWZ_SEGMENT_SIZE !== 0) return fail('IOERR', 'bad-segments');
      const segments = dataOut / BLK_DWZ_SEGMENT_SIZE;
      if (segments > l.maxDwzSegments) return fail('IOERR', 'bad-segments');
      return { op: isDiscard ? 'discard' : 'write-zeroes', segments };
    }
    default:
      return fail('UNSUPP', 'unsupported');
  }
}

/** One parsed DISCARD / WRITE_ZEROES segment. */
export interface DwzSegment {
  position: number;
  length: number;
  unmap: boolean;
}

/**
 * Check the segments of a DISCARD / WRITE_ZEROES payload (a private copy). Returns the byte
 * ranges, or the status to report: UNSUPP for flags the type does not allow (VIRTIO 1.2
 * §5.2.6.2: unmap on DISCARD, any unknown bit), IOERR for ranges outside the image,
 * misaligned or above `maxSectors`.
 */
export function planSegments(
  payload: Uint8Array,
  discard: boolean,
  maxSectors: number,
  l: RequestLimits,
): DwzSegment[] | { status: 'IOERR' | 'UNSUPP'; fault: RequestFault } {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const out: DwzSegment[] = [];
  for (let at = 0; at + BLK_DWZ_SEGMENT_SIZE <= payload.length; at += BLK_DWZ_SEGMENT_SIZE) {
    const sectorLow = dv.getUint32(at, true);
    const sectorHigh = dv.getUint32(at + 4, true);
    const sectors = dv.getUint32(at + 8, true);
    const flags = dv.getUint32(at + 12, true);
    if ((flags & ~1) !== 0 || (discard && (flags & 1) !== 0)) return { status: 'UNSUPP', fault: 'unsupported' };
    if (sectors > maxSectors) return { status: 'IOERR', fault: 'oversize' };
    const f = checkRange(sectorLow, sectorHigh, sectors * BLK_SECTOR_SIZE, l);
    if (f !== null) return { status: 'IOERR', fault: f };
    out.push({ position: sectorPosition(sectorLow, sectorHigh), length: sectors * BLK_SECTOR_SIZE, unmap: (flags & 1) !== 0 });
  }
  return out;
}
