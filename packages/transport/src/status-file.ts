/**
 * Status files: the static facts of a live link that shared memory does not hold, published by a
 * vshm process for `vshm-inspect` (docs/decisions.md, "vshm-inspect").
 *
 * Why a file: the header shows only the selected queue's window (§4.2); the other queues' sizes,
 * vectors and ring addresses live in the two sides' private registers (§4.3). An inspector must
 * not write a transaction to see them (that would disturb the session), so each side publishes
 * its `describe()` snapshot instead — written when the link changes phase (session start, end,
 * failure), never on the data path — and the inspector reads the moving parts (ring indices,
 * event-idx values, flags) from a read-only mapping.
 *
 * Where: `$VSHM_STATUS_DIR`, else `$XDG_RUNTIME_DIR/vshm`, else `/tmp/vshm-UID`; UID is the
 * effective uid, the directory is 0700 and must belong to it, files are 0600, written to a temporary name and renamed
 * (readers never see half a file), named `PID.json` (`PID.K.json` for further links in the same
 * process) and removed when the link closes or the process exits (files of dead processes are
 * removed by the next publisher). Publishing never fails the
 * link: any error is logged under DEBUG=vshm:status and the link goes on without a file.
 */
import { closeSync, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, unlinkSync, writeSync, constants as fsc } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createLogger as createDebug } from './log.js';
import { errnoText } from './cli-kit.js';
import { TransportError } from './errors.js';
import type { IvshmemPeer } from './ivshmem/peer.js';
import type { VirtioBackend } from './virtio/backend.js';
import type { TransportDescription } from './virtio/describe.js';
import type { VirtioFrontend } from './virtio/frontend.js';

const log = createDebug('vshm:status');

/** The `format` value of the files this version writes and reads. */
export const STATUS_FORMAT = 'vshm-status/1';

/** One queue in a status file (64-bit addresses as `0x…` strings, JSON has no u64). */
export interface StatusQueue {
  index: number;
  maxSize: number;
  size: number;
  enabled: boolean;
  running: boolean;
  deviceVector: number;
  driverVector: number;
  desc: string;
  avail: string;
  used: string;
}

/** The content of a status file. */
export interface StatusFile {
  format: typeof STATUS_FORMAT;
  pid: number;
  /** When this snapshot was written (ISO 8601). */
  updated: string;
  /** The ivshmem peer: INIT values (§1.2). */
  peer: { id: number; maxPeers: number; vectors: number; protocol: number };
  /**
   * The shared memory: device and inode (to match a mapping or fd: an inode number is unique only
   * within its filesystem), size S and OUT (§2). `dev` is st_dev as a `0x…` string (glibc's
   * makedev() encoding, as node:fs reports it); files of earlier versions have none, and a peer
   * that could not read it writes none.
   */
  memory: { dev?: string; ino: number; size: number; outputSectionSize: number };
  /** The transport side's `describe()` (features as `0x…` strings or null). */
  transport: {
    role: 'back-end' | 'front-end';
    phase: string;
    deviceId: number;
    offeredFeatures: string | null;
    negotiatedFeatures: string | null;
    status: number;
    headerSize: number;
    queues: StatusQueue[];
  };
}

/**
 * The status directory for `uid` (default our effective uid: the one that owns what we create, so
 * the one the directory must belong to) under environment `env` (see the file comment). A relative
 * VSHM_STATUS_DIR is taken from `cwd` (the working directory of the process whose environment
 * `env` is): every process then names the same directory, wherever each of them was started.
 */
export function statusDirectory(env: NodeJS.ProcessEnv = process.env, uid: number = process.geteuid?.() ?? 0, cwd: string = process.cwd()): string {
  if (env.VSHM_STATUS_DIR) return resolve(cwd, env.VSHM_STATUS_DIR);
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'vshm');
  return `/tmp/vshm-${uid}`;
}

const hex = (v: bigint | null): string | null => (v === null ? null : `0x${v.toString(16)}`);

