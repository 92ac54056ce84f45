/**
 * Owner-only UNIX stream listeners for the console bridges (the front-end's bridge socket, the
 * back-end's port sockets), held to the same rule as the server socket (§1.9): mode 0600 from the
 * moment the name exists, and connections from another uid refused.
 *
 * Mode: the listening socket is made by the addon's `socketListen`, which fchmods the unbound
 * socket to 0600 before bind() — bind creates the file with that mode (minus umask, which can only
 * take bits away), so there is no window in which the name exists with wider permissions and no
 * process-wide umask is touched (a umask flip would race with fs work on libuv's thread pool).
 *
 * Accepting: our own loop (the addon's accept4 on a readiness watcher), not Node's. At the
 * open-file limit Node's accept — libuv's EMFILE trick — accepts every waiting client and closes
 * it at once, saying nothing to anyone: the client sees a closed connection, the daemon stays
 * silent. Here a failed accept is reported (`onAcceptError`) and the listener pauses a moment and
 * tries again, so the client waits in the backlog and is served once a descriptor is free —
 * vshm-server's accept does the same.
 *
 * Peers: every accepted connection's SO_PEERCRED uid is checked. Our own uid is accepted, and so
 * is root: root bypasses the file mode anyway (CAP_DAC_OVERRIDE) and can read our memory, so
 * refusing it would protect nothing and break `sudo` tooling. Anyone else is closed at once,
 * before a byte is read, with one log line. The check matters when the file mode is widened on
 * purpose or by accident (chmod, an ACL, a socket passed to another user).
 */
import { unlinkSync } from 'node:fs';
import { Server, Socket } from 'node:net';
import type { Binding, FdWatcher } from '@vshm/addon';
import { errnoText } from './cli-kit.js';
import { VshmError } from './errors.js';
import { inspectSocketPath, removeStaleSocket, type SocketPathState } from './server/socket.js';

/**
 * Backlog of an owner-only listener: Node's listen() default, the one these listeners had in
 * effect while Node served the fd (its listen() re-listened it with 511). Clients past it fail to
 * connect (EAGAIN), so a burst of connections (nbdcopy's, a flood the NBD server refuses one by
 * one) must fit.
 */
const BRIDGE_BACKLOG = 511;
/** After a failed accept (EMFILE: the open-file limit), poll the listener again after this long. */
const ACCEPT_RETRY_MS = 100;
/** Connections accepted per readiness callback before the event loop runs other work. */
const ACCEPT_BATCH = 16;
/** accept() errors that concern one connection only, never the listener: skip it and go on. */
const ACCEPT_TRANSIENT: ReadonlySet<string> = new Set(['ECONNABORTED', 'EINTR', 'EPROTO']);

/** A bridge socket could not be created; `code` VSHM_ERR_SOCKET, message names the path and errno. */
export class LocalSocketError extends VshmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VSHM_ERR_SOCKET', '', message, options);
  }
}

/** Credentials of the process at the other end of a UNIX socket (SO_PEERCRED at connect time). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * The peer policy of owner-only sockets: the same uid as ours, or root. Pure, for tests and for
 * callers that read credentials their own way.
 */
export function peerUidAllowed(peerUid: number, ownUid: number): boolean {
  return peerUid === ownUid || peerUid === 0;
}

let bindingPromise: Promise<Binding> | undefined;
function loadBinding(): Promise<Binding> {
  bindingPromise ??= import('@vshm/addon').then((m) => m.default);
  return bindingPromise;
}

