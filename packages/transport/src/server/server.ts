/**
 * The ivshmem v2 server (spec §1.3–1.7, §1.9): creates the memory and the eventfds, assigns IDs,
 * hands out descriptors, announces departures. Never on the data path: it maps only the state
 * table, and only to zero it (§1.9) and to clear a departed peer's entry (§1.6).
 *
 * Wire-compatible with the QEMU ivshmem2-server (§0 goal (a)); deviations are server-local only:
 * a client beyond max_peers is closed and serving continues (§1.4), peers whose socket is full get
 * a queue instead of a truncated message (§1.3).
 *
 * ```ts
 * const s = new IvshmemServer({ socketPath: '/tmp/x.sock', memorySize: 65536, vectors: 3 });
 * s.on('peer-connected', (id) => …);
 * await s.start();
 * …
 * await s.stop();
 * ```
 *
 * Events: 'listening' (); 'peer-connected' (id); 'peer-refused' () — beyond max_peers, closed
 * without a message; 'peer-gone' (id, reason); 'warning' (err) — a failure that did not stop the
 * server (accept, eventfd creation, INIT send); 'close' ().
 */
import { EventEmitter } from 'node:events';
import { createLogger as createDebug } from '../log.js';
import type { Binding, FdWatcher } from '@vshm/addon';
import { encodeEventFd, encodeInit, encodePeerGone, INIT_LEN, protocolForPeer } from '../ivshmem/protocol.js';
import { PeerConnection, queuedFdLimit } from './connection.js';
import { checkShmNotInUse, createServerMemory, type ServerMemory } from './memory.js';
import { LISTEN_BACKLOG, resolveServerOptions, type ServerOptions, type ServerOptionsInput } from './options.js';
import { type FileIdentity, prepareSocketPath, removeSocketPath, ServerError, socketIdentity } from './socket.js';
import { peerUidAllowed } from '../local-socket.js';
import { createPidFile, removePidFile } from './pid-file.js';

const debug = createDebug('vshm:server');

/** Connections accepted per readiness callback before yielding to the event loop. */
const ACCEPT_BATCH = 64;
/** After an accept failure such as EMFILE, wait this long before polling the listener again. */
const ACCEPT_RETRY_MS = 100;

export interface IvshmemServerOptions extends ServerOptionsInput {
  /** The native binding; defaults to `@vshm/addon` (loaded in start()). Policy tests pass a fake. */
  binding?: Binding;
  /** Injectable /proc/net/unix reader for the live-socket check (tests). */
  procNetUnix?: () => string;
}

type ServerState = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * The ivshmem v2 server (§1) in this process: owns the shared memory, hands each connecting
 * peer its id, the memory and every eventfd, and announces departures. `vshm-server` is this
 * class behind a command line; tests, `npm start` and benches embed it directly.
 */
export class IvshmemServer extends EventEmitter {
  readonly options: ServerOptions;
  private binding: Binding | undefined;
  private readonly procNetUnix: (() => string) | undefined;
  private state: ServerState = 'new';
  private memory: ServerMemory | undefined;
  private listenFd = -1;
  /** The socket file we bound, so that shutdown removes only that one (§1.7). */
  private socketFile: FileIdentity | undefined;
  private listenWatcher: FdWatcher | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private pidFileWritten = false;
  /** start() in progress (it awaits the addon's import): stop() waits for it, then stops. */
  private starting: Promise<void> | undefined;
  /** Connected peers in connection order (§1.3: the list order of steps 5 and 6). */
  private readonly peers: PeerConnection[] = [];
  private readonly pendingDrops: [PeerConnection, string][] = [];
  private deferDrops = 0;

  /** Validates options as the CLI does (§1.9); throws ArgumentError. Creates nothing. */
  constructor(opts: IvshmemServerOptions = {}) {
    super();
    const { binding, procNetUnix, ...rest } = opts;
    this.options = resolveServerOptions(rest);
    this.binding = binding;
    this.procNetUnix = procNetUnix;
  }

  get socketPath(): string {
    return this.options.socketPath;
  }

  /** fstat size of the memory (the rounded `-l`); 0 before start(). */
  get memorySize(): number {
    return this.memory?.size ?? 0;
  }

