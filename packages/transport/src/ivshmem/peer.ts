/**
 * IvshmemPeer: a client of an ivshmem v2 server (vshm-server or the QEMU ivshmem2-server) that
 * emulates the ivshmem v2 device model (spec §3) over the addon's syscalls.
 *
 * - Socket: `ServerReader` (peer-reader.ts) frames and validates the server messages (§1.8); the
 *   socket is only ever read, never written (§1.1).
 * - Memory: `mapRegion` (peer-mapping.ts) maps the state table read-only plus a private writable
 *   copy, and the window with foreign output sections read-only (§2).
 * - Interrupts: one fd watcher per own eventfd. On readable the eventfd is read (cleared), then the
 *   event is delivered to `onInterrupt` if enabled (one-shot clears the enable bit) or discarded.
 *
 * Lifecycle: `connect()` resolves once the initial burst is complete (all own eventfds, §1.8).
 * After that, failures are reported as 'error' (then 'close'): listen for 'error'. Events that
 * arrive during the burst are consumed with interrupts disabled (discarded, §3), so read
 * `peerState()` after connect; 'peer-state' reports later changes. Server EOF: 'server-gone',
 * then (unless `keepPeersOnServerGone`) 'peer-gone' per other peer and the own vector 0.
 *
 * Received eventfds are used as the server made them: the peer never changes O_NONBLOCK (the
 * file description is shared, §1.8). vshm-server and QEMU create them non-blocking.
 */
import { EventEmitter } from 'node:events';
import type { Binding, FdWatcher } from '@vshm/addon';
import { createLogger as createDebug } from '../log.js';
import { ArgumentError, ProtocolError, VshmError } from '../errors.js';
import type { IvshmemDevice } from './device.js';
import { SharedMemoryLayout } from './layout.js';
import { checkMemorySeals, mapRegion, type PeerMapping } from './peer-mapping.js';
import { MAX_MESSAGES_PER_PUMP, ServerReader, closeQuietly, type ReaderSink } from './peer-reader.js';
import type { InitMessage } from './protocol.js';

const debug = createDebug('vshm:peer');

export interface PeerOptions {
  /** The native binding (default: @vshm/addon, loaded on first use). Tests may pass a fake. */
  binding?: Binding;
  /** Bound for the initial burst (INIT + all own eventfds), ms. Default 5000. */
  timeoutMs?: number;
  /** Accept a layout whose sections are not page-aligned, with merged protections (§2). */
  acceptReducedProtection?: boolean;
  /**
   * On server EOF keep the other peers present and their eventfds usable, as QEMU does (§1.8
   * MAY). Default false: every other peer is treated as gone ('peer-gone' each, vector 0).
   */
  keepPeersOnServerGone?: boolean;
  /**
   * Server uids connect() accepts besides our own and root's, or 'any' (SO_PEERCRED of the
   * listening process). Default: `$VSHM_SERVER_UIDS` (comma-separated uids, or `any`), else none.
   * The default socket lives in /tmp, where another user can listen first: joining their server
   * would hand them the device's data.
   */
  serverUids?: readonly number[] | 'any';
}

async function loadBinding(): Promise<Binding> {
  const mod = await import('@vshm/addon');
  return mod.default;
}

function checkOptions(opts: PeerOptions): number {
  const t = opts.timeoutMs ?? 5000;
  if (!Number.isSafeInteger(t) || t <= 0) throw new ArgumentError(`timeoutMs must be a positive integer, got ${String(t)}`);
  return t;
}

/**
 * Connect without ever blocking the event loop: a UNIX stream connect only waits while the
 * server's listen backlog is full (a stalled or stopped server), so retry EAGAIN with a short
 * backoff until `timeoutMs` — the same bound as the initial burst.
 */