/** Build the file content from a peer and its transport's snapshot. */
export function statusSnapshot(peer: IvshmemPeer, d: TransportDescription, pid: number = process.pid): StatusFile {
  return {
    format: STATUS_FORMAT,
    pid,
    updated: new Date().toISOString(),
    peer: { id: peer.id, maxPeers: peer.maxPeers, vectors: peer.vectors, protocol: peer.protocol },
    memory: {
      ...(peer.memoryDev === null ? {} : { dev: `0x${peer.memoryDev.toString(16)}` }),
      ino: peer.memoryIno,
      size: peer.layout.size,
      outputSectionSize: peer.layout.outputSectionSize,
    },
    transport: {
      role: d.role,
      phase: d.phase,
      deviceId: d.deviceId,
      offeredFeatures: hex(d.offeredFeatures),
      negotiatedFeatures: hex(d.negotiatedFeatures),
      status: d.status,
      headerSize: d.headerSize,
      queues: d.queues.map((q) => ({
        index: q.index,
        maxSize: q.maxSize,
        size: q.size,
        enabled: q.enabled,
        running: q.running,
        deviceVector: q.deviceVector,
        driverVector: q.driverVector,
        desc: hex(q.desc)!,
        avail: hex(q.avail)!,
        used: hex(q.used)!,
      })),
    },
  };
}

/** A published status file; `close()` removes it (idempotent). */
export interface StatusPublisher {
  /** The file's path, or null when publishing failed (see DEBUG=vshm:status). */
  readonly path: string | null;
  /** Write the current snapshot now. */
  update(): void;
  close(): void;
}

/** Names in use by this process, so two links in one process get two files. */
const inUse = new Set<string>();

/**
 * Publish `transport`'s status for as long as `peer` is open: written now and after every phase
 * change of the link ('phase', 'session', 'session-end', 'needs-reset' of a back-end; 'ready',
 * 'lost', 'error' of a front-end), removed when the peer closes, the back-end closes or the
 * process exits.
 *
 * A phase change is written on the next turn of the event loop (setImmediate), once for all the
 * changes of one turn, not inside the event: the back-end emits 'session' in the middle of the
 * front-end's DRIVER_OK transaction and 'phase' while answering its first ones, and a write there
 * (a JSON snapshot, four syscalls) delayed their completion, so the front-end's start (issue 12
 * item 7). A reader sees the phase a loop turn later; the file still ends up with the last state.
 */
export function publishStatus(
  peer: IvshmemPeer,
  transport: VirtioBackend | VirtioFrontend,
  opts: { dir?: string } = {},
): StatusPublisher {
  const dir = opts.dir ?? statusDirectory();
  const isDefaultDir = opts.dir === undefined && !process.env.VSHM_STATUS_DIR;
  let path: string | null = null;
  try {
    ensurePrivateDir(dir);
    removeStale(dir);
    for (let k = 0; path === null; k++) {
      const name = k === 0 ? `${process.pid}.json` : `${process.pid}.${k}.json`;
      if (!inUse.has(name)) path = join(dir, name);
    }
    inUse.add(path.slice(dir.length + 1));
  } catch (err) {
    log('no status file in %s: %s', dir, (err as Error).message);
    // A daemon's own directory (not one an API caller chose, who reads `path`): say it once, or
    // vshm-inspect later finds nothing and nobody knows why.
    if (opts.dir === undefined) warnNoStatusDir(dir, err);
  }
  const events = ['phase', 'session', 'session-end', 'needs-reset', 'ready', 'lost', 'error'];
  let closed = false;
  let pending: NodeJS.Immediate | null = null;
  const update = (): void => {
    if (pending !== null) clearImmediate(pending);
    pending = null;
    if (closed || path === null) return;
    try {
      writeAtomically(path, JSON.stringify(statusSnapshot(peer, transport.describe()), null, 1) + '\n');
    } catch (err) {
      // The file we could not update would show vshm-inspect an earlier phase as the present one
      // (a full disk, an exhausted quota): none is better than a stale one. The next update that
      // goes through writes it again.
      log('cannot write %s: %s (the stale file is removed)', path, (err as Error).message);
      try {
        unlinkSync(path);
      } catch {
        // Never written, or already gone.
      }
    }
  };
  const later = (): void => {
    if (pending === null && !closed && path !== null) pending = setImmediate(update);
  };
  const onPhase = (phase?: unknown): void => {
    if (phase === 'closed') close();
    else later();
  };
  const onExit = (): void => close();
  const close = (): void => {
    if (closed) return;
    closed = true;
    if (pending !== null) clearImmediate(pending);
    pending = null;
    for (const e of events) transport.off(e, e === 'phase' ? onPhase : later);
    peer.off('close', onExit);
    process.off('exit', onExit);
    if (path === null) return;
    inUse.delete(path.slice(dir.length + 1));
    try {
      unlinkSync(path);
    } catch {
      // Already gone: nothing to remove.
    }
    if (isDefaultDir) {
      try {
        rmdirSync(dir); // only when empty: leave nothing behind in /tmp
      } catch {
        // Another link's file is still there.
      }
    }
  };
  for (const e of events) transport.on(e, e === 'phase' ? onPhase : later);
  peer.on('close', onExit);
  process.on('exit', onExit);
  update();
  return {
    get path() {
      return path;
    },
    update,
    close,
  };
}