  /** The memory fd handed out in INIT, or -1. */
  get memoryFd(): number {
    return this.memory?.fd ?? -1;
  }

  get listening(): boolean {
    return this.state === 'running';
  }

  /** IDs of connected peers, in connection (list) order. */
  get peerIds(): number[] {
    return this.peers.map((p) => p.id);
  }

  /** Messages waiting in peer `id`'s outgoing queue (0 when not connected); tests, diagnostics. */
  queuedMessages(id: number): number {
    return this.peers.find((p) => p.id === id)?.queued ?? 0;
  }

  /** Acquire-load of state-table entry `id` through the server's mapping (tests, diagnostics). */
  stateEntry(id: number): number {
    if (!this.memory) throw new ServerError('VSHM_ERR_NOT_RUNNING', '', 'server is not running');
    return this.memory.entry(id);
  }

  /**
   * Check the socket path, create and zero the memory, listen (mode 0600 from creation, §1.9),
   * write the pid file, start accepting. On failure everything created so far is removed and the
   * error is rethrown (ServerError or the addon's SyscallError).
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new ServerError('VSHM_ERR_STATE', '', `start() called in state ${this.state}`);
    this.state = 'starting';
    this.starting = this.doStart();
    try {
      await this.starting;
    } finally {
      this.starting = undefined;
    }
  }

  private async doStart(): Promise<void> {
    try {
      this.binding ??= (await import('@vshm/addon')).default;
      const b = this.binding;
      const o = this.options;
      prepareSocketPath(o.socketPath, this.procNetUnix);
      // Before the O_EXCL create: a live server's object is refused, not resized and zeroed.
      if (o.memory.kind === 'shm') checkShmNotInUse(o.memory.name);
      this.memory = createServerMemory(b, o.memory, o.memorySize);
      this.listenFd = b.socketListen(o.socketPath, 0o600, LISTEN_BACKLOG);
      this.socketFile = socketIdentity(o.socketPath);
      if (o.pidFile !== undefined) {
        createPidFile(o.pidFile); // O_EXCL | O_NOFOLLOW: never through a symlink (server-pid-file.ts)
        this.pidFileWritten = true;
      }
      this.listenWatcher = b.createWatcher(this.listenFd, (status) => this.onListenReady(status));
      this.listenWatcher.start(b.POLL_READABLE);
    } catch (err) {
      this.releaseResources(true);
      this.state = 'stopped';
      throw err;
    }
    this.state = 'running';
    debug('listening on %s: %d bytes, %d peers, %d vectors, protocol %s', this.socketPath, this.memorySize,
      this.options.maxPeers, this.options.vectors, this.options.protocol.toString(16));
    this.emit('listening');
  }

  /**
   * Orderly shutdown (§1.7): drop every peer in list order as in §1.6 (the remaining ones get
   * PEER_GONE for each), close all sockets, unlink the socket path and a `-M` object, remove the
   * pid file. Idempotent; resolves when done.
   */
  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    // Not "stopped" at once: start() would go on to listen after its await, with no one to stop it.
    if (this.state === 'starting') {
      await this.starting?.catch(() => undefined);
      return this.stop();
    }
    if (this.state !== 'running') {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopping';
    this.listenWatcher?.close();
    this.listenWatcher = undefined;
    // Directly, not through drop(): stop() may be called from an event handler mid-sequence.
    for (const p of [...this.peers]) this.dropNow(p, 'server shutdown');
    this.pendingDrops.length = 0;
    this.releaseResources(false);
    this.state = 'stopped';
    debug('stopped');
    this.emit('close');
  }

  private releaseResources(failedStart: boolean): void {
    const b = this.binding;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.listenWatcher?.close();
    this.listenWatcher = undefined;
    if (this.listenFd >= 0 && b) {
      b.close(this.listenFd);
      this.listenFd = -1;
      removeSocketPath(this.options.socketPath, this.socketFile);
      this.socketFile = undefined;
    }
    if (this.pidFileWritten) {
      removePidFile(this.options.pidFile!);
      this.pidFileWritten = false;
    }
    const mem = this.memory;
    if (mem && b) {
      this.memory = undefined;
      mem.close();
      // §1.7 unlinks a -M object at shutdown; a failed start removes only what it created.
      if (mem.shmName !== undefined && (!failedStart || mem.created)) {
        try {
          b.shmUnlink(mem.shmName);
        } catch (err) {
          debug('shm_unlink(%s): %s', mem.shmName, (err as Error).message);
        }
      }
    }
  }

