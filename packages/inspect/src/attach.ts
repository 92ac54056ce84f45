/**
 * Finding and mapping the shared memory of a live session, read-only, without touching it.
 *
 * `--pid PID`: /proc/PID/maps names the shared mappings the process holds (the state table is
 * mapped at file offset 0 by every peer and by vshm-server). The memory object is then opened
 * read-only through, in order: an fd of PID that is that object (/proc/PID/fd/N — vshm-server
 * keeps one), its /dev/shm path when it is a live POSIX object, /proc/PID/map_files (needs
 * CAP_SYS_ADMIN), or an fd another process of the same uid holds on it (peers close their memory
 * fd after mapping; the server still has it). `-M NAME` opens /dev/shm/NAME.
 *
 * Either way the object is mapped whole with PROT_READ, so a stray write faults instead of
 * reaching the session, and the fd is closed right after mapping.
 *
 * Layout (§2): S is the fstat size; N and OUT come from, in order, the -n/-o options, a status
 * file of a process on the same memory, the mapping protections of PID (a peer maps foreign
 * output sections read-only; virtio sessions always have N = 2), or the vshm-server defaults
 * (N = 2, OUT = 0), and the result says which.
 */
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readlinkSync, statSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import type { Binding } from '@vshm/addon';
import { VshmError } from '@vshm/transport';
import {
  SharedMemoryLayout,
  STATE_TABLE_SIZE,
  listStatusFiles,
  readStatusFile,
  statusDirectory,
  type StatusFile,
} from '@vshm/transport/inspect';

/** vshm-inspect cannot attach (code VSHM_ERR_INSPECT); the message is one line for the user. */
export class InspectError extends VshmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VSHM_ERR_INSPECT', '', message, options);
  }
}

/** One line of /proc/PID/maps that maps a file shared. */
export interface SharedMapping {
  start: bigint;
  end: bigint;
  perms: string;
  offset: number;
  /** The file's device, `MAJOR:MINOR` in lower-case hex without padding (see deviceOf()). */
  dev: string;
  ino: number;
  path: string;
}

/**
 * The device of a node:fs stat result in the form SharedMapping.dev uses. An inode number names a
 * file only together with its filesystem: two tmpfs mounts number their files alike, so matching
 * by inode alone can take an unrelated fd for the memory. node:fs gives st_dev as glibc's
 * makedev() encoding of major and minor; /proc/PID/maps prints the two numbers in hex.
 */
export function deviceOf(st: { dev: bigint }): string {
  const d = st.dev;
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n);
  const minor = (d & 0xffn) | ((d >> 12n) & 0xffffff00n);
  return `${major.toString(16)}:${minor.toString(16)}`;
}

/** Whether a stat result is the object a mapping maps (same device and inode). */
function isObjectOf(st: { dev: bigint; ino: bigint }, m: { dev: string; ino: number }): boolean {
  return st.ino === BigInt(m.ino) && deviceOf(st) === m.dev;
}

/** Where N and OUT came from. */
export type LayoutSource = 'options' | 'status-file' | 'mappings' | 'defaults';

/** A read-only mapping of the whole memory object and what is known about it. */
export interface Attachment {
  /** How it was found: `pid` or `shm` (the other is absent). */
  pid?: number;
  shm?: string;
  /** The memory object's device (`MAJOR:MINOR`, see deviceOf()), inode, and the path it was opened through. */
  dev: string;
  ino: number;
  openedVia: string;
  layout: SharedMemoryLayout;
  layoutSource: LayoutSource;
  /** The state table [0, 4096), mapped PROT_READ. */
  stateTable: ArrayBuffer;
  /** The window [4096, S) (R/W and output sections; virtio addresses are offsets into it, §4.7), PROT_READ. */
  window: ArrayBuffer;
  /** Status files of live processes on the same memory (back-end first). */
  status: StatusFile[];
  /** The uid whose status files count (the inspected process's, or ours for -M). */
  uid: number;
  /** Read the status files again (they change when a session starts or ends). */
  refreshStatus(): void;
  /** Unmap (idempotent). */
  close(): void;
}