/** Status directories already warned about in this process. */
const warnedDirs = new Set<string>();

/**
 * Once per directory and process, a `VSHM_WARN_STATUS_DIR` warning (the CLIs print it as
 * `NAME: warning: …`): the status directory chosen by the environment cannot be used, so
 * `vshm-inspect` will not find this process's queues.
 */
function warnNoStatusDir(dir: string, err: unknown): void {
  if (warnedDirs.has(dir)) return;
  warnedDirs.add(dir);
  const chosenBy = process.env.VSHM_STATUS_DIR ? 'VSHM_STATUS_DIR' : process.env.XDG_RUNTIME_DIR ? 'XDG_RUNTIME_DIR' : 'the default';
  const why = err instanceof TransportError ? err.message : `${dir} (${chosenBy}) cannot be created: ${errnoText(err)}`;
  const where = err instanceof TransportError ? ` (${chosenBy})` : '';
  process.emitWarning(`no status file for vshm-inspect: ${why}${where}`, { code: 'VSHM_WARN_STATUS_DIR' });
}

/**
 * `mkdir -p` with `mode` for every directory it creates. Not Node's `mkdirSync(…, { recursive })`:
 * where mkdir() fails ENOENT although the parent exists (under /proc or /sys) that one retries
 * forever, and a daemon given such a status directory hung before its first line.
 */
function makeDirs(dir: string, mode: number): void {
  try {
    mkdirSync(dir, { mode });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return; // a non-directory is refused by the caller's lstat
    const parent = dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw err;
    makeDirs(parent, mode);
    try {
      mkdirSync(dir, { mode }); // the parent exists now: any other failure here is final
    } catch (again) {
      if ((again as NodeJS.ErrnoException).code !== 'EEXIST') throw again; // another daemon was first
    }
  }
}

/** Create `dir` (0700) if needed and refuse one that is not ours alone (a symlink, another owner, group/other access). */
function ensurePrivateDir(dir: string): void {
  makeDirs(dir, 0o700);
  const st = lstatSync(dir);
  const uid = process.geteuid?.() ?? st.uid; // the owner of what we create, the directory included
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new TransportError('VSHM_ERR_STATUS_DIR', '', `${dir} is not a private directory of uid ${uid}`);
  }
}

/**
 * Remove the files of processes that no longer exist (killed with SIGKILL, or stopped before
 * they could clean up), so a crash leaves at most one stale file until the next daemon starts.
 */
function removeStale(dir: string): void {
  for (const path of listStatusFiles(dir)) {
    const pid = Number(path.slice(dir.length + 1).split('.')[0]);
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ESRCH') continue; // EPERM: alive, someone else's
      try {
        unlinkSync(path);
      } catch {
        // Removed meanwhile.
      }
    }
  }
}

/** Write to a fresh 0600 temporary file (never following a symlink) and rename it over `path`. */
function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  try {
    unlinkSync(tmp);
  } catch {
    // No leftover from a crashed writer.
  }
  const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  try {
    try {
      // A short write (a disk filling up) is not the whole file: go on, or fail with its error.
      const bytes = Buffer.from(text);
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp); // no half-written file left behind
    } catch {
      // Already gone.
    }
    throw err;
  }
}