/** The fd behind a connected `net.Socket` (Node keeps it on its libuv handle), or -1. */
function socketFd(sock: Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

export interface OwnerOnlyOptions {
  /** Called with one line (no program name, no newline) for every refused connection. */
  onRefused: (line: string) => void;
  /** Passed to `net.createServer`. */
  allowHalfOpen?: boolean;
  /**
   * Our uid (tests); default the effective one, process.geteuid(): SO_PEERCRED reports the peer's
   * effective uid, and the socket file is created with ours.
   */
  ownUid?: number;
  /** Credentials of an accepted socket (tests); default SO_PEERCRED through the addon. */
  credentials?: (sock: Socket) => PeerCredentials | null;
  /** The native binding (tests); default `@vshm/addon`. */
  binding?: Binding;
  /** Reader of /proc/net/unix for the liveness check (tests); default the file. */
  procNetUnix?: () => string;
  /**
   * Called with the errno error (`code`, `syscall` 'accept') of every failed accept() — EMFILE
   * or ENFILE at the open-file limit, ENOMEM, ENOBUFS — after which the listener pauses 100 ms
   * and tries again: the client waits in the backlog and is served once a descriptor is free.
   * While the limit holds, that is up to ten calls a second: rate-limit any line printed.
   * Default: the retry without a word.
   */
  onAcceptError?: (err: NodeJS.ErrnoException) => void;
}

/** An errno-style error (`code`, `path`) as the cause of a refusal. */
function errnoError(code: 'EADDRINUSE' | 'EEXIST', path: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code, path });
}

function unlinkOrIgnore(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // not there
  }
}

/** Make `path` free for bind(), or refuse it (see listenOwnerOnly). */
function freeSocketPath(path: string, procNetUnix: (() => string) | undefined): void {
  let state: SocketPathState;
  try {
    state = inspectSocketPath(path, procNetUnix);
  } catch (err) {
    throw new LocalSocketError(`cannot inspect ${path}: ${errnoText(err)}`, { cause: err });
  }
  let msg: string;
  switch (state.kind) {
    case 'absent':
      return;
    case 'stale':
      try {
        removeStaleSocket(path);
      } catch (err) {
        throw new LocalSocketError(`cannot remove stale socket ${path}: ${errnoText(err)}`, { cause: err });
      }
      return;
    case 'not-socket':
      msg = `${path} exists and is not a socket`;
      throw new LocalSocketError(msg, { cause: errnoError('EEXIST', path, msg) });
    case 'live':
      msg = `${path} is in use by another listener`;
      break;
    case 'undecidable':
      msg = `cannot decide whether ${path} is in use (${state.why}); refusing to replace it`;
      break;
  }
  throw new LocalSocketError(msg, { cause: errnoError('EADDRINUSE', path, msg) });
}

/**
 * The `net.Server` listenOwnerOnly returns: Node never listens on it; connections come from our
 * accept loop (`adopt`). `close()` keeps Node's contract — no new connection after it, the
 * callback and 'close' once the connections it accepted have all closed too; a second close()
 * calls back with ERR_SERVER_NOT_RUNNING (after 'close', at once).
 */
class OwnerOnlyServer extends Server {
  /** Stop accepting and close the listening fd; set by listenOwnerOnly. */
  stopAccepting: (() => void) | null = null;
  private open = 0;
  private closeEmitted = false;

  /** Hand an accepted socket to the 'connection' listeners, as Node's own accept would. */
  adopt(sock: Socket): void {
    this.open++;
    sock.once('close', () => {
      this.open--;
      this.emitCloseIfDone();
    });
    this.emit('connection', sock);
  }

  override close(cb?: (err?: Error) => void): this {
    const stop = this.stopAccepting;
    this.stopAccepting = null;
    if (cb !== undefined) {
      const notRunning = stop === null ? Object.assign(new Error('Server is not running.'), { code: 'ERR_SERVER_NOT_RUNNING' }) : undefined;
      // Closed already: 'close' will not come again, so answer now (Node's close() would too).
      if (this.closeEmitted) process.nextTick(() => cb(notRunning));
      else this.once('close', () => cb(notRunning));
    }
    stop?.();
    this.emitCloseIfDone();
    return this;
  }

  private emitCloseIfDone(): void {
    if (this.stopAccepting !== null || this.open > 0 || this.closeEmitted) return;
    this.closeEmitted = true;
    process.nextTick(() => this.emit('close'));
  }
}