/** -n / -o from the command line, overriding every other source. */
export interface LayoutOverride {
  maxPeers?: number;
  outputSectionSize?: number;
}

/** Parse the shared file mappings of /proc/PID/maps text. */
export function parseMaps(text: string): SharedMapping[] {
  const out: SharedMapping[] = [];
  for (const line of text.split('\n')) {
    // start-end perms offset dev inode [path]
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)\s*(.*)$/.exec(line);
    if (m === null || m[3][3] !== 's' || m[7] === '0') continue;
    const dev = `${Number.parseInt(m[5], 16).toString(16)}:${Number.parseInt(m[6], 16).toString(16)}`;
    out.push({ start: BigInt('0x' + m[1]), end: BigInt('0x' + m[2]), perms: m[3], offset: Number.parseInt(m[4], 16), dev, ino: Number(m[7]), path: m[8] });
  }
  return out;
}

/** The `code` of a node:fs error, or ''. */
function errCode(err: unknown): string {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : '';
}

function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT' || code === 'ESRCH') throw new InspectError(`no process ${pid}`, { cause: err });
    if (code === 'EACCES' || code === 'EPERM') {
      throw new InspectError(`no access to process ${pid} (/proc/${pid}/${file}: ${code}); run as its user or as root`, { cause: err });
    }
    throw new InspectError(`cannot read /proc/${pid}/${file}: ${code || (err as Error).message}`, { cause: err });
  }
}

/**
 * Effective uid of a process (/proc/PID/status: real, effective, saved, fs): the owner of the
 * status files and directory it creates, the uid its peers' SO_PEERCRED sees, and the owner of
 * its /proc entry (processesOf).
 */
function uidOf(pid: number): number {
  const m = /^Uid:\s+\d+\s+(\d+)/m.exec(readProc(pid, 'status'));
  if (m === null) throw new InspectError(`cannot read the uid of process ${pid}`);
  return Number(m[1]);
}

