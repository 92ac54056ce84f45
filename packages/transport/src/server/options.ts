/**
 * `vshm-server` options (spec §1.9): value syntax, defaults, ranges and the cross-checks that make
 * an argument error (exit 2, nothing created). Pure: no fds, no files.
 *
 * The same checks guard the programmatic `IvshmemServer` constructor, so a server
 * built in a test refuses exactly what the CLI refuses.
 */
import { ArgumentError } from '../errors.js';
import { MAX_PEERS_MAX, PROTOCOL_VIRTIO, STATE_TABLE_BYTES } from '../ivshmem/protocol.js';

/** Where the server listens and peers connect when no path is given (QEMU's default too). */
export const DEFAULT_SOCKET_PATH = '/tmp/ivshmem_socket';
export const DEFAULT_MEMORY_SIZE = 4 * 1024 * 1024;
/** Largest memory size after rounding. §1.9 requires ≥ 1 GiB; only 4096 bytes are ever mapped. */
export const MAX_MEMORY_SIZE = 2 ** 40;
/** `-V` range (§1.9). */
export const MAX_VECTORS = 64;
/** The Linux virtio_ivshmem front-end refuses a R/W section below this (§1.9 warning). */
export const VIRTIO_MIN_RW = 8 * 1024;
/** Listen backlog (§1.9: ≥ 10). */
export const LISTEN_BACKLOG = 16;

/** Where the shared memory comes from (§1.9). */
export type MemorySource =
  | { kind: 'memfd' }
  /** `-M NAME`: POSIX shm object, created if absent, unlinked at shutdown (§1.7). Name starts with '/'. */
  | { kind: 'shm'; name: string }
  /** `-m DIR`: an unlinked file in DIR. */
  | { kind: 'tmpfile'; dir: string };

/** Options as given (CLI flags or constructor); every field optional. */
export interface ServerOptionsInput {
  socketPath?: string;
  memory?: MemorySource;
  /** Requested size (-l); rounded up to a power of two. */
  memorySize?: number;
  outputSectionSize?: number;
  maxPeers?: number;
  vectors?: number;
  protocol?: number;
  pidFile?: string;
  verbose?: boolean;
  /**
   * Client uids served besides our own and root's, or 'any' (each accepted client's SO_PEERCRED).
   * Default: `$VSHM_PEER_UIDS` (comma-separated uids, or `any`), else none — the server's mirror
   * of the peers' `VSHM_SERVER_UIDS`.
   */
  peerUids?: readonly number[] | 'any';
}

/** Validated options; `memorySize` is already rounded up to a power of two. */
export interface ServerOptions {
  socketPath: string;
  memory: MemorySource;
  memorySize: number;
  outputSectionSize: number;
  maxPeers: number;
  vectors: number;
  protocol: number;
  pidFile: string | undefined;
  verbose: boolean;
  /** Client uids served besides our own and root's, or 'any'. */
  peerUids: readonly number[] | 'any';
}

const SIZE_RE = /^([0-9]+)([kKmMgG]?)$/;
const SIZE_SHIFT: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * SIZE (§1.9): decimal with an optional K/M/G suffix (any case, powers of 1024). Returns a safe
 * integer or throws ArgumentError naming `what`.
 */
export function parseSize(text: string, what = 'size'): number {
  const m = SIZE_RE.exec(text);
  if (!m) throw new ArgumentError(`invalid ${what} '${text}' (expected decimal with optional K, M or G)`);
  const v = Number(m[1]) * SIZE_SHIFT[m[2].toLowerCase()];
  if (!Number.isSafeInteger(v)) throw new ArgumentError(`${what} '${text}' is too large`);
  return v;
}

/**
 * N (§1.9): C base-0 syntax as strtoul(…, 0) reads it, without sign or whitespace: decimal,
 * `0x`/`0X` hex, leading-0 octal. Throws ArgumentError naming `what`.
 */
export function parseNumber(text: string, what = 'number'): number {
  let v: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) v = parseInt(text.slice(2), 16);
  else if (/^0[0-7]*$/.test(text)) v = text.length === 1 ? 0 : parseInt(text.slice(1), 8);
  else if (/^[1-9][0-9]*$/.test(text)) v = Number(text);
  else throw new ArgumentError(`invalid ${what} '${text}' (expected decimal, 0x hex or 0 octal)`);
  if (!Number.isSafeInteger(v)) throw new ArgumentError(`${what} '${text}' is too large`);
  return v;
}

/** Smallest power of two ≥ n (n ≥ 1), exact for any safe integer. */
export function roundUpPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * A list of uids as `--peer-uids` and `VSHM_PEER_UIDS` spell it: `any`, or decimal uids separated
 * by commas (blanks around them allowed; empty: none). Throws ArgumentError naming `what`.
 */
export function parseUidList(text: string, what: string): readonly number[] | 'any' {
  const t = text.trim();
  if (t === 'any') return 'any';
  if (t === '') return [];
  const parts = t.split(',').map((p) => p.trim());
  if (!parts.every((p) => /^[0-9]{1,10}$/.test(p) && Number(p) <= 0xffffffff)) {
    throw new ArgumentError(`${what} must be 'any' or comma-separated uids, got ${JSON.stringify(text)}`);
  }
  return parts.map(Number);
}

function checkPeerUids(v: unknown): readonly number[] | 'any' {
  if (v === undefined) {
    // The one input from outside the options: the environment, as for the peers' VSHM_SERVER_UIDS.
    const env = process.env.VSHM_PEER_UIDS;
    return env === undefined ? [] : parseUidList(env, 'VSHM_PEER_UIDS');
  }
  if (v === 'any') return v;
  if (Array.isArray(v) && v.every((u) => Number.isSafeInteger(u) && u >= 0 && u <= 0xffffffff)) return [...(v as number[])];
  throw new ArgumentError(`peerUids must be 'any' or an array of uids, got ${JSON.stringify(v)}`);
}

