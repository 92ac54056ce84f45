/**
 * The listening socket path (spec §1.9): a stale socket is replaced, a live socket or a non-socket
 * is refused, and the check never connects — a live server would take a probe connection as a
 * peer and hand it an ID. Liveness comes from /proc/net/unix; when it cannot be decided, refuse.
 */
import { lstatSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { VshmError } from '../errors.js';

/** A runtime failure of the server (exit 1), as opposed to an argument error (exit 2). */
export class ServerError extends VshmError {}

/** One socket of /proc/net/unix that is bound to a filesystem path. */
export interface UnixSocketEntry {
  /** Flags field: 0x10000 (__SO_ACCEPTCON) marks a listening socket. */
  flags: number;
  /** Socket state (1 unconnected/listening, 3 connected). */
  state: number;
  path: string;
}

/**
 * Parse /proc/net/unix ("Num RefCount Protocol Flags Type St Inode Path"). Entries without a path
 * (unbound) or with an abstract one ('@…') are omitted. The path is the rest of the line, so paths
 * with spaces survive; paths with newlines cannot be represented and are garbled (callers refuse
 * when in doubt).
 */
export function parseProcNetUnix(text: string): UnixSocketEntry[] {
  const out: UnixSocketEntry[] = [];
  const lines = text.split('\n');
  for (let i = 1; i < lines.length; i++) {
    const m = /^\s*[0-9a-fA-F]+:\s+[0-9a-fA-F]+\s+[0-9a-fA-F]+\s+([0-9a-fA-F]+)\s+[0-9a-fA-F]+\s+([0-9a-fA-F]+)\s+\d+(?: (.*))?$/.exec(lines[i]);
    if (!m || m[3] === undefined || m[3].startsWith('@')) continue;
    out.push({ flags: parseInt(m[1], 16), state: parseInt(m[2], 16), path: m[3] });
  }
  return out;
}

/**
 * Whether two directory paths name the same directory (same device and inode, symlinks followed):
 * false when either does not exist, undefined when it cannot be told (e.g. EACCES).
 */
export function sameDirectory(a: string, b: string): boolean | undefined {
  try {
    const sa = statSync(a, { throwIfNoEntry: false });
    const sb = statSync(b, { throwIfNoEntry: false });
    if (sa === undefined || sb === undefined) return false;
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOTDIR' ? false : undefined;
  }
}

/**
 * Whether some socket is bound to `path` according to `entries`: 'live' for a listening entry
 * (or a connection accepted from it) naming that file, 'unknown' when an entry's path is relative
 * (bound from another cwd: it may or may not be ours) or its directory cannot be compared, else
 * 'stale'. The kernel lists the path as it was passed to bind(), so the same file may be spelled
 * differently (a symlinked directory, '//', '.', '..'): an absolute entry with our file name is
 * ours when its directory is ours (`sameDir`, by device and inode).
 */
export function socketLiveness(
  entries: readonly UnixSocketEntry[],
  path: string,
  sameDir: (a: string, b: string) => boolean | undefined = sameDirectory,
): 'live' | 'stale' | 'unknown' {
  const abs = resolve(path);
  const name = basename(abs);
  let unknown = false;
  for (const e of entries) {
    if (e.path === abs || e.path === path) return 'live';
    if (basename(e.path) !== name) continue;
    if (!isAbsolute(e.path)) {
      unknown = true;
      continue;
    }
    if (resolve(e.path) === abs) return 'live';
    const same = sameDir(dirname(e.path), dirname(abs));
    if (same === true) return 'live';
    if (same === undefined) unknown = true;
  }
  return unknown ? 'unknown' : 'stale';
}

/** What stands at a path a socket is about to be bound to (§1.9), read without connecting. */
export type SocketPathState =
  | { kind: 'absent' }
  | { kind: 'not-socket' }
  | { kind: 'live' }
  | { kind: 'stale' }
  /** Live or stale cannot be told; `why` completes "cannot decide whether PATH is in use (…)". */
  | { kind: 'undecidable'; why: string };

/** The default /proc/net/unix reader. */
function readProcNetUnix(): string {
  return readFileSync('/proc/net/unix', 'latin1');
}

/**
 * The one liveness rule for every socket vshm listens on — the server's (§1.9) and the bridges'
 * (`listenOwnerOnly`): lstat says whether a socket is there, /proc/net/unix whether something is
 * bound to it. Never connects: a live vshm-server would take a probe as a peer and hand it an ID.
 * Throws lstat's errno error for anything but ENOENT. `procNetUnix` is injectable for tests.
 */
export function inspectSocketPath(path: string, procNetUnix: () => string = readProcNetUnix): SocketPathState {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st === undefined) return { kind: 'absent' };
  if (!st.isSocket()) return { kind: 'not-socket' };
  let text: string;
  try {
    text = procNetUnix();
  } catch (err) {
    return { kind: 'undecidable', why: `/proc/net/unix cannot be read: ${(err as Error).message}` };
  }
  const verdict = socketLiveness(parseProcNetUnix(text), path);
  if (verdict === 'unknown') return { kind: 'undecidable', why: 'a socket is bound to a path of that name that cannot be compared with it' };
  return { kind: verdict };
}