function alive(pid: number): boolean {
  try {
    statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Status directories to look in for files of a process of `uid` (its environment may name one). */
function statusDirs(uid: number, pid?: number): string[] {
  // Our own working directory may have been removed (process.cwd() then throws): only a relative
  // VSHM_STATUS_DIR needs it, and that one cannot be found any more.
  let ownCwd: string | undefined;
  try {
    ownCwd = process.cwd();
  } catch {
    // Left undefined.
  }
  const dirs = new Set<string>();
  if (ownCwd !== undefined || (process.env.VSHM_STATUS_DIR ?? '/').startsWith('/')) dirs.add(statusDirectory(process.env, uid, ownCwd ?? '/'));
  dirs.add(statusDirectory({}, uid, '/'));
  if (pid !== undefined) {
    try {
      const env: NodeJS.ProcessEnv = {};
      for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
        const i = kv.indexOf('=');
        if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
      }
      // A relative VSHM_STATUS_DIR is relative to that process's working directory, not ours.
      let cwd: string | undefined;
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {
        // Not ours to read: only an absolute directory can be found then.
      }
      if (cwd !== undefined || (env.VSHM_STATUS_DIR ?? '/').startsWith('/')) dirs.add(statusDirectory(env, uid, cwd ?? '/'));
    } catch {
      // No access to its environment: the default places only.
    }
  }
  return [...dirs];
}

/**
 * Whether status file `f` describes the object `m` (device as SharedMapping.dev, and inode). A
 * file that records the device must name both; one of an earlier version records the inode only
 * and matches by it — a hint, since inode numbers repeat across filesystems.
 */
function describesObject(f: StatusFile, m: { dev?: string; ino: number }): boolean {
  if (f.memory.ino !== m.ino) return false;
  return f.memory.dev === undefined || m.dev === undefined || deviceOf({ dev: BigInt(f.memory.dev) }) === m.dev;
}

/**
 * Status files of live processes of `uid` on memory `mem` — its device (`MAJOR:MINOR`) and inode,
 * or an inode number alone (matched by inode only) — back-ends first. Unusable files are skipped.
 */
export function findStatusFiles(uid: number, mem: number | { dev: string; ino: number }, pid?: number): StatusFile[] {
  const obj = typeof mem === 'number' ? { ino: mem } : mem;
  const found = new Map<string, StatusFile>();
  for (const dir of statusDirs(uid, pid)) {
    for (const path of listStatusFiles(dir)) {
      try {
        const f = readStatusFile(path, uid);
        if (describesObject(f, obj) && alive(f.pid)) found.set(`${f.pid}/${f.peer.id}`, f);
      } catch {
        // Half-removed, foreign or stale: not evidence.
      }
    }
  }
  return [...found.values()].sort((a, b) => (a.transport.role === b.transport.role ? a.pid - b.pid : a.transport.role === 'back-end' ? -1 : 1));
}

/** Open a path read-only, returning the fd or null (with the error code kept for the message). */
function tryOpen(path: string, why: string[]): number | null {
  try {
    // O_NONBLOCK: an fd that is a pipe or FIFO (an inode number that matched by chance) must not
    // block the open waiting for a writer; a memory object ignores the flag.
    return openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (err) {
    why.push(`${path}: ${errCode(err) || (err as Error).message}`);
    return null;
  }
}

/** An fd of `pid` on the object `m` maps (/proc/PID/fd/N, same device and inode), opened anew read-only, or null. */
function openViaFds(pid: number, m: SharedMapping, why: string[]): { fd: number; via: string } | null {
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return null;
  }
  for (const n of names) {
    const p = `/proc/${pid}/fd/${n}`;
    try {
      if (!isObjectOf(statSync(p, { bigint: true }), m)) continue;
    } catch {
      continue;
    }
    const fd = tryOpen(p, why);
    if (fd !== null) return { fd, via: p };
  }
  return null;
}

/** Processes of `uid` other than `except` (numeric /proc entries we can stat). */
function processesOf(uid: number, except: number): number[] {
  const out: number[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n) || Number(n) === except || Number(n) === process.pid) continue;
    try {
      if (statSync(`/proc/${n}`).uid === uid) out.push(Number(n));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** The memory fd of `pid` (see the file comment for the order). */
function openMemoryOf(pid: number, uid: number, m: SharedMapping): { fd: number; via: string } {
  const why: string[] = [];
  const own = openViaFds(pid, m, why);
  if (own !== null) return own;
  if (m.path.startsWith('/dev/shm/') && !m.path.endsWith(' (deleted)')) {
    const fd = tryOpen(m.path, why);
    if (fd !== null && isObjectOf(fstatSync(fd, { bigint: true }), m)) return { fd, via: m.path };
    if (fd !== null) closeSync(fd);
  }
  const mapFile = `/proc/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`;
  const viaMap = tryOpen(mapFile, why);
  if (viaMap !== null) return { fd: viaMap, via: mapFile };
  for (const other of processesOf(uid, pid)) {
    const r = openViaFds(other, m, why);
    if (r !== null) return r;
  }
  throw new InspectError(
    `cannot open the shared memory of process ${pid} (${m.path || `inode ${m.ino}`}): no process of uid ${uid} holds an fd to it ` +
      `and ${mapFile} needs CAP_SYS_ADMIN; inspect the vshm-server process (--pid) or its -M object instead`,
  );
}

/**
 * The vshm memory among the shared mappings of a process: the object mapped at offset 0 with a
 * 4096-byte mapping (the state table) — or the one a status file names.
 */
function pickMemory(pid: number, maps: SharedMapping[], own: StatusFile[]): SharedMapping {
  const candidates = new Map<string, SharedMapping>();
  for (const m of maps) if (m.offset === 0 && m.end - m.start === BigInt(STATE_TABLE_SIZE)) candidates.set(`${m.dev}/${m.ino}`, m);
  // A status file names its candidate by device and inode; one of an earlier version (inode only)
  // names a candidate only if no other has its number.
  const namedBy = (f: StatusFile): SharedMapping | undefined => {
    const hits = [...candidates.values()].filter((m) => describesObject(f, m));
    return hits.length === 1 ? hits[0] : undefined;
  };
  // Files naming different objects (two links on two memories in one process) decide nothing.
  const named = new Set(own.map(namedBy).filter((m) => m !== undefined));
  if (named.size === 1) return [...named][0]!;
  if (candidates.size === 1) return [...candidates.values()][0];
  if (candidates.size === 0) throw new InspectError(`process ${pid} maps no vshm shared memory (no shared 4096-byte state table mapping)`);
  throw new InspectError(`process ${pid} maps ${candidates.size} shared-memory objects; use -M NAME to pick one`);
}

/**
 * N and OUT from the protections of a peer's mappings (§2): the window [4096, S) is mapped
 * read/write except the foreign output sections, read-only. Virtio sessions have N = 2, so a
 * read-only run is the one foreign section: OUT is its length. No window mapping (vshm-server)
 * tells nothing.
 */
function layoutFromMappings(maps: SharedMapping[], mem: SharedMapping, size: number): { maxPeers: number; out: number } | null {
  const window = maps.filter((m) => m.ino === mem.ino && m.dev === mem.dev && m.offset >= STATE_TABLE_SIZE);
  if (window.length === 0) return null;
  const ro = window.filter((m) => m.perms[1] !== 'w');
  const out = ro.reduce((n, m) => n + Number(m.end - m.start), 0);
  if (out === 0) return { maxPeers: 2, out: 0 };
  return STATE_TABLE_SIZE + 2 * out <= size ? { maxPeers: 2, out } : null;
}

function makeLayout(size: number, maxPeers: number, out: number): SharedMemoryLayout {
  try {
    return new SharedMemoryLayout(size, maxPeers, out);
  } catch (err) {
    throw new InspectError(`layout does not fit: ${(err as Error).message}`, { cause: err });
  }
}

function chooseLayout(
  size: number,
  override: LayoutOverride,
  status: StatusFile[],
  fromMaps: { maxPeers: number; out: number } | null,
): { layout: SharedMemoryLayout; source: LayoutSource } {
  const st = status.find((f) => f.memory.size === size);
  if (override.maxPeers !== undefined || override.outputSectionSize !== undefined) {
    const n = override.maxPeers ?? st?.peer.maxPeers ?? fromMaps?.maxPeers ?? 2;
    const o = override.outputSectionSize ?? st?.memory.outputSectionSize ?? fromMaps?.out ?? 0;
    return { layout: makeLayout(size, n, o), source: 'options' };
  }
  if (st !== undefined) return { layout: makeLayout(size, st.peer.maxPeers, st.memory.outputSectionSize), source: 'status-file' };
  if (fromMaps !== null) return { layout: makeLayout(size, fromMaps.maxPeers, fromMaps.out), source: 'mappings' };
  return { layout: makeLayout(size, 2, 0), source: 'defaults' };
}

interface Mapped {
  stateTable: ArrayBuffer;
  window: ArrayBuffer;
  size: number;
  dev: string;
  ino: number;
}

/** mmap the state table and the window PROT_READ (as a peer maps them, §2) and close the fd. */
function mapReadOnly(binding: Binding, fd: number, what: string): Mapped {
  const maps: ArrayBuffer[] = [];
  try {
    const { size, ino } = binding.fstat(fd);
    const dev = deviceOf(fstatSync(fd, { bigint: true }));
    if (size < STATE_TABLE_SIZE) throw new InspectError(`${what} is ${size} bytes, smaller than the state table`);
    maps.push(binding.mmap(fd, 0, STATE_TABLE_SIZE, binding.PROT_READ));
    // S = 4096 leaves an empty window; mmap() refuses a zero length.
    maps.push(size === STATE_TABLE_SIZE ? new ArrayBuffer(0) : binding.mmap(fd, STATE_TABLE_SIZE, size - STATE_TABLE_SIZE, binding.PROT_READ));
    return { stateTable: maps[0], window: maps[1], size, dev, ino };
  } catch (err) {
    unmapAll(binding, maps);
    if (err instanceof InspectError) throw err;
    throw new InspectError(`cannot map ${what} read-only: ${errCode(err) || (err as Error).message}`, { cause: err });
  } finally {
    closeSync(fd);
  }
}

function unmapAll(binding: Binding, bufs: ArrayBuffer[]): void {
  for (const b of bufs) {
    if (b.byteLength === 0) continue;
    try {
      binding.munmap(b);
    } catch {
      // Already detached.
    }
  }
}

function attachment(binding: Binding, base: Omit<Attachment, 'close' | 'refreshStatus'>): Attachment {
  let mapped = true;
  return {
    ...base,
    refreshStatus() {
      this.status = findStatusFiles(this.uid, { dev: base.dev, ino: this.ino }, this.pid);
    },
    close() {
      if (!mapped) return;
      mapped = false;
      unmapAll(binding, [base.stateTable, base.window]);
    },
  };
}

/** Attach read-only to the memory of the vshm process `pid` (a peer or vshm-server). */
export function attachPid(binding: Binding, pid: number, override: LayoutOverride = {}): Attachment {
  if (!Number.isSafeInteger(pid) || pid < 1) throw new InspectError(`bad pid ${pid}`);
  const maps = parseMaps(readProc(pid, 'maps'));
  const uid = uidOf(pid);
  const ownFiles = statusDirs(uid, pid)
    .flatMap((d) => listStatusFiles(d, pid))
    .flatMap((p) => {
      try {
        return [readStatusFile(p, uid)];
      } catch {
        return [];
      }
    });
  const m = pickMemory(pid, maps, ownFiles);
  const { fd, via } = openMemoryOf(pid, uid, m);
  const mapped = mapReadOnly(binding, fd, via);
  const { size, ino } = mapped;
  try {
    if (ino !== m.ino || mapped.dev !== m.dev) throw new InspectError(`${via} is no longer the memory process ${pid} maps`);
    const status = findStatusFiles(uid, mapped, pid);
    const { layout, source } = chooseLayout(size, override, status, layoutFromMappings(maps, m, size));
    return attachment(binding, { pid, uid, dev: mapped.dev, ino, openedVia: via, layout, layoutSource: source, stateTable: mapped.stateTable, window: mapped.window, status });
  } catch (err) {
    unmapAll(binding, [mapped.stateTable, mapped.window]);
    throw err;
  }
}

/**
 * Whether NAME (without leading slashes) can name a POSIX shared-memory object: one path
 * component, not `.` or `..` (which would open /dev/shm or /dev themselves).
 */
export function validShmName(bare: string): boolean {
  return bare.length > 0 && !bare.includes('/') && bare !== '.' && bare !== '..';
}

/** Attach read-only to the POSIX shared-memory object NAME (`vshm-server -M NAME`). */
export function attachShm(binding: Binding, name: string, override: LayoutOverride = {}): Attachment {
  const bare = name.replace(/^\/+/, '');
  if (!validShmName(bare)) throw new InspectError(`bad shared-memory object name '${name}'`);
  const path = join('/dev/shm', bare);
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO of that name must not block the open until a writer comes.
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      throw new InspectError(`${path} is not a shared-memory object (not a regular file)`);
    }
  } catch (err) {
    if (err instanceof InspectError) throw err;
    const code = errCode(err);
    if (code === 'ENOENT') throw new InspectError(`no shared-memory object ${path} (is vshm-server -M ${bare} running?)`, { cause: err });
    throw new InspectError(`cannot open ${path}: ${code || (err as Error).message}`, { cause: err });
  }
  const mapped = mapReadOnly(binding, fd, path);
  const { size, ino } = mapped;
  try {
    const uid = process.geteuid?.() ?? 0;
    const status = findStatusFiles(uid, mapped);
    const { layout, source } = chooseLayout(size, override, status, null);
    return attachment(binding, { shm: bare, uid, dev: mapped.dev, ino, openedVia: path, layout, layoutSource: source, stateTable: mapped.stateTable, window: mapped.window, status });
  } catch (err) {
    unmapAll(binding, [mapped.stateTable, mapped.window]);
    throw err;
  }
}

/** Whether process `pid` still exists (for --watch). */
export function processAlive(pid: number): boolean {
  return alive(pid);
}