/** A `-M` name as shm_open wants it: one leading '/', no other '/'. */
export function normalizeShmName(name: string): string {
  const bare = name.startsWith('/') ? name.slice(1) : name;
  if (bare.length === 0 || bare.includes('/') || bare.includes('\0') || bare.length > 254) {
    throw new ArgumentError(`invalid shared memory name '${name}'`);
  }
  return '/' + bare;
}

function checkInt(name: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) {
    throw new ArgumentError(`${name} must be an integer in ${lo}…${hi}, got ${String(v)}`);
  }
  return v;
}

function checkPath(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0')) {
    throw new ArgumentError(`${name} must be a non-empty path, got ${JSON.stringify(v)}`);
  }
  return v;
}

function checkMemory(m: unknown): MemorySource {
  const src = m as MemorySource | undefined;
  if (src === undefined) return { kind: 'memfd' };
  if (src && src.kind === 'memfd') return { kind: 'memfd' };
  if (src && src.kind === 'shm') return { kind: 'shm', name: normalizeShmName(String(src.name)) };
  if (src && src.kind === 'tmpfile') return { kind: 'tmpfile', dir: checkPath('memory.dir', src.dir) };
  throw new ArgumentError(`memory must be {kind: 'memfd' | 'shm' | 'tmpfile'}, got ${JSON.stringify(m)}`);
}

/**
 * Apply defaults and every argument check of §1.9; round the memory size up to a power of two.
 * Throws ArgumentError (one line) on the first violation.
 */
export function resolveServerOptions(input: ServerOptionsInput = {}): ServerOptions {
  const known = new Set([
    'socketPath', 'memory', 'memorySize', 'outputSectionSize', 'maxPeers', 'vectors', 'protocol', 'pidFile', 'verbose', 'peerUids',
  ]);
  for (const k of Object.keys(input)) {
    if (!known.has(k)) throw new ArgumentError(`unknown server option '${k}'`);
  }
  const vectors = checkInt('vectors (-V)', input.vectors ?? 1, 1, MAX_VECTORS);
  const maxPeers = checkInt('max peers (-n)', input.maxPeers ?? 2, 1, MAX_PEERS_MAX);
  const protocol = checkInt('protocol (-P)', input.protocol ?? 0, 0, 0xffff);
  if (protocol >= PROTOCOL_VIRTIO && maxPeers !== 2) {
    throw new ArgumentError(`virtio protocol 0x${protocol.toString(16)} (-P ≥ 0x8000) needs exactly 2 peers (-n 2), got ${maxPeers}`);
  }
  const requested = checkInt('memory size (-l)', input.memorySize ?? DEFAULT_MEMORY_SIZE, 1, MAX_MEMORY_SIZE);
  const memorySize = roundUpPow2(requested);
  if (memorySize > MAX_MEMORY_SIZE) {
    throw new ArgumentError(`memory size (-l) ${requested} rounds up to ${memorySize}, above the maximum ${MAX_MEMORY_SIZE}`);
  }
  const outputSectionSize = checkInt('output section size (-o)', input.outputSectionSize ?? 0, 0, MAX_MEMORY_SIZE);
  if (outputSectionSize % 4096 !== 0) {
    throw new ArgumentError(`output section size (-o) ${outputSectionSize} is not a multiple of 4096`);
  }
  // Both factors are ≤ 2^40 and 2^10, so the product is exact.
  if (STATE_TABLE_BYTES + maxPeers * outputSectionSize > memorySize) {
    const min = STATE_TABLE_BYTES + maxPeers * outputSectionSize;
    // The smallest legal size is the next power of two above the fixed parts (a R/W section of 0
    // is legal for plain ivshmem, §2).
    const parts = outputSectionSize === 0 ? '4096-byte state table' : `4096-byte state table + ${maxPeers} output sections of ${outputSectionSize}`;
    throw new ArgumentError(
      `memory size (-l) ${requested}${memorySize !== requested ? ` (rounded up to ${memorySize})` : ''} is too small: the minimum is ${roundUpPow2(min)} bytes (${parts})`,
    );
  }
  const verbose = input.verbose ?? false;
  if (typeof verbose !== 'boolean') throw new ArgumentError(`verbose must be a boolean`);
  return {
    socketPath: checkPath('socket path (-S)', input.socketPath ?? DEFAULT_SOCKET_PATH),
    memory: checkMemory(input.memory),
    memorySize,
    outputSectionSize,
    maxPeers,
    vectors,
    protocol,
    pidFile: input.pidFile === undefined ? undefined : checkPath('pid file (-p)', input.pidFile),
    verbose,
    peerUids: checkPeerUids(input.peerUids),
  };
}

/** Size of the R/W section these options give (§2). */
export function rwSectionSize(o: ServerOptions): number {
  return o.memorySize - STATE_TABLE_BYTES - o.maxPeers * o.outputSectionSize;
}

/** Non-fatal remarks about valid options (§1.9: a virtio protocol with RW < 8 KiB). */
export function optionWarnings(o: ServerOptions): string[] {
  const w: string[] = [];
  const rw = rwSectionSize(o);
  if (o.protocol >= PROTOCOL_VIRTIO && rw < VIRTIO_MIN_RW) {
    w.push(`R/W section of ${rw} bytes is below ${VIRTIO_MIN_RW}: the Linux virtio_ivshmem front-end will refuse it`);
  }
  return w;
}