async function connectWithin(binding: Binding, socketPath: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 50)) {
    const sock = binding.socketConnect(socketPath, true);
    if (sock >= 0) return sock;
    if (Date.now() >= deadline) {
      throw new ProtocolError('VSHM_ERR_CONNECT_TIMEOUT', '1.1', `${socketPath}: the server accepts no connection (backlog full) within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** The extra server uids to trust: the option, else `$VSHM_SERVER_UIDS`, else none. */
function trustedServerUids(opt: PeerOptions['serverUids']): readonly number[] | 'any' {
  if (opt !== undefined) {
    if (opt === 'any' || (Array.isArray(opt) && opt.every((u) => Number.isSafeInteger(u) && u >= 0))) return opt;
    throw new ArgumentError(`serverUids must be 'any' or an array of uids, got ${String(opt)}`);
  }
  const env = process.env.VSHM_SERVER_UIDS?.trim();
  if (env === undefined || env === '') return [];
  if (env === 'any') return 'any';
  const uids = env.split(',').map((t) => t.trim());
  if (!uids.every((t) => /^[0-9]{1,10}$/.test(t))) {
    throw new ArgumentError(`VSHM_SERVER_UIDS must be 'any' or comma-separated uids, got ${JSON.stringify(env)}`);
  }
  return uids.map(Number);
}

/**
 * Refuse a server run by another user (SO_PEERCRED, read before any byte): our uid and root are
 * trusted (root can read our memory anyway), others only when listed.
 */
function checkServerUid(binding: Binding, sock: number, socketPath: string, trusted: readonly number[] | 'any'): void {
  if (trusted === 'any') return;
  const own = process.geteuid?.() ?? 0;
  let cred: { pid: number; uid: number };
  try {
    cred = binding.peerCred(sock);
  } catch (err) {
    throw new ProtocolError('VSHM_ERR_SERVER_UID', '1.1', `${socketPath}: the server's credentials cannot be read (${(err as Error).message}); refusing it`);
  }
  if (cred.uid === own || cred.uid === 0 || trusted.includes(cred.uid)) return;
  throw new ProtocolError('VSHM_ERR_SERVER_UID', '1.1',
    `${socketPath}: the server runs as uid ${cred.uid} (pid ${cred.pid}), not as us (uid ${own}) or root; refusing to share memory with it (VSHM_SERVER_UIDS=${cred.uid} trusts it)`);
}

/**
 * An ivshmem v2 peer (§1.8, §2, §3): connects to a vshm-server (or QEMU's ivshmem2-server) over
 * its UNIX socket, maps the shared memory, and is the `IvshmemDevice` the virtio transport runs
 * on — doorbells out, interrupts in, the state table, peer arrivals and departures.
 */
export class IvshmemPeer extends EventEmitter implements IvshmemDevice {
  /**
   * Connect to the server socket at `socketPath` and complete the initial burst. Rejects with a
   * ProtocolError (bad messages, burst timeout, EOF before the burst: e.g. no free ID, §1.4), a
   * LayoutError (§2) or an addon SyscallError.
   */
  static async connect(socketPath: string, opts: PeerOptions = {}): Promise<IvshmemPeer> {
    if (typeof socketPath !== 'string' || socketPath === '') throw new ArgumentError('socketPath must be a non-empty string');
    checkOptions(opts);
    const timeoutMs = checkOptions(opts);
    const binding = opts.binding ?? (await loadBinding());
    const trusted = trustedServerUids(opts.serverUids);
    const sock = await connectWithin(binding, socketPath, timeoutMs);
    try {
      checkServerUid(binding, sock, socketPath, trusted);
    } catch (err) {
      closeQuietly(binding, sock);
      throw err;
    }
    debug('connected to %s (fd %d): waiting for INIT', socketPath, sock);
    return IvshmemPeer.fromSocket(sock, { ...opts, binding });
  }

  /**
   * Like connect() over an already connected, non-blocking stream socket `sock`, which the peer
   * owns from this call on (closed on failure too).
   */
  static async fromSocket(sock: number, opts: PeerOptions = {}): Promise<IvshmemPeer> {
    let timeoutMs: number;
    let binding: Binding;
    try {
      timeoutMs = checkOptions(opts);
      binding = opts.binding ?? (await loadBinding());
    } catch (err) {
      // Ours from the call on: bad options or no addon must not leave it open.
      if (opts.binding !== undefined) closeQuietly(opts.binding, sock);
      else await loadBinding().then((bd) => closeQuietly(bd, sock), () => undefined);
      throw err;
    }
    const peer = new IvshmemPeer(binding, sock, opts);
    return peer.start(timeoutMs);
  }

  private readonly binding: Binding;
  private readonly sock: number;
  private readonly reader: ServerReader;
  private readonly acceptReduced: boolean;
  private readonly keepPeers: boolean;
  private sockWatcher: FdWatcher | null = null;

  private idValue = -1;
  private maxPeersValue = 0;
  private vectorsValue = 0;
  private protocolValue = 0;
  private layoutValue: SharedMemoryLayout | null = null;
  private memoryInoValue = 0;
  private memoryDevValue: bigint | null = null;
  private mapping: PeerMapping | null = null;
  /** Eventfd of (peer, vector) at peer·vectors + vector, -1 if not held. */
  private fds = new Int32Array(0);
  private watchers: FdWatcher[] = [];
  /** Last state seen per peer, for 'peer-state' on vector 0. */
  private seen = new Uint32Array(0);
  private stateValue = 0;
  private open = true;
  private serverGone = false;
  /** Inside onSocket(): receivePending() must not start a second pump. */
  private pumping = false;
  private connecting: { resolve: (p: IvshmemPeer) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout } | null =
    null;

  interruptsEnabled = false;
  oneShot = false;
  onInterrupt: ((vector: number) => void) | null = null;

  private constructor(binding: Binding, sock: number, opts: PeerOptions) {
    super();
    this.binding = binding;
    this.sock = sock;
    this.acceptReduced = opts.acceptReducedProtection ?? false;
    this.keepPeers = opts.keepPeersOnServerGone ?? false;
    // The peer is the reader's sink through its @internal methods; not part of its public type.
    this.reader = new ServerReader(binding, sock, this satisfies ReaderSink);
  }

  get id(): number {
    return this.idValue;
  }
  get maxPeers(): number {
    return this.maxPeersValue;
  }
  get vectors(): number {
    return this.vectorsValue;
  }
  get protocol(): number {
    return this.protocolValue;
  }
  get layout(): SharedMemoryLayout {
    return this.layoutValue!;
  }
  /** Inode of the shared-memory object (fstat at INIT): how status reports name the memory. */
  get memoryIno(): number {
    return this.memoryInoValue;
  }
  /**
   * Device of the shared-memory object (st_dev from the binding's fstat at INIT, glibc's
   * makedev() encoding as node:fs reports it), or null when the binding gave none (a test double
   * without `dev`). An inode number is unique only within its filesystem: device and inode
   * together name the object.
   */
  get memoryDev(): bigint | null {
    return this.memoryDevValue;
  }
  /** [4096, S); detached (length 0) after close(). */
  get window(): ArrayBuffer {
    return this.mapping!.window;
  }
  /** Read-only view of the state table (a store through it faults, §2). Detached after close(). */
  get stateTable(): Uint32Array {
    return this.mapping!.stateTable;
  }
  /** False when a non-page-aligned layout was accepted with merged protections. */
  get fullProtection(): boolean {
    return this.mapping!.fullProtection;
  }
  get state(): number {
    return this.stateValue;
  }

  isPresent(id: number): boolean {
    if (!this.open) return false;
    if (id === this.idValue) return true;
    return Number.isInteger(id) && id >= 0 && id < this.maxPeersValue && this.fds[id * this.vectorsValue] >= 0;
  }

  peerState(id: number): number {
    if (!this.isPresent(id)) return 0;
    return Atomics.load(this.mapping!.stateTable, id);
  }

  setState(v: number): void {
    if (!this.open || this.mapping === null) return;
    const value = v >>> 0;
    Atomics.store(this.mapping.privateTable, this.idValue, value);
    this.binding.fence(); // §3: full fence before anyone is signalled
    if (value === this.stateValue) return;
    this.stateValue = value;
    for (let p = 0; p < this.maxPeersValue; p++) {
      if (p !== this.idValue) this.doorbell(p, 0);
    }
  }

  doorbell(target: number, vector: number): void {
    // Bounds first: a stray index must not read another peer's slot. fds[] is -1 for absent
    // peers and for vectors they do not (yet) have, so one check covers presence and count.
    if (!(vector >= 0 && vector < this.vectorsValue && target >= 0 && target < this.maxPeersValue)) return;
    const fd = this.fds[target * this.vectorsValue + vector];
    if (fd < 0 || (vector | 0) !== vector || (target | 0) !== target) return;
    // The eventfd write is a syscall: it cannot overtake earlier stores to the mapping.
    try {
      this.binding.eventfdWrite(fd, 1);
    } catch (err) {
      // The fd passed the §1.8 kind check, but that check cannot name every fd (no /proc: a
      // regular file passes) and a write can still fail: fail the device, but later — a doorbell
      // is called from inside setState()/close() and virtio code that must not see it throw.
      queueMicrotask(() => this.fail(new ProtocolError('VSHM_ERR_EVENTFD', '3', `doorbell(${target}, ${vector}) failed: ${(err as Error).message}`, { cause: err })));
    }
  }

  receivePending(): void {
    // One recvmsg (EAGAIN when nothing is queued): callers use it on the set-up path only.
    if (this.pumping || this.connecting !== null) return;
    this.onSocket(0);
  }

  close(): void {
    if (!this.open) return;
    // §3 reset before leaving: Interrupt Control := 0, State write(0), then close the socket.
    this.interruptsEnabled = false;
    if (this.mapping !== null) this.setState(0);
    this.open = false;
    this.release();
    debug('peer %d closed', this.idValue);
    this.emit('close');
  }

  // ---- ReaderSink: called by the ServerReader for valid messages -------------------------

  /** @internal */
  init(msg: InitMessage, memFd: number, memorySize: number): void {
    try {
      const layout = new SharedMemoryLayout(memorySize, msg.maxPeers, msg.outputSectionSize);
      if (checkMemorySeals(this.binding, memFd) === 'unsealed') warnUnsealedOnce();
      this.mapping = mapRegion(this.binding, memFd, layout, msg.id, this.acceptReduced);
      this.layoutValue = layout;
      // Device and inode from the binding's one fstat: the fd is the binding's (a test double's
      // fd numbers need not be real ones, and node:fs would stat whatever real fd has the number).
      const st = this.binding.fstat(memFd);
      this.memoryInoValue = st.ino;
      this.memoryDevValue = typeof st.dev === 'bigint' ? st.dev : null;
    } finally {
      closeQuietly(this.binding, memFd); // the mappings stay valid without the fd
    }
    this.idValue = msg.id;
    this.maxPeersValue = msg.maxPeers;
    this.vectorsValue = msg.vectors;
    this.protocolValue = msg.protocol;
    this.fds = new Int32Array(msg.maxPeers * msg.vectors).fill(-1);
    this.seen = new Uint32Array(msg.maxPeers);
    debug('INIT id %d max_peers %d vectors %d protocol 0x%s size %d', msg.id, msg.maxPeers, msg.vectors, msg.protocol.toString(16), memorySize);
  }

  /** @internal */
  eventFd(id: number, vector: number, fd: number): void {
    this.fds[id * this.vectorsValue + vector] = fd;
    // Only at connect time and when a peer joins (vectors messages each): not the data path.
    debug('peer %d: EVENT_FD peer %d vector %d%s', this.idValue, id, vector, id === this.idValue ? ' (own)' : '');
    if (id !== this.idValue) return;
    let w: FdWatcher;
    try {
      w = this.binding.createWatcher(fd, this.makeInterruptHandler(fd, vector));
    } catch (err) {
      // Not pollable (a regular file that passed the kind check for want of /proc: a hostile
      // server, §1.8): the fd stays in fds[] and is closed by release(); the error names the
      // cause instead of libuv's EPERM.
      throw new ProtocolError('VSHM_ERR_EVENTFD', '1.8', `own eventfd of vector ${vector} cannot be watched: ${(err as Error).message}`, { cause: err });
    }
    this.watchers.push(w);
    w.start(this.binding.POLL_READABLE);
  }

  /** @internal */
  peerGone(id: number): void {
    this.dropPeer(id);
    this.doorbell(this.idValue, 0); // §3: signal the own vector 0 after marking it absent
  }

  // ---- internals -------------------------------------------------------------------------

  private start(timeoutMs: number): Promise<IvshmemPeer> {
    return new Promise<IvshmemPeer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new ProtocolError('VSHM_ERR_BURST_TIMEOUT', '1.8', `initial burst incomplete after ${timeoutMs} ms`));
      }, timeoutMs);
      this.connecting = { resolve, reject, timer };
      try {
        this.sockWatcher = this.binding.createWatcher(this.sock, (status) => this.onSocket(status));
        this.sockWatcher.start(this.binding.POLL_READABLE | this.binding.POLL_DISCONNECT);
      } catch (err) {
        this.fail(err);
        return;
      }
      this.onSocket(0); // messages may already be waiting
    });
  }

  private onSocket(status: number): void {
    if (!this.open || this.serverGone) return;
    let result;
    this.pumping = true;
    try {
      // A poll error (POLLERR; libuv reports it as a status and stops the watcher) is also how a
      // reset shows: read all the socket still holds, so that a reset ends as EOF does (§1.8).
      result = this.reader.pump(status < 0 ? Infinity : MAX_MESSAGES_PER_PUMP);
    } catch (err) {
      const socketFailed = status < 0 && !(err instanceof VshmError);
      this.fail(socketFailed ? new ProtocolError('VSHM_ERR_SOCKET', '1.8', `server socket poll failed (uv error ${status}): ${(err as Error).message}`, { cause: err }) : err);
      return;
    } finally {
      this.pumping = false;
    }
    if (status < 0 && result !== 'eof') {
      this.fail(new ProtocolError('VSHM_ERR_SOCKET', '1.8', `server socket poll failed (uv error ${status})`));
      return;
    }
    if (this.connecting !== null && this.reader.burstComplete) {
      const c = this.connecting;
      this.connecting = null;
      clearTimeout(c.timer);
      debug('peer %d: initial burst complete', this.idValue);
      c.resolve(this);
    }
    if (result === 'eof') this.onServerEof();
  }

  /** §1.8 server gone: stop reading, report, and by default treat all other peers as gone. */
  private onServerEof(): void {
    if (this.connecting !== null) {
      this.fail(new ProtocolError('VSHM_ERR_SERVER_EOF', '1.8', 'server closed the connection before the initial burst completed (no free ID?)'));
      return;
    }
    this.serverGone = true;
    this.reader.stop();
    this.sockWatcher?.close();
    this.sockWatcher = null;
    closeQuietly(this.binding, this.sock);
    debug('peer %d: server gone', this.idValue);
    this.emit('server-gone');
    if (this.keepPeers || !this.open) return;
    let any = false;
    for (let p = 0; p < this.maxPeersValue && this.open; p++) {
      if (p !== this.idValue && this.isPresent(p)) {
        any = true;
        this.dropPeer(p);
      }
    }
    if (any) this.doorbell(this.idValue, 0);
  }

  private dropPeer(id: number): void {
    const base = id * this.vectorsValue;
    for (let v = 0; v < this.vectorsValue; v++) {
      const fd = this.fds[base + v];
      if (fd >= 0) {
        this.fds[base + v] = -1;
        closeQuietly(this.binding, fd);
      }
    }
    debug('peer %d: peer %d gone', this.idValue, id);
    this.emit('peer-gone', id);
    // Absent reads as 0, and that change is reported now, not at the next vector-0 scan: by then
    // a newcomer on this id (a quick restart) may be READY again — the departed peer's last state
    // — and neither its departure's 0 nor its newcomer's READY would ever be reported.
    if (this.seen[id] !== 0 && this.open) {
      this.seen[id] = 0;
      this.emit('peer-state', id, 0);
    }
  }

  /** The per-vector watcher callback: allocation-free on the hot path. */
  private makeInterruptHandler(fd: number, vector: number): (status: number) => void {
    return (status: number): void => {
      if (!this.open) return;
      if (status < 0) {
        this.fail(new ProtocolError('VSHM_ERR_EVENTFD', '3', `eventfd of vector ${vector} failed (uv error ${status})`));
        return;
      }
      let count: number;
      try {
        count = this.binding.eventfdRead(fd);
      } catch (err) {
        // Not an eventfd (a hostile server, §1.8): an error event, never an uncaught exception.
        this.fail(new ProtocolError('VSHM_ERR_EVENTFD', '3', `eventfd of vector ${vector} unreadable: ${(err as Error).message}`, { cause: err }));
        return;
      }
      if (count === 0) return; // spurious wake-up: nothing was signalled
      if (vector === 0) this.scanStates();
      if (!this.interruptsEnabled || !this.open) return; // §3: discarded, not latched
      if (this.oneShot) this.interruptsEnabled = false;
      const sink = this.onInterrupt;
      if (sink !== null) sink(vector);
    };
  }

  /** On vector 0: report other peers whose entry (0 when absent) differs from the last seen. */
  private scanStates(): void {
    const seen = this.seen;
    for (let p = 0; p < this.maxPeersValue; p++) {
      if (p === this.idValue) continue;
      const s = this.peerState(p);
      if (s !== seen[p]) {
        seen[p] = s;
        // Vector 0 also carries every write transaction; only a change is logged.
        debug('peer %d: peer %d state %d', this.idValue, p, s);
        this.emit('peer-state', p, s);
      }
    }
  }

  /**
   * Fatal: reset and release everything first (so nothing leaks even if 'error' has no
   * listener and throws), then reject connect() or emit 'error' and 'close'.
   */
  private fail(err: unknown): void {
    if (!this.open) return;
    debug('peer %d failed: %s', this.idValue, (err as Error)?.message);
    const c = this.connecting;
    this.connecting = null;
    if (c !== null) clearTimeout(c.timer);
    this.interruptsEnabled = false;
    if (this.mapping !== null) this.setState(0);
    this.open = false;
    this.release();
    if (c !== null) {
      c.reject(err);
      return;
    }
    try {
      this.emit('error', err);
    } finally {
      this.emit('close');
    }
  }

  /** Close watchers, fds, socket and mappings. */
  private release(): void {
    if (this.connecting !== null) {
      clearTimeout(this.connecting.timer);
      this.connecting.reject(new ProtocolError('VSHM_ERR_CLOSED', '1.8', 'closed before the initial burst completed'));
      this.connecting = null;
    }
    for (const w of this.watchers) w.close();
    this.watchers = [];
    this.sockWatcher?.close();
    this.sockWatcher = null;
    this.reader.stop(); // before the close: a pump() may be running below us (a sink listener)
    if (!this.serverGone) closeQuietly(this.binding, this.sock);
    for (let i = 0; i < this.fds.length; i++) {
      if (this.fds[i] >= 0) closeQuietly(this.binding, this.fds[i]);
      this.fds[i] = -1;
    }
    this.mapping?.unmap();
  }
}

let warnedUnsealed = false;

/**
 * Once per process: the memory can be resized by any holder of its fd (the C server's `-M`/`-m`
 * objects are not sealed), and a shrink kills this process with SIGBUS (docs/decisions.md).
 */
function warnUnsealedOnce(): void {
  if (warnedUnsealed) return;
  warnedUnsealed = true;
  process.emitWarning(
    'the shared memory from the server is not sealed against shrinking: if anything shrinks it while mapped, this process dies with SIGBUS',
    { code: 'VSHM_WARN_MEMORY_UNSEALED' },
  );
}
