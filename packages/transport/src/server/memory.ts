/**
 * The server's shared-memory object (spec §1.9, §2): created, sized, sealed, and its state table
 * mapped and zeroed. The server maps ONLY bytes 0–4095 (the state table): it never touches the
 * data sections, and a peer departure needs exactly one store there (§1.6).
 */
import { fstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Binding } from '@vshm/addon';
import { STATE_TABLE_BYTES } from '../ivshmem/protocol.js';
import type { MemorySource } from './options.js';
import { ServerError } from './socket.js';

export interface ServerMemory {
  /** The fd every INIT carries. */
  readonly fd: number;
  /** fstat size (the rounded `-l`). */
  readonly size: number;
  /** Name to shm_unlink at shutdown (§1.7), for `-M` only. */
  readonly shmName: string | undefined;
  /** For `-M`: whether this call created the object (a failed start unlinks only what it created). */
  readonly created: boolean;
  /**
   * Store u32 0 into state entry `id`, then a full fence (§1.6): the entry is zero before any
   * PEER_GONE leaves, so a peer that sees PEER_GONE reads 0 (§3).
   */
  clearEntry(id: number): void;
  /** Acquire-load of entry `id` (tests and diagnostics). */
  entry(id: number): number;
  /** Unmap and close; does not unlink. Idempotent. */
  close(): void;
}

/**
 * Create the memory of `size` bytes (a power of two ≥ 4096 is expected, not required).
 *
 * - memfd (default): anonymous, sized, then sealed SHRINK | GROW | SEAL so no peer can resize it
 *   under the others (§1.9).
 * - shm (`-M`): shm_open(O_CREAT) — a reused object may hold stale state entries, hence the
 *   zeroing below (§1.9 MUST).
 * - tmpfile (`-m`): an unlinked file in the directory.
 *
 * On any failure every fd and mapping created here is released before rethrowing.
 */
export function createServerMemory(binding: Binding, source: MemorySource, size: number): ServerMemory {
  let fd = -1;
  let table: ArrayBuffer | undefined;
  let created = false;
  try {
    switch (source.kind) {
      case 'memfd':
        fd = binding.memfdCreate('vshm-ivshmem', true);
        binding.ftruncate(fd, size);
        binding.addSeals(fd, binding.F_SEAL_SHRINK | binding.F_SEAL_GROW | binding.F_SEAL_SEAL);
        break;
      case 'shm':
        try {
          fd = binding.shmOpen(source.name, binding.O_RDWR | binding.O_CREAT | binding.O_EXCL, 0o600);
          created = true;
        } catch (err) {
          if ((err as { code?: string }).code !== 'EEXIST') throw err;
          fd = binding.shmOpen(source.name, binding.O_RDWR, 0o600);
          checkShmPrivate(fd, source.name);
        }
        binding.ftruncate(fd, size);
        break;
      case 'tmpfile':
        fd = binding.openTmpfile(source.dir, 0o600);
        binding.ftruncate(fd, size);
        break;
    }
    const actual = binding.fstat(fd).size;
    table = binding.mmap(fd, 0, STATE_TABLE_BYTES, binding.PROT_READ | binding.PROT_WRITE);
    // §1.9: zero the whole table at start. No peer is connected yet, so plain stores suffice; the
    // fence orders them before the first INIT leaves.
    new Uint8Array(table).fill(0);
    binding.fence();
    return makeMemory(binding, fd, actual, table, source.kind === 'shm' ? source.name : undefined, created);
  } catch (err) {
    if (table) binding.munmap(table);
    if (fd >= 0) binding.close(fd);
    if (created && source.kind === 'shm') binding.shmUnlink(source.name);
    throw err;
  }
}

function makeMemory(
  binding: Binding,
  fd: number,
  size: number,
  table: ArrayBuffer,
  shmName: string | undefined,
  created: boolean,
): ServerMemory {
  const entries = new Uint32Array(table);
  let closed = false;
  return {
    fd,
    size,
    shmName,
    created,
    clearEntry(id: number): void {
      if (closed || id < 0 || id >= entries.length) return;
      Atomics.store(entries, id, 0);
      binding.fence();
    },
    entry(id: number): number {
      return Atomics.load(entries, id);
    },
    close(): void {
      if (closed) return;
      closed = true;
      binding.munmap(table);
      binding.close(fd);
    },
  };
}

/**
 * The pid of another process that both holds `/dev/shm/NAME` open and has it mapped (`name` as
 * shm_open takes it, with its leading '/'), or null. That is what a running vshm-server does with
 * its `-M` object for its whole life (fd for every INIT, state table mapped); its peers only map
 * it, and a crashed server leaves neither. Reusing such a live object would resize memory its
 * peers have mapped and zero their state entries: §1.9 means the reuse of a stale object.
 * Processes whose fds or maps cannot be read (another uid: its 0600 object cannot be opened
 * read-write by us anyway, unless we are root) are skipped. `procRoot` is injectable for tests.
 */
export function shmObjectHolder(name: string, procRoot = '/proc'): number | null {
  const target = `/dev/shm${name}`;
  let pids: string[];
  try {
    pids = readdirSync(procRoot).filter((d) => /^[0-9]+$/.test(d) && Number(d) !== process.pid);
  } catch {
    return null;
  }
  for (const pid of pids) {
    if (holdsOpen(`${procRoot}/${pid}`, target) && maps(`${procRoot}/${pid}`, target)) return Number(pid);
  }
  return null;
}

/** Whether the process at `dir` (/proc/PID) has an fd open on `target`. */
function holdsOpen(dir: string, target: string): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`${dir}/fd`);
  } catch {
    return false; // gone meanwhile, or not ours to read
  }
  for (const fd of fds) {
    try {
      if (readlinkSync(`${dir}/fd/${fd}`) === target) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

/** Whether the process at `dir` (/proc/PID) has `target` mapped. */
function maps(dir: string, target: string): boolean {
  try {
    return readFileSync(`${dir}/maps`, 'latin1').split('\n').some((l) => l.endsWith(` ${target}`));
  } catch {
    return false;
  }
}

/**
 * Refuse an existing `-M` object that someone other than us may open: /dev/shm is world-writable,
 * so another local user can create the name first (mode 0666, or owned by them) and keep it open;
 * reusing it would give them every byte the peers exchange. Checked on the fd we opened, before
 * it is resized or zeroed, so the object is left as it was.
 */
function checkShmPrivate(fd: number, name: string): void {
  const st = fstatSync(fd);
  const uid = process.geteuid?.() ?? st.uid;
  const mode = st.mode & 0o777;
  if (st.uid !== uid) {
    throw new ServerError('VSHM_ERR_SHM_UNSAFE', '1.9', `shared memory object ${name} exists and is owned by uid ${st.uid}, not by us (uid ${uid}); refusing to reuse it`);
  }
  if ((mode & 0o077) !== 0) {
    throw new ServerError('VSHM_ERR_SHM_UNSAFE', '1.9', `shared memory object ${name} exists with mode 0${mode.toString(8)}, open to other users; refusing to reuse it (remove it or chmod it 0600)`);
  }
}

/** Refuse a `-M` object that a live server holds (see shmObjectHolder). */
export function checkShmNotInUse(name: string, procRoot?: string): void {
  const pid = shmObjectHolder(name, procRoot);
  if (pid !== null) {
    throw new ServerError('VSHM_ERR_SHM_IN_USE', '1.9', `shared memory object ${name} is in use by process ${pid} (another vshm-server?); refusing to reuse it`);
  }
}
