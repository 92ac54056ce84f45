/**
 * The `-p PATH` pid file of `vshm-server` (§1.9), created so that it can never be used to
 * overwrite another file: open(O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW). O_EXCL alone already
 * fails on any existing name, a symlink included (dangling or not); O_NOFOLLOW states the intent
 * and keeps it so should O_EXCL ever be dropped.
 *
 * An existing name is then judged with lstat, never followed:
 * - a symlink, or anything but a regular file → refused (the target is never touched);
 * - a regular file holding one decimal pid of a live process → refused (another server, or a pid
 *   reused by an unrelated process — we cannot tell, so we err on the side of not replacing);
 * - a regular file holding the pid of a process that no longer exists (ESRCH) → stale: unlinked
 *   and created afresh with O_EXCL (one retry, so a racing server wins cleanly and we refuse);
 * - a regular file with anything else in it → refused: it is not ours to delete.
 *
 * Removal at exit unlinks the file only if it is still a regular file holding our pid, so a file
 * that someone replaced meanwhile survives.
 */
import { closeSync, constants, lstatSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { errnoText } from '../cli-kit.js';
import { VshmError } from '../errors.js';

/** Why a pid file could not be created; `code` VSHM_ERR_PID_FILE. */
export class PidFileError extends VshmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VSHM_ERR_PID_FILE', '1.9', message, options);
  }
}

/** Whether process `pid` exists (EPERM: it exists but is not ours — still alive). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** `CODE (text)` of an errno error, as every vshm CLI words it. */
const errnoOf = errnoText;

/** The pid in a pid file's text ("1234\n"), or null when the text is not exactly one pid. */
export function parsePidFile(text: string): number | null {
  const m = /^\s*([1-9][0-9]{0,9})\s*$/.exec(text);
  if (m === null) return null;
  const pid = Number(m[1]);
  return pid <= 0x3fffffff ? pid : null;
}

/** Decide what to do with the existing name `path`: throws PidFileError, or returns (stale: removed). */
function removeIfStale(path: string, exists: (pid: number) => boolean): void {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // gone meanwhile: retry creates it
    throw new PidFileError(`pid file ${path}: cannot inspect it: ${errnoOf(err)}`, { cause: err });
  }
  if (st.isSymbolicLink()) throw new PidFileError(`pid file ${path} is a symbolic link; refusing to follow it`);
  if (!st.isFile()) throw new PidFileError(`pid file ${path} exists and is not a regular file; refusing to replace it`);
  let text;
  try {
    // O_NOFOLLOW: the name was a regular file a moment ago; do not read through a swapped-in link.
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      text = readFileSync(fd, 'latin1');
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new PidFileError(`pid file ${path}: cannot read it: ${errnoOf(err)}`, { cause: err });
  }
  const pid = parsePidFile(text);
  if (pid === null) throw new PidFileError(`pid file ${path} exists and does not hold a pid; refusing to replace it`);
  if (exists(pid)) throw new PidFileError(`pid file ${path} belongs to running process ${pid}`);
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new PidFileError(`pid file ${path}: cannot remove the stale file of process ${pid}: ${errnoOf(err)}`, { cause: err });
    }
  }
}

/**
 * Create the pid file `path` holding `pid` (mode 0644 minus umask), as described in the module
 * comment. Throws PidFileError (VSHM_ERR_PID_FILE) naming the path and the errno.
 * `exists` is injectable for tests.
 */
export function createPidFile(path: string, pid: number = process.pid, exists: (pid: number) => boolean = processExists): void {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  for (let attempt = 0; ; attempt++) {
    let fd;
    try {
      fd = openSync(path, flags, 0o644);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ELOOP: O_NOFOLLOW met a symlink (only reachable without O_EXCL's check, kept for clarity).
      if ((code === 'EEXIST' || code === 'ELOOP') && attempt === 0) {
        removeIfStale(path, exists);
        continue;
      }
      if (code === 'EEXIST' || code === 'ELOOP') throw new PidFileError(`pid file ${path} was created by someone else meanwhile`, { cause: err });
      throw new PidFileError(`cannot create pid file ${path}: ${errnoOf(err)}`, { cause: err });
    }
    try {
      writeSync(fd, `${pid}\n`);
    } catch (err) {
      closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        /* nothing more to undo */
      }
      throw new PidFileError(`cannot write pid file ${path}: ${errnoOf(err)}`, { cause: err });
    }
    closeSync(fd);
    return;
  }
}

/** Unlink `path` if it is still a regular file holding `pid`; never throws. */
export function removePidFile(path: string, pid: number = process.pid): void {
  try {
    if (!lstatSync(path).isFile()) return;
    if (parsePidFile(readFileSync(path, 'latin1')) !== pid) return;
    unlinkSync(path);
  } catch {
    // gone, or not ours any more: nothing to do
  }
}