/** Unlink a socket `inspectSocketPath` found stale; gone already is fine, other errno errors throw. */
export function removeStaleSocket(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Make `path` free for the server's bind(): nothing there → fine; a stale socket → unlinked; a
 * live socket, a non-socket, or an undecidable case → ServerError VSHM_ERR_SOCKET_IN_USE /
 * VSHM_ERR_NOT_SOCKET (VSHM_ERR_SOCKET_PATH when the path cannot be inspected or removed).
 */
export function prepareSocketPath(path: string, procNetUnix: () => string = readProcNetUnix): void {
  let state: SocketPathState;
  try {
    state = inspectSocketPath(path, procNetUnix);
  } catch (err) {
    throw new ServerError('VSHM_ERR_SOCKET_PATH', '1.9', `cannot inspect socket path ${path}: ${(err as Error).message}`, { cause: err });
  }
  switch (state.kind) {
    case 'absent':
      return;
    case 'not-socket':
      throw new ServerError('VSHM_ERR_NOT_SOCKET', '1.9', `${path} exists and is not a socket; refusing to replace it`);
    case 'live':
      throw new ServerError('VSHM_ERR_SOCKET_IN_USE', '1.9', `${path} is in use by a live server`);
    case 'undecidable':
      throw new ServerError('VSHM_ERR_SOCKET_IN_USE', '1.9', `cannot decide whether ${path} is in use (${state.why}); refusing to replace it`);
    case 'stale':
      try {
        removeStaleSocket(path);
      } catch (err) {
        throw new ServerError('VSHM_ERR_SOCKET_PATH', '1.9', `cannot remove stale socket ${path}: ${(err as Error).message}`, { cause: err });
      }
  }
}

/** Which file a path named when we bound it (device and inode), to remove only that one. */
export interface FileIdentity {
  dev: number;
  ino: number;
}

/** Device and inode of the socket file at `path` (lstat), or undefined when it cannot be read. */
export function socketIdentity(path: string): FileIdentity | undefined {
  try {
    const st = lstatSync(path);
    return st.isSocket() ? { dev: st.dev, ino: st.ino } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Unlink our socket file at shutdown (§1.7) if it is still a socket — and, given `ours`, still the
 * one we bound: a socket another server bound at the path after ours was removed is left alone,
 * as the pid file is. Never throws.
 */
export function removeSocketPath(path: string, ours?: FileIdentity): void {
  try {
    const st = lstatSync(path);
    if (!st.isSocket()) return;
    if (ours !== undefined && (st.dev !== ours.dev || st.ino !== ours.ino)) return;
    unlinkSync(path);
  } catch {
    // already gone or not ours to remove
  }
}
