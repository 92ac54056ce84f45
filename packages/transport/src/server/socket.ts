/**
 * The listening socket path (spec §1.9): a stale socket is replaced, a live socket or a non-socket
 * is refused, and the check never connects — a live server would take a probe connection as a
 * peer and hand it an ID. Liveness comes from /proc/net/unix; when it cannot be decided, refuse.
 */
import { lstatSync, readFileSync, unlinkSync } from 'node:fs';
import { isAbsolute, resolve, basename } from 'node:path';
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
 * Whether some socket is bound to `path` according to `entries`: 'live' for a listening entry
 * (or a connection accepted from it) with that exact path, 'unknown' when an entry's path is
 * relative (bound from another cwd: it may or may not be ours), else 'stale'.
 */
export function socketLiveness(entries: readonly UnixSocketEntry[], path: string): 'live' | 'stale' | 'unknown' {
  const abs = resolve(path);
  let unknown = false;
  for (const e of entries) {
    if (e.path === abs || e.path === path) return 'live';
    if (!isAbsolute(e.path) && basename(e.path) === basename(abs)) unknown = true;
  }
  return unknown ? 'unknown' : 'stale';
}

/**
 * Make `path` free for bind(): nothing there → fine; a stale socket → unlinked; a live socket, a
 * non-socket, or an undecidable case → ServerError VSHM_ERR_SOCKET_IN_USE / VSHM_ERR_NOT_SOCKET.
 * `procNetUnix` is injectable for tests.
 */
export function prepareSocketPath(path: string, procNetUnix: () => string = () => readFileSync('/proc/net/unix', 'latin1')): void {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ServerError('VSHM_ERR_SOCKET_PATH', '1.9', `cannot inspect socket path ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isSocket()) {
    throw new ServerError('VSHM_ERR_NOT_SOCKET', '1.9', `${path} exists and is not a socket; refusing to replace it`);
  }
  let text: string;
  try {
    text = procNetUnix();
  } catch (err) {
    throw new ServerError('VSHM_ERR_SOCKET_IN_USE', '1.9', `cannot read /proc/net/unix to check ${path}; refusing to replace it`, { cause: err });
  }
  const verdict = socketLiveness(parseProcNetUnix(text), path);
  if (verdict === 'live') {
    throw new ServerError('VSHM_ERR_SOCKET_IN_USE', '1.9', `${path} is in use by a live server`);
  }
  if (verdict === 'unknown') {
    throw new ServerError('VSHM_ERR_SOCKET_IN_USE', '1.9', `cannot decide whether ${path} is in use (a socket is bound to a relative path); refusing`);
  }
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ServerError('VSHM_ERR_SOCKET_PATH', '1.9', `cannot remove stale socket ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Unlink our socket file at shutdown (§1.7) if it is still a socket; never throws. */
export function removeSocketPath(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // already gone or not ours to remove
  }
}