/** Why a status file was not usable. */
export class StatusFileError extends TransportError {}

/**
 * Read and check one status file. Throws StatusFileError (`VSHM_ERR_STATUS_FILE`) for a file that
 * is not a vshm status file of this format, and the node:fs error when it cannot be read.
 * `expectUid`: refuse a file not owned by that uid (the inspected process's), so another user
 * cannot plant a description.
 */
export function readStatusFile(path: string, expectUid?: number): StatusFile {
  const fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  let text: string;
  try {
    const st = fstatSync(fd);
    if (expectUid !== undefined && st.uid !== expectUid) {
      throw new StatusFileError('VSHM_ERR_STATUS_FILE', '', `${path} belongs to uid ${st.uid}, not ${expectUid}`);
    }
    if (st.size > 1 << 20) throw new StatusFileError('VSHM_ERR_STATUS_FILE', '', `${path} is too large for a status file`);
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new StatusFileError('VSHM_ERR_STATUS_FILE', '', `${path} is not JSON`);
  }
  const bad = checkStatus(v);
  if (bad !== null) throw new StatusFileError('VSHM_ERR_STATUS_FILE', '', `${path}: ${bad}`);
  return v as StatusFile;
}

const isUint = (x: unknown, max = Number.MAX_SAFE_INTEGER): boolean => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= max;
const isHex = (x: unknown): boolean => typeof x === 'string' && /^0x[0-9a-f]{1,16}$/.test(x);

/** The first thing wrong with a parsed status file, or null. */
function checkStatus(v: unknown): string | null {
  const f = v as StatusFile;
  if (typeof f !== 'object' || f === null || f.format !== STATUS_FORMAT) return `format is not ${STATUS_FORMAT}`;
  if (!isUint(f.pid)) return 'bad pid';
  const p = f.peer;
  if (typeof p !== 'object' || p === null || !isUint(p.id, 1023) || !isUint(p.maxPeers, 1024) || !isUint(p.vectors, 64) || !isUint(p.protocol, 0xffff)) return 'bad peer';
  const m = f.memory;
  if (typeof m !== 'object' || m === null || !isUint(m.ino) || !isUint(m.size) || !isUint(m.outputSectionSize)) return 'bad memory';
  if (m.dev !== undefined && !isHex(m.dev)) return 'bad memory device';
  const t = f.transport;
  if (typeof t !== 'object' || t === null || (t.role !== 'back-end' && t.role !== 'front-end')) return 'bad transport';
  if (typeof t.phase !== 'string' || !isUint(t.deviceId, 0x3fff) || !isUint(t.status, 0xffffffff) || !isUint(t.headerSize)) return 'bad transport';
  if ((t.offeredFeatures !== null && !isHex(t.offeredFeatures)) || (t.negotiatedFeatures !== null && !isHex(t.negotiatedFeatures))) return 'bad features';
  if (!Array.isArray(t.queues) || t.queues.length > 0xffff) return 'bad queues';
  for (const q of t.queues) {
    if (typeof q !== 'object' || q === null || !isUint(q.index, 0xffff) || !isUint(q.maxSize, 32768) || !isUint(q.size, 32768)) return 'bad queue';
    if (typeof q.enabled !== 'boolean' || typeof q.running !== 'boolean' || !isUint(q.deviceVector, 0xffff) || !isUint(q.driverVector, 0xffff)) return 'bad queue';
    if (!isHex(q.desc) || !isHex(q.avail) || !isHex(q.used)) return 'bad queue address';
  }
  return null;
}

/** Status files in `dir` (names `PID.json`, `PID.K.json`), optionally only those of `pid`. Missing dir: none. */
export function listStatusFiles(dir: string, pid?: number): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => /^\d+(\.\d+)?\.json$/.test(n) && (pid === undefined || n.split('.')[0] === String(pid)))
    .sort()
    .map((n) => join(dir, n));
}