/**
 * A `net.Server` listening at `path` owner-only: mode 0600 from creation, and each connection
 * from a uid that `peerUidAllowed` rejects destroyed before a byte is read (with `onRefused`);
 * `onConnection` sees only accepted peers. The path is freed by the server socket's rule (§1.9):
 * a stale socket there is replaced; a live one, one whose liveness cannot be decided, or anything
 * that is not a socket (a file, a directory, a dangling symlink) is refused, its cause an errno
 * error EADDRINUSE or EEXIST. Liveness comes from /proc/net/unix: the check never connects, so a
 * listener there (a vshm-server, which would hand a probe a peer ID) never sees it. Rejects with
 * LocalSocketError naming the path (and the errno). Closing the server closes the fd; the caller
 * unlinks the path.
 */
export async function listenOwnerOnly(path: string, opts: OwnerOnlyOptions, onConnection: (sock: Socket) => void): Promise<Server> {
  freeSocketPath(path, opts.procNetUnix);
  const b = opts.binding ?? (await loadBinding());
  const ownUid = opts.ownUid ?? process.geteuid?.() ?? -1;
  const creds = opts.credentials ?? ((s: Socket): PeerCredentials | null => {
    const fd = socketFd(s);
    if (fd < 0) return null;
    try {
      return b.peerCred(fd);
    } catch {
      return null;
    }
  });
  const allowHalfOpen = opts.allowHalfOpen ?? false;
  const server = new OwnerOnlyServer({ allowHalfOpen }, (sock) => {
    const c = creds(sock);
    if (c !== null && peerUidAllowed(c.uid, ownUid)) {
      onConnection(sock);
      return;
    }
    opts.onRefused(c === null
      ? `refused a connection on ${path}: peer credentials unavailable`
      : `refused a connection on ${path} from uid ${c.uid} (pid ${c.pid}): only uid ${ownUid} or root may connect`);
    sock.on('error', () => {});
    sock.destroy();
  });
  let fd: number;
  try {
    fd = b.socketListen(path, 0o600, BRIDGE_BACKLOG);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new LocalSocketError(`cannot listen on ${path}: ${errnoText(e)}`, { cause: err });
  }
  // Our own accept loop (see the file comment): Node's would drop clients silently at EMFILE.
  let watcher: FdWatcher;
  try {
    watcher = b.createWatcher(fd, (status) => acceptAll(status));
  } catch (err) {
    b.close(fd);
    unlinkOrIgnore(path);
    throw new LocalSocketError(`cannot listen on ${path}: ${errnoText(err)}`, { cause: err });
  }
  let retry: NodeJS.Timeout | undefined;
  const failed = (err: NodeJS.ErrnoException): void => {
    // Stop polling (a listener at EMFILE stays readable: it would spin) and try again shortly.
    watcher.stop();
    retry = setTimeout(() => {
      retry = undefined;
      if (server.stopAccepting !== null) watcher.start(b.POLL_READABLE);
    }, ACCEPT_RETRY_MS);
    opts.onAcceptError?.(err);
  };
  const acceptAll = (status: number): void => {
    if (status < 0) {
      failed(Object.assign(new Error(`poll on the listening socket failed (${status})`), { code: 'EIO', errno: status, syscall: 'poll' }));
      return;
    }
    for (let i = 0; i < ACCEPT_BATCH && server.stopAccepting !== null; i++) {
      let cfd: number;
      try {
        cfd = b.socketAccept(fd);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (ACCEPT_TRANSIENT.has(e.code ?? '')) continue;
        failed(Object.assign(e, { syscall: 'accept' }));
        return;
      }
      if (cfd < 0) return; // EAGAIN: none waiting
      let sock: Socket;
      try {
        sock = new Socket({ fd: cfd, allowHalfOpen, readable: true, writable: true });
      } catch {
        b.close(cfd);
        continue;
      }
      server.adopt(sock);
    }
  };
  server.stopAccepting = () => {
    clearTimeout(retry);
    watcher.close();
    b.close(fd);
  };
  watcher.start(b.POLL_READABLE);
  return server;
}