  private warn(err: Error): void {
    debug('warning: %s', err.message);
    if (this.listenerCount('warning') > 0) this.emit('warning', err);
  }

  private onListenReady(status: number): void {
    if (this.state !== 'running') return;
    if (status < 0) {
      this.warn(new ServerError('VSHM_ERR_ACCEPT', '1.3', `listening socket poll error ${status}`));
      this.pauseAccepting();
      return;
    }
    const b = this.binding!;
    for (let i = 0; i < ACCEPT_BATCH && this.state === 'running'; i++) {
      let fd: number;
      try {
        fd = b.socketAccept(this.listenFd);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'ECONNABORTED' || code === 'EINTR' || code === 'EPROTO') continue;
        this.warn(new ServerError('VSHM_ERR_ACCEPT', '1.3', `accept failed: ${(err as Error).message}`, { cause: err }));
        this.pauseAccepting();
        return;
      }
      if (fd < 0) return;
      this.admit(fd);
    }
  }

  /** Stop polling the listener for a moment (EMFILE would otherwise spin) — keeps serving. */
  private pauseAccepting(): void {
    this.listenWatcher?.stop();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state === 'running') this.listenWatcher?.start(this.binding!.POLL_READABLE);
    }, ACCEPT_RETRY_MS);
  }

  /**
   * Whether the client on `fd` may be served: its SO_PEERCRED uid is ours, root's or one of
   * `peerUids` ('any': no check). Otherwise `fd` is closed and a VSHM_ERR_PEER_UID warning names
   * the client — before anything is sent: the 0600 socket mode keeps other users out only as long
   * as nobody widens it (chmod, an ACL, a socket handed on), and INIT would give them the memory.
   */
  private clientAllowed(fd: number): boolean {
    const trusted = this.options.peerUids;
    if (trusted === 'any') return true;
    const b = this.binding!;
    const own = process.geteuid?.() ?? 0;
    let why: string;
    try {
      const c = b.peerCred(fd);
      if (peerUidAllowed(c.uid, own) || trusted.includes(c.uid)) return true;
      why = `client pid ${c.pid} runs as uid ${c.uid}, not as us (uid ${own}) or root (--peer-uids ${c.uid} or VSHM_PEER_UIDS=${c.uid} trusts it)`;
    } catch (err) {
      why = `the client's credentials cannot be read (${(err as Error).message})`;
    }
    b.close(fd);
    this.warn(new ServerError('VSHM_ERR_PEER_UID', '1.3', `connection refused: ${why}`));
    return false;
  }

  /** Lowest integer ≥ 0 not held by a connected peer (§1.4). */
  private lowestFreeId(): number {
    const used = new Set(this.peers.map((p) => p.id));
    let id = 0;
    while (used.has(id)) id++;
    return id;
  }

  /** The per-connection sequence (1)–(8) of §1.3. */
  private admit(fd: number): void {
    const b = this.binding!;
    const o = this.options;
    const mem = this.memory!;
    // (1) non-blocking (accept4 already set it; cheap to make certain).
    try {
      b.setNonBlocking(fd, true);
    } catch (err) {
      b.close(fd);
      this.warn(err as Error);
      return;
    }
    // Before (2): a client of another uid is closed without any message and takes no id.
    if (!this.clientAllowed(fd)) return;
    // (2) ID, or close without any message and keep serving (§1.4).
    let id = this.lowestFreeId();
    if (id >= o.maxPeers && this.reapHungUp() > 0) id = this.lowestFreeId();
    if (id >= o.maxPeers) {
      b.close(fd);
      debug('refused a connection: all %d ids in use', o.maxPeers);
      this.emit('peer-refused');
      return;
    }
    // (3) the newcomer's eventfds; non-blocking, as QEMU creates them (peers must keep it, §1.8).
    const eventfds: number[] = [];
    try {
      for (let v = 0; v < o.vectors; v++) eventfds.push(b.eventfd(0, true));
    } catch (err) {
      for (const e of eventfds) b.close(e);
      b.close(fd);
      this.warn(err as Error);
      return;
    }
    const conn = new PeerConnection(b, id, fd, eventfds, queuedFdLimit(o.maxPeers, o.vectors));
    // (4) INIT with the memory fd; if it cannot be sent the connection is closed (§1.3).
    const init = encodeInit({
      id,
      maxPeers: o.maxPeers,
      vectors: o.vectors,
      protocol: protocolForPeer(o.protocol, id),
      outputSectionSize: o.outputSectionSize,
    });
    let sent: number;
    try {
      sent = b.sendMsg(fd, init, [mem.fd]);
    } catch {
      sent = -1;
    }
    if (sent !== INIT_LEN) {
      conn.closeSocket();
      conn.closeEventfds();
      this.warn(new ServerError('VSHM_ERR_INIT_SEND', '1.3', `could not send INIT to new peer ${id}; connection closed`));
      return;
    }
    this.deferDrops++;
    try {
      // (5) every connected peer, in list order, gets EVENT_FD(new, v), v ascending.
      for (const p of this.peers) {
        for (let v = 0; v < o.vectors; v++) {
          const err = p.send(encodeEventFd(id, v), eventfds[v]);
          if (err) {
            this.drop(p, err);
            break;
          }
        }
      }
      // (6) the newcomer gets every connected peer's eventfds, in list order, v ascending;
      // (7) then its own.
      let err: string | undefined;
      for (const p of [...this.peers, conn]) {
        for (let v = 0; v < o.vectors && !err; v++) err = conn.send(encodeEventFd(p.id, v), p.eventfds[v]);
      }
      // (8) listed. A newcomer that could not take its burst is dropped through §1.6 so the others,
      // which already hold its eventfds, get PEER_GONE.
      this.peers.push(conn);
      conn.watch((reason) => this.drop(conn, reason));
      debug('peer %d connected (fd %d)', id, fd);
      this.emit('peer-connected', id);
      if (err) this.drop(conn, err);
    } finally {
      this.deferDrops--;
    }
    this.runDrops();
  }

  /**
   * Before refusing a newcomer for want of an id: drop (§1.6) every listed peer whose socket has
   * already hung up or sent something, though its watcher has not run yet in this loop turn. A
   * guest that reboots closes its old connection and opens a new one at once; both events can
   * arrive in one turn, and the accept must not win the race against the departure. Returns how
   * many peers were dropped.
   */
  private reapHungUp(): number {
    const b = this.binding!;
    let n = 0;
    for (const p of [...this.peers]) {
      let ready: number;
      try {
        ready = b.pollNow(p.socket, b.POLL_READABLE | b.POLL_DISCONNECT);
      } catch (err) {
        this.drop(p, `poll failed: ${(err as Error).message}`);
        n++;
        continue;
      }
      if (ready === 0) continue;
      this.drop(p, ready & b.POLL_DISCONNECT ? 'hang-up' : 'readable');
      n++;
    }
    return n;
  }

  /** Schedule a departure (§1.6); runs at once unless a sequence is in progress. */
  private drop(peer: PeerConnection, reason: string): void {
    this.pendingDrops.push([peer, reason]);
    if (this.deferDrops === 0) this.runDrops();
  }

  private runDrops(): void {
    if (this.deferDrops > 0) return;
    this.deferDrops++;
    try {
      for (let next = this.pendingDrops.shift(); next; next = this.pendingDrops.shift()) this.dropNow(next[0], next[1]);
    } finally {
      this.deferDrops--;
    }
  }

  /**
   * §1.6, in order: close the socket; unlist; store u32 0 in the state entry; full fence; PEER_GONE
   * to every remaining peer; close our copies of its eventfds. No eventfd is signalled.
   */
  private dropNow(peer: PeerConnection, reason: string): void {
    const idx = this.peers.indexOf(peer);
    if (idx < 0) return;
    peer.closeSocket();
    this.peers.splice(idx, 1);
    this.memory?.clearEntry(peer.id);
    const msg = encodePeerGone(peer.id);
    for (const p of this.peers) {
      const err = p.send(msg);
      if (err) this.pendingDrops.push([p, err]);
    }
    peer.closeEventfds();
    debug('peer %d gone: %s', peer.id, reason);
    this.emit('peer-gone', peer.id, reason);
  }
}
