/**
 * An NBD server on a UNIX socket exporting a BlockDriver to standard clients (qemu-img, qemu-io,
 * libnbd's nbdcopy/nbdinfo, the kernel's nbd-client): fixed-newstyle negotiation (GO, INFO,
 * EXPORT_NAME, LIST, ABORT; other options → NBD_REP_ERR_UNSUP), simple replies, and READ, WRITE
 * (FUA), FLUSH, TRIM, WRITE_ZEROES (NO_HOLE), DISC.
 *
 * Hostile clients: every length is checked before anything is read or allocated (options ≤ 64 KiB,
 * payloads ≤ 32 MiB, else the connection is closed: the payload cannot be skipped cheaply);
 * bad magic closes the connection; out-of-range requests get EINVAL (read) or ENOSPC (writes),
 * misaligned ones EINVAL (the minimum block size advertised in NBD_INFO_BLOCK_SIZE: the device's
 * logical block size, VIRTIO_BLK_F_BLK_SIZE, else 512 — a device with 4 KiB blocks fails requests
 * that are only 512-aligned, and qemu or libnbd align to what is advertised). Above 512, a client
 * must ask for the sizes: INFO / GO without NBD_INFO_BLOCK_SIZE get NBD_REP_ERR_BLOCK_SIZE_REQD
 * (after the sizes), EXPORT_NAME — which cannot learn them — is refused by closing.
 * A reply — the acknowledgement — is sent only once the driver completed the whole request
 * (every split part, and the flush for FUA); a client that vanishes just loses its replies, the
 * daemon goes on; one that half-closes (shutdown(SHUT_WR), as libnbd does right after DISC) still
 * gets the replies of its requests in flight, then the close. After DISC or ABORT the server
 * closes the connection itself once its last reply is out, whether or not the client closes its
 * end. At most MAX_INFLIGHT requests per connection are in the driver, holding at most about
 * HELD_HIGH_WATER bytes (payloads of WRITEs not yet completed, data of READs and replies not yet
 * sent): past either the server stops reading the socket until requests complete and replies go
 * out (backpressure instead of unbounded buffering). At most maxConnections (default 16)
 * connections are served; one more is closed as soon as it is accepted, before the greeting, so a
 * flood of connections holds no descriptor or buffer beyond the limit's.
 *
 * The device may come back with another configuration after a loss (size, read-only, block size,
 * features). NBD negotiates the size and flags once: a connection keeps the export it was told,
 * and the stricter of it and the device now decides — a write on a connection told READ_ONLY gets
 * EPERM on a device now writable, a request past the negotiated size EINVAL / ENOSPC on a device
 * now bigger (and past the device's end on one now smaller); new connections see the device now.
 *
 * CAN_MULTI_CONN is advertised: all connections share one driver, and `BlockDriver.flush()` waits
 * for every write issued before it, on any connection, then flushes the device — so a FLUSH on one
 * connection covers every write another connection already saw acknowledged.
 */
import { EventEmitter } from 'node:events';
import { unlinkSync } from 'node:fs';
import net from 'node:net';
import { createLogger, listenOwnerOnly } from '@vshm/transport';
import { printable } from '@vshm/transport/cli';
import type { BlockDriver } from './driver.js';
import { BlockError } from './errors.js';
import {
  DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS_LIMIT, NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_IHAVEOPT, NBD_MAX_OPTION, NBD_MAX_PAYLOAD, NBD_REQUEST_SIZE,
  NbdCmd, NbdCmdFlag, NbdErr, NbdFlag, NbdInfo, NbdOpt, NbdRep,
  decodeRequest, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoString, encodeOptReply,
  encodeSimpleReply, type NbdRequest,
} from './nbd-protocol.js';

const debug = createLogger('vshm:blk-nbd');

/** Requests per connection handed to the driver at once. */
export const MAX_INFLIGHT = 64;
export { DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS_LIMIT };
/** Bytes buffered from one socket before it is paused. */
const READ_HIGH_WATER = NBD_MAX_PAYLOAD + 1024 * 1024;
/** A lingering close (closeAfterReplies) ends after the client was silent this long … */
const LINGER_IDLE_MS = 200;
/** … and after this long at most. */
const LINGER_MAX_MS = 2000;
/**
 * Data bytes held for one connection before the server stops reading its requests: replies queued
 * to a client that does not read them, data of READs in flight, payloads of WRITEs in flight. A
 * client that only sends READs would otherwise grow the reply queue without limit, and one that
 * sends WRITEs faster than the device completes them would pin MAX_INFLIGHT maximum payloads (2 GiB).
 */
const HELD_HIGH_WATER = 2 * NBD_MAX_PAYLOAD;
/**
 * What one write queued in the socket counts toward HELD_HIGH_WATER at the least: a queued write
 * costs about 300 bytes of heap whatever its size, so 64 MiB of 16-byte error replies (a client
 * sending tiny requests and reading nothing) would be 4 million writes, over 1 GiB. Counted at
 * 4 KiB each, at most 16 384 wait.
 */
const QUEUED_WRITE_COST = 4096;
/**
 * READ reply buffers, shared by the server's connections. A fresh buffer per READ costs a page
 * fault per 4 KiB when the data is first copied in — on this kind of VM more than the copy
 * itself — and its unmapping when it is collected. Clients stream reads of one or two sizes with
 * many in flight (nbdcopy: 4 connections of 64 requests), so the pool keeps up to POOL_BYTES of
 * returned buffers while reads are going on; once no buffer is out (every read answered and its
 * bytes handed to the socket) it keeps POOL_IDLE_KEEP, so an idle daemon holds little memory.
 */
const POOL_BYTES = 64 * 1024 * 1024;
const POOL_IDLE_KEEP = 4;

/** Exported for its unit test only (not in the package index). */
export class ReplyPool {
  private readonly free = new Map<number, Buffer[]>();
  private count = 0;
  private bytes = 0;
  /** Buffers taken and not yet given back or forfeited. */
  private out = 0;

  /** Buffers kept for reuse. */
  get pooled(): number {
    return this.count;
  }

  /** Buffers taken and not yet given back or forfeited (0 once every READ reply is out). */
  get taken(): number {
    return this.out;
  }

  /** A buffer of `len` bytes: a returned one, else a new one. */
  take(len: number): Buffer {
    this.out++;
    const b = this.free.get(len)?.pop();
    if (b === undefined) return Buffer.allocUnsafe(len);
    this.count--;
    this.bytes -= len;
    return b;
  }

  /** `b` is no longer used: keep it for a later READ of its length, within the bounds. */
  give(b: Buffer): void {
    this.out--;
    const most = this.out === 0 ? POOL_IDLE_KEEP : Infinity;
    if (b.length > 0 && this.count < most && this.bytes + b.length <= POOL_BYTES) {
      const list = this.free.get(b.length);
      if (list === undefined) this.free.set(b.length, [b]);
      else list.push(b);
      this.count++;
      this.bytes += b.length;
    }
    if (this.out === 0) this.trim(POOL_IDLE_KEEP);
  }

  /**
   * A taken buffer that must not be reused: a read that failed may still have a part complete
   * into it later (a session lost mid-read), and a failed socket write may still reference it.
   */
  forfeit(): void {
    this.out--;
    if (this.out === 0) this.trim(POOL_IDLE_KEEP);
  }

  private trim(keep: number): void {
    for (const [len, list] of this.free) {
      while (list.length > 0 && this.count > keep) {
        list.pop();
        this.count--;
        this.bytes -= len;
      }
      if (list.length === 0) this.free.delete(len);
    }
  }
}

export interface NbdServerOptions {
  /** UNIX socket path (created with mode 0600). */
  path: string;
  /** Export name; the empty (default) name is always accepted too. Default ''. */
  exportName?: string;
  /** Free-text description (NBD_INFO_DESCRIPTION). */
  description?: string;
  /** A client still negotiating after this long is disconnected. Default 30000 ms. */
  handshakeTimeoutMs?: number;
  /**
   * `close()` lets the requests in flight finish and sends their replies before closing each
   * connection; connections still open after this long are dropped. Default 2000 ms.
   */
  shutdownGraceMs?: number;
  /**
   * Connections served at once, 1…1024; one more is closed as soon as it is accepted, before the
   * greeting (event 'refused'). Default DEFAULT_MAX_CONNECTIONS (16).
   */
  maxConnections?: number;
}

/** The socket closed (or misbehaved) before the bytes we waited for arrived. */
class ConnectionClosed extends Error {}

/** Buffered exact-length reads from a socket, with backpressure. */
class SocketReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private closed = false;
  private stopped = false;
  private paused = false;

  constructor(private readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.have += c.length;
      if (this.have > READ_HIGH_WATER && !this.paused) {
        this.paused = true;
        sock.pause();
      }
      this.wake();
    });
    const end = (): void => {
      this.closed = true;
      this.wake();
    };
    sock.on('end', end);
    sock.on('close', end);
  }

  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.wake();
    });
  }

  /** Read nothing more: the pending read and every later one reject, buffered bytes or not. */
  stop(): void {
    this.stopped = true;
    this.sock.pause();
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    if (w === null) return;
    if (this.stopped) {
      this.waiter = null;
      w.reject(new ConnectionClosed('the server is shutting down'));
    } else if (this.have >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n));
    } else if (this.closed) {
      this.waiter = null;
      w.reject(new ConnectionClosed(`connection closed with ${this.have} of ${w.n} bytes`));
    }
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0];
    if (n === 0) out = Buffer.alloc(0);
    else if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0];
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.have -= n;
    if (this.paused && this.have < READ_HIGH_WATER / 2) {
      this.paused = false;
      this.sock.resume();
    }
    return out;
  }
}

/**
 * The NBD server. Events: 'connection' (id), 'disconnect' (id, reason), 'client-error' (id, err:
 * a protocol violation that closed the connection — informational), 'refused' (connections open:
 * one more than maxConnections was closed on arrival), 'accept-error' (err: an errno error —
 * EMFILE at the open-file limit — on accepting a client; the listener tries again every 100 ms,
 * the client waits in the backlog and is served once a descriptor is free; emitted on every
 * failed try, so rate-limit what is printed), 'error' (the listener failed).
 */
export class NbdServer extends EventEmitter {
  readonly path: string;
  readonly exportName: string;
  private readonly description: string;
  private readonly driver: BlockDriver;
  private server: net.Server | null = null;
  private readonly conns = new Set<net.Socket>();
  /** The connection of each socket, for close(). */
  private readonly handlers = new Map<net.Socket, NbdConnection>();
  /** READ reply buffers, shared by every connection. */
  private readonly pool = new ReplyPool();
  private nextId = 1;
  private readonly handshakeTimeoutMs: number;
  private readonly shutdownGraceMs: number;
  private readonly maxConnections: number;
  /** close() was called: listen() rejects from then on, and one in progress gives up. */
  private closing = false;
  /** Resolves when close() is called: a listen() waiting for the device stops waiting. */
  private readonly closeCalled: Promise<void>;
  private signalClose: () => void = () => {};
  /** The bind of a listen() in progress: close() waits for it, then undoes it. */
  private binding: Promise<net.Server> | null = null;

  constructor(driver: BlockDriver, opts: NbdServerOptions) {
    super();
    if (typeof opts.path !== 'string' || opts.path.length === 0) throw new BlockError('VSHM_ERR_ARGUMENT', '', 'NbdServer: path must be a non-empty string');
    const name = opts.exportName ?? '';
    if (typeof name !== 'string' || Buffer.byteLength(name) > 4096) throw new BlockError('VSHM_ERR_ARGUMENT', '', 'NbdServer: exportName must be a string of ≤ 4096 bytes');
    this.driver = driver;
    this.path = opts.path;
    this.exportName = name;
    this.description = opts.description ?? 'vshm virtio-blk';
    const t = opts.handshakeTimeoutMs ?? 30000;
    if (!Number.isInteger(t) || t < 1) throw new BlockError('VSHM_ERR_ARGUMENT', '', `NbdServer: handshakeTimeoutMs must be a positive integer, got ${String(t)}`);
    this.handshakeTimeoutMs = t;
    const g = opts.shutdownGraceMs ?? 2000;
    if (!Number.isInteger(g) || g < 0) throw new BlockError('VSHM_ERR_ARGUMENT', '', `NbdServer: shutdownGraceMs must be an integer ≥ 0, got ${String(g)}`);
    this.shutdownGraceMs = g;
    const m = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (!Number.isInteger(m) || m < 1 || m > MAX_CONNECTIONS_LIMIT) {
      throw new BlockError('VSHM_ERR_ARGUMENT', '', `NbdServer: maxConnections must be an integer from 1 to ${MAX_CONNECTIONS_LIMIT}, got ${String(m)}`);
    }
    this.maxConnections = m;
    this.closeCalled = new Promise<void>((resolve) => (this.signalClose = resolve));
  }

  /** Number of connected clients. */
  get connections(): number {
    return this.conns.size;
  }

  /**
   * Wait for the device (its size is part of the handshake), then listen. A stale socket file
   * (nobody listening) is replaced; a live one rejects with EADDRINUSE, a path that is no socket
   * with EEXIST (errno-style errors: `code`, `path`). The socket is owner-only
   * (`listenOwnerOnly`: mode 0600 from creation, other uids refused, liveness from /proc/net/unix
   * without connecting): bind() goes through the addon, so a path too long for a UNIX socket or in
   * a missing directory fails with its own errno (libuv's bind would truncate the first silently
   * and call the second EACCES). A close() before or during it wins: listen() rejects with
   * VSHM_ERR_CLOSED, and nothing is left listening (a closed server does not listen again).
   */
  async listen(): Promise<void> {
    const closed = (): BlockError => new BlockError('VSHM_ERR_CLOSED', '', 'NbdServer: closed before it listened');
    if (this.closing) throw closed();
    await Promise.race([this.driver.whenReady(), this.closeCalled]);
    if (this.closing) throw closed();
    // Half-open: a client's EOF must not end our side while replies are still owed to it.
    const owner = { allowHalfOpen: true, onRefused: (line: string) => debug('%s', line), onAcceptError: (err: Error) => this.emit('accept-error', err) };
    const binding = listenOwnerOnly(this.path, owner, (sock) => this.accept(sock));
    this.binding = binding;
    const server = await binding.catch((err: unknown) => {
      // The path refusals carry their errno as the cause: that is this method's error.
      const cause = (err as { cause?: NodeJS.ErrnoException }).cause;
      throw cause?.code === 'EADDRINUSE' || cause?.code === 'EEXIST' ? cause : err;
    }).finally(() => {
      if (this.binding === binding) this.binding = null;
    });
    // close() came while we bound: it waits for this bind and removes what it made.
    if (this.closing) throw closed();
    server.on('error', (err) => this.emit('error', err));
    this.server = server;
  }

  /**
   * Stop listening, close every connection, remove the socket file. A connection in transmission
   * is read no more; its requests in flight finish and their replies go out, then it closes (the
   * spec: a server shutting down SHOULD wait for them); whatever is still open after
   * shutdownGraceMs (a device that completes nothing, a client that reads nothing) is dropped.
   * Clients still negotiating are dropped at once.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.signalClose();
    // A listen() binding now: let it finish, then close what it bound (it rejects CLOSED).
    const bound = this.binding === null ? null : await this.binding.catch(() => null);
    if (bound !== null) {
      await new Promise<void>((resolve) => bound.close(() => resolve()));
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
    }
    const s = this.server;
    this.server = null;
    const closed = s === null ? Promise.resolve() : new Promise<void>((resolve) => s.close(() => resolve()));
    const open = [...this.conns].map((c) => new Promise<void>((resolve) => c.once('close', () => resolve())));
    for (const c of this.conns) {
      const h = this.handlers.get(c);
      if (h === undefined) c.destroy();
      else h.shutdown();
    }
    const grace = setTimeout(() => {
      for (const c of this.conns) c.destroy();
    }, this.shutdownGraceMs);
    await Promise.all(open);
    clearTimeout(grace);
    await closed;
    if (s !== null) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
    }
  }

  private accept(sock: net.Socket): void {
    if (this.conns.size >= this.maxConnections) {
      // Closed before the greeting, its descriptor freed at once: answering it (a greeting, then
      // an error to each option) would keep every refused socket open until its client leaves
      // or the handshake timeout, and a flood of them is what the limit is for.
      debug('connection refused: %d connections already (maxConnections)', this.conns.size);
      sock.destroy();
      this.emit('refused', this.conns.size);
      return;
    }
    const id = this.nextId++;
    this.conns.add(sock);
    sock.on('close', () => this.conns.delete(sock));
    sock.on('error', (err) => debug('client %d: %s', id, err.message));
    sock.setNoDelay?.(true);
    this.emit('connection', id);
    // Until negotiation ends or the socket closes: it also bounds how long a client that aborted
    // (or left) during negotiation can keep the socket by not reading its last option replies.
    const timer = setTimeout(() => {
      debug('client %d: handshake timeout', id);
      sock.destroy();
    }, this.handshakeTimeoutMs).unref();
    sock.once('close', () => clearTimeout(timer));
    const conn = new NbdConnection(id, sock, this.driver, this.pool, this.exportName, this.description, () => clearTimeout(timer));
    this.handlers.set(sock, conn);
    sock.once('close', () => this.handlers.delete(sock));
    conn
      .run()
      .then(
        // DISC / ABORT / the client's EOF: the socket is being closed after the last reply.
        (reason) => this.emit('disconnect', id, reason),
        (err: Error) => {
          if (err instanceof ConnectionClosed) {
            closeAfterReplies(sock); // EOF during negotiation: option replies already sent go out
          } else {
            sock.destroy();
            this.emit('client-error', id, err);
          }
          this.emit('disconnect', id, err.message);
        },
      );
  }
}

/**
 * A string an NBD client chose (an export name), as it may appear in our lines (debug, the
 * 'client-error' message the CLI traces): control characters escaped (the CLI kit's
 * `printable`: a hostile client must not reach the operator's terminal with ESC sequences or
 * forge lines with CR/LF), and at most 256 characters of it — a name may be 64 KiB long.
 */
function shown(text: string): string {
  const cut = text.length > 256 ? `${text.slice(0, 256)}…` : text;
  return printable(cut);
}

/** An NBD client broke the protocol: the connection is closed. */
class ClientError extends BlockError {
  constructor(message: string) {
    super('VSHM_ERR_NBD_CLIENT', '', message);
  }
}

class NbdConnection {
  private readonly reader: SocketReader;
  private noZeroes = false;
  private inflight = 0;
  private slotWaiter: (() => void) | null = null;
  /** The export as negotiated (size and transmission flags): the connection's for its life. */
  private exportSize = 0;
  private exportFlags = 0;
  /** Data bytes of READs in flight (their replies are owed). */
  private readBytes = 0;
  /** Payload bytes of WRITEs in flight (held until the driver completed them). */
  private writeBytes = 0;
  /** In the transmission phase. */
  private transmitting = false;
  /** The server is closing: nothing more is read. */
  private stopping = false;
  /** Socket writes not yet handed to the kernel (their callbacks not yet called). */
  private queuedWrites = 0;
  /** Callback of every socket write: one fewer queued; a drained() waiting may go on. */
  private readonly written = (): void => {
    this.queuedWrites--;
    const w = this.slotWaiter;
    if (w !== null && !this.overHeld()) {
      this.slotWaiter = null;
      w();
    }
  };

  constructor(
    private readonly id: number,
    private readonly sock: net.Socket,
    private readonly driver: BlockDriver,
    private readonly pool: ReplyPool,
    private readonly exportName: string,
    private readonly description: string,
    private readonly negotiated: () => void,
  ) {
    this.reader = new SocketReader(sock);
  }

  /**
   * Wait while the bytes held for this client — replies queued in the socket, data of READs and
   * payloads of WRITEs in flight — exceed HELD_HIGH_WATER: a client that sends READs without
   * reading the replies, or WRITEs faster than the device takes them, stops being read.
   */
  private async drained(): Promise<void> {
    while (this.overHeld() && !this.sock.destroyed) {
      await new Promise<void>((r) => {
        const done = (): void => {
          this.sock.off('drain', done);
          this.sock.off('close', done);
          if (this.slotWaiter === done) this.slotWaiter = null;
          r();
        };
        this.sock.on('drain', done);
        this.sock.on('close', done);
        this.slotWaiter = done; // a completion frees writeBytes, or moves readBytes to the socket
      });
    }
  }

  /** The bytes held for this client exceed HELD_HIGH_WATER (queued writes counted at QUEUED_WRITE_COST at least). */
  private overHeld(): boolean {
    const queued = Math.max(this.sock.writableLength, this.queuedWrites * QUEUED_WRITE_COST);
    return queued + this.readBytes + this.writeBytes > HELD_HIGH_WATER;
  }

  private send(b: Buffer): void {
    if (this.sock.destroyed || !this.sock.writable) return;
    this.queuedWrites++;
    this.sock.write(b, this.written);
  }

  /**
   * Send READ data from a pool buffer: it goes back to the pool once the socket has handed every
   * byte to the kernel (the write's callback), never earlier; a failed write forfeits it.
   */
  private sendPooled(b: Buffer): void {
    if (this.sock.destroyed || !this.sock.writable) {
      this.pool.give(b);
      return;
    }
    this.queuedWrites++;
    this.sock.write(b, (err) => {
      if (err === undefined || err === null) this.pool.give(b);
      else this.pool.forfeit();
      this.written();
    });
  }

  /** Resolves with why the connection ended normally; rejects on a violation or a vanished client. */
  async run(): Promise<string> {
    this.send(encodeGreeting());
    const cf = (await this.reader.read(4)).readUInt32BE(0);
    if ((cf & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) !== 0) throw new ClientError(`unknown client flags 0x${cf.toString(16)}`);
    if ((cf & NBD_FLAG_C_FIXED_NEWSTYLE) === 0) throw new ClientError('client does not speak fixed-newstyle negotiation');
    this.noZeroes = (cf & NBD_FLAG_C_NO_ZEROES) !== 0;
    const ended = await this.negotiate();
    if (ended !== null) return ended;
    this.negotiated();
    this.transmitting = true;
    if (this.stopping) this.reader.stop();
    return this.transmission();
  }

  /**
   * The server is closing: in transmission, read no more requests — the loop then answers those
   * in flight and closes; while negotiating, drop the connection.
   */
  shutdown(): void {
    this.stopping = true;
    if (this.transmitting) this.reader.stop();
    else this.sock.destroy();
  }

  private knownName(name: string): boolean {
    return name === '' || name === this.exportName;
  }

  private transmissionFlags(): number {
    const g = this.driver.geometry;
    let f = NbdFlag.HAS_FLAGS | NbdFlag.SEND_FLUSH | NbdFlag.SEND_FUA | NbdFlag.SEND_WRITE_ZEROES | NbdFlag.CAN_MULTI_CONN;
    if (this.driver.readOnly) f |= NbdFlag.READ_ONLY;
    if (g?.discard === true) f |= NbdFlag.SEND_TRIM;
    return f;
  }

  /** Option haggling. Resolves null to enter transmission, or a reason when the client left. */
  private async negotiate(): Promise<string | null> {
    for (;;) {
      await this.drained();
      const h = await this.reader.read(16);
      if (h.readBigUInt64BE(0) !== NBD_IHAVEOPT) throw new ClientError('bad option magic');
      const opt = h.readUInt32BE(8);
      const len = h.readUInt32BE(12);
      if (len > NBD_MAX_OPTION) throw new ClientError(`option ${opt} of ${len} bytes is too long`);
      const data = await this.reader.read(len);
      switch (opt) {
        case NbdOpt.EXPORT_NAME: {
          const name = data.toString('utf8');
          if (!this.knownName(name)) throw new ClientError(`unknown export '${shown(name)}'`); // the protocol's only answer: close
          if (this.sizesRequired()) {
            // This client cannot learn the block size and would fail every request not aligned to
            // it: refuse now, the only way this option can be refused (the spec's MAY).
            debug('client %d: EXPORT_NAME refused: the export needs %d-byte alignment, which only INFO/GO can announce', this.id, this.minBlock());
            closeAfterReplies(this.sock);
            return `EXPORT_NAME refused: the export needs ${this.minBlock()}-byte alignment`;
          }
          this.exportSize = this.driver.capacity;
          this.exportFlags = this.transmissionFlags();
          this.send(encodeExportNameReply(this.exportSize, this.exportFlags, this.noZeroes));
          return null;
        }
        case NbdOpt.ABORT:
          this.send(encodeOptReply(opt, NbdRep.ACK));
          closeAfterReplies(this.sock);
          return 'abort';
        case NbdOpt.LIST: {
          if (len !== 0) {
            this.send(encodeOptReply(opt, NbdRep.ERR_INVALID));
            break;
          }
          const name = Buffer.from(this.exportName, 'utf8');
          const entry = Buffer.alloc(4 + name.length);
          entry.writeUInt32BE(name.length, 0);
          entry.set(name, 4);
          this.send(encodeOptReply(opt, NbdRep.SERVER, entry));
          this.send(encodeOptReply(opt, NbdRep.ACK));
          break;
        }
        case NbdOpt.INFO:
        case NbdOpt.GO: {
          const parsed = parseInfoRequest(data);
          if (parsed === null) {
            this.send(encodeOptReply(opt, NbdRep.ERR_INVALID));
            break;
          }
          if (!this.knownName(parsed.name)) {
            this.send(encodeOptReply(opt, NbdRep.ERR_UNKNOWN, Buffer.from(`no export named '${parsed.name}'`)));
            break;
          }
          const size = this.driver.capacity;
          const flags = this.transmissionFlags();
          this.send(encodeOptReply(opt, NbdRep.INFO, encodeInfoExport(size, flags)));
          // Sent whether asked or not: requests must be aligned to the device's block and ≤ 32 MiB.
          this.send(encodeOptReply(opt, NbdRep.INFO, encodeInfoBlockSize(this.minBlock(), Math.max(4096, this.driver.blockSize), NBD_MAX_PAYLOAD)));
          if (parsed.infos.includes(NbdInfo.NAME)) this.send(encodeOptReply(opt, NbdRep.INFO, encodeInfoString(NbdInfo.NAME, this.exportName)));
          if (parsed.infos.includes(NbdInfo.DESCRIPTION)) this.send(encodeOptReply(opt, NbdRep.INFO, encodeInfoString(NbdInfo.DESCRIPTION, this.description)));
          if (!parsed.infos.includes(NbdInfo.BLOCK_SIZE) && this.sizesRequired()) {
            // The sizes went out above (the spec's SHOULD before this error): a client that did
            // not ask may not honour them, so it must ask before it gets the export.
            const why = `this export needs requests aligned to ${this.minBlock()} bytes: ask for NBD_INFO_BLOCK_SIZE`;
            this.send(encodeOptReply(opt, NbdRep.ERR_BLOCK_SIZE_REQD, Buffer.from(why)));
            break;
          }
          this.send(encodeOptReply(opt, NbdRep.ACK));
          if (opt === NbdOpt.GO) {
            this.exportSize = size;
            this.exportFlags = flags;
            return null;
          }
          break;
        }
        default:
          // STARTTLS, STRUCTURED_REPLY, meta contexts, extended headers and unknown options.
          this.send(encodeOptReply(opt, NbdRep.ERR_UNSUP));
      }
    }
  }

  private async transmission(): Promise<string> {
    debug('client %d: transmission, export size %d', this.id, this.exportSize);
    for (;;) {
      while (this.inflight >= MAX_INFLIGHT) await new Promise<void>((r) => (this.slotWaiter = r));
      await this.drained();
      let req: NbdRequest | null;
      let payload: Buffer | null = null;
      try {
        req = decodeRequest(await this.reader.read(NBD_REQUEST_SIZE));
        if (req === null) throw new ClientError('bad request magic');
        if (req.type === NbdCmd.WRITE) {
          // The payload follows the header whatever we answer; one we will not read ends the connection.
          if (req.length > NBD_MAX_PAYLOAD) throw new ClientError(`write of ${req.length} bytes exceeds the ${NBD_MAX_PAYLOAD}-byte maximum payload`);
          payload = await this.reader.read(req.length);
        }
      } catch (err) {
        if (!(err instanceof ConnectionClosed)) throw err;
        // EOF (a half-close, or the client gone): a request cut short is dropped unapplied; the
        // ones in flight are answered — a half-closed client still reads — then we close.
        await this.settled();
        closeAfterReplies(this.sock);
        return this.stopping ? 'server shutdown' : 'client closed';
      }
      if (req.type === NbdCmd.DISC) {
        // Finish what is in flight (replies included), then close: the spec has the server close.
        await this.settled();
        closeAfterReplies(this.sock);
        return 'disconnect';
      }
      this.inflight++;
      const owed = req.type === NbdCmd.READ && req.length <= NBD_MAX_PAYLOAD ? req.length : 0;
      this.readBytes += owed;
      const carried = payload?.length ?? 0;
      this.writeBytes += carried;
      void this.handle(req, payload)
        .then(
          (r) => r,
          (err: unknown) => ({ error: errnoOf(err, req.type), data: null }),
        )
        .then((r) => {
          this.send(encodeSimpleReply(r.error, req.cookie));
          if (r.error === 0 && r.data !== null) {
            if (req.type === NbdCmd.READ) this.sendPooled(r.data);
            else this.send(r.data);
          }
          this.readBytes -= owed;
          this.writeBytes -= carried;
          this.inflight--;
          const w = this.slotWaiter;
          this.slotWaiter = null;
          w?.();
        });
    }
  }

  /**
   * The minimum block size: the device's logical block (512 without BLK_SIZE). The driver ignores
   * a blk_size above 64 KiB — NBD's largest minimum block size — so the preferred size,
   * max(4096, minimum), stays below the 32 MiB maximum as the protocol requires (the maximum at
   * least the smaller of the preferred size and the export size).
   */
  private minBlock(): number {
    return this.driver.blockSize;
  }

  /**
   * Clients must learn the block size before transmission: the device's is above 512 bytes, the
   * alignment every interoperable client keeps anyway (NBD: a client SHOULD use 512 when nothing
   * was advertised). Requests below it are refused with EINVAL, never read-modified-written.
   */
  private sizesRequired(): boolean {
    return this.minBlock() > 512;
  }

  /** Resolves once every request in flight was answered. */
  private async settled(): Promise<void> {
    while (this.inflight > 0) await new Promise<void>((r) => (this.slotWaiter = r));
  }

  /** One request; resolves with the NBD error (0 = success) and READ data. */
  private async handle(req: NbdRequest, payload: Buffer | null): Promise<{ error: number; data: Buffer | null }> {
    const writes = req.type === NbdCmd.WRITE || req.type === NbdCmd.TRIM || req.type === NbdCmd.WRITE_ZEROES;
    // An unknown flag, or one not documented for this command or not negotiated (DF, FAST_ZERO),
    // is EINVAL (the spec's SHOULD); FUA is valid on every command, whether it writes or not.
    const allowed = NbdCmdFlag.FUA | (req.type === NbdCmd.WRITE_ZEROES ? NbdCmdFlag.NO_HOLE : 0);
    if ((req.flags & ~allowed) !== 0) return fail(NbdErr.EINVAL);
    if (req.type === NbdCmd.FLUSH) {
      await this.driver.flush();
      return ok(null);
    }
    if (req.type !== NbdCmd.READ && !writes) return fail(NbdErr.EINVAL); // CACHE, BLOCK_STATUS, unknown
    if (req.type === NbdCmd.READ && req.length > NBD_MAX_PAYLOAD) return fail(NbdErr.EOVERFLOW);
    // The export as negotiated and the device now, whichever is stricter: a device that came back
    // read-only, smaller or with bigger blocks refuses what it cannot take; one that came back
    // writable or bigger does not widen what this connection was told (a new one sees it).
    if (writes && (this.driver.readOnly || (this.exportFlags & NbdFlag.READ_ONLY) !== 0)) return fail(NbdErr.EPERM);
    const size = Math.min(this.driver.capacity, this.exportSize);
    if (req.offset + BigInt(req.length) > BigInt(size)) return fail(req.type === NbdCmd.READ ? NbdErr.EINVAL : NbdErr.ENOSPC);
    const off = Number(req.offset);
    const len = req.length;
    const fua = (req.flags & NbdCmdFlag.FUA) !== 0;
    const block = this.minBlock();
    switch (req.type) {
      case NbdCmd.READ:
        if (off % block !== 0 || len % block !== 0) return fail(NbdErr.EINVAL);
        return ok(await this.readPooled(off, len));
      case NbdCmd.WRITE:
        if (off % block !== 0 || len % block !== 0) return fail(NbdErr.EINVAL);
        await this.driver.write(off, payload as Buffer);
        break;
      case NbdCmd.TRIM: {
        // Served when this connection was told SEND_TRIM, whatever the device now is. TRIM is
        // advisory: the whole blocks inside the range are discarded, the edges ignored, and a
        // device that cannot discard (it came back without DISCARD, or answered UNSUPP) leaves
        // the data as it was — which is all a client may assume after a TRIM anyway.
        if ((this.exportFlags & NbdFlag.SEND_TRIM) === 0) return fail(NbdErr.EINVAL);
        const from = Math.ceil(off / block) * block;
        const to = Math.floor((off + len) / block) * block;
        if (to > from && this.driver.geometry?.discard !== false) await unlessUnsupported(this.driver.discard(from, to - from));
        break;
      }
      case NbdCmd.WRITE_ZEROES:
        if (off % block !== 0 || len % block !== 0) return fail(NbdErr.EINVAL);
        await this.writeZeroes(off, len, (req.flags & NbdCmdFlag.NO_HOLE) === 0);
        break;
    }
    if (fua) await this.driver.flush();
    return ok(null);
  }

  /** A READ into a pool buffer; on failure the buffer is forfeited (see ReplyPool.forfeit). */
  private async readPooled(off: number, len: number): Promise<Buffer> {
    const b = this.pool.take(len);
    try {
      return await this.driver.read(off, len, b);
    } catch (err) {
      this.pool.forfeit();
      throw err;
    }
  }

  /**
   * WRITE_ZEROES through the device's, or as written zeroes when the device lacks it — also when
   * the request waited across a change to a device without WRITE_ZEROES, or the device answered
   * UNSUPP: writing zeroes over the range again is right whatever part of it the device did.
   */
  private async writeZeroes(off: number, len: number, mayUnmap: boolean): Promise<void> {
    if (len === 0) return;
    if (this.driver.geometry?.writeZeroes !== false && (await unlessUnsupported(this.driver.writeZeroes(off, len, { unmap: mayUnmap })))) return;
    const step = 1024 * 1024;
    const zeros = Buffer.alloc(Math.min(step, len));
    const parts: Promise<void>[] = [];
    for (let at = 0; at < len; at += step) parts.push(this.driver.write(off + at, zeros.subarray(0, Math.min(step, len - at))));
    await Promise.all(parts);
  }
}

/**
 * End our side once everything queued is written, then close the socket even if the client keeps
 * its end open (the server listens half-open): no connection outlives its DISC or ABORT.
 *
 * The close lingers: a socket closed with bytes of the client's still unread resets the client
 * (ECONNRESET for its reads, EPIPE for a write in progress), and a client may then lose replies it
 * had not read yet. So after our end, whatever the client still sends is read and dropped until
 * its EOF, or until it has sent nothing for LINGER_IDLE_MS, and at most for LINGER_MAX_MS; only
 * then is the socket closed. The requests in those bytes are not served. The server's close()
 * bounds this like any other connection (shutdownGraceMs).
 */
function closeAfterReplies(sock: net.Socket): void {
  if (sock.destroyed) return;
  sock.pause(); // no more requests for the connection: the bytes are dropped below, not served
  sock.end(() => {
    if (sock.destroyed) return;
    if (sock.readableEnded) {
      sock.destroy(); // the client's EOF was read: nothing can be left unread
      return;
    }
    sock.removeAllListeners('data');
    let idle = setTimeout(() => sock.destroy(), LINGER_IDLE_MS);
    const cap = setTimeout(() => sock.destroy(), LINGER_MAX_MS);
    sock.on('data', () => {
      clearTimeout(idle);
      idle = setTimeout(() => sock.destroy(), LINGER_IDLE_MS);
    });
    sock.once('end', () => sock.destroy());
    sock.once('close', () => {
      clearTimeout(idle);
      clearTimeout(cap);
    });
    sock.resume();
  });
}

/**
 * Resolves true once `op` is done, false when it failed VSHM_ERR_BLK_UNSUPPORTED (the device it
 * went to lacks the feature, or answered UNSUPP); any other failure rejects.
 */
async function unlessUnsupported(op: Promise<void>): Promise<boolean> {
  try {
    await op;
    return true;
  } catch (err) {
    if ((err as { code?: unknown })?.code === 'VSHM_ERR_BLK_UNSUPPORTED') return false;
    throw err;
  }
}

function ok(data: Buffer | null): { error: number; data: Buffer | null } {
  return { error: 0, data };
}

function fail(error: number): { error: number; data: Buffer | null } {
  return { error, data: null };
}

/** NBD error for a driver failure. */
function errnoOf(err: unknown, type: number): number {
  const code = (err as { code?: unknown })?.code;
  switch (code) {
    case 'VSHM_ERR_BLK_RANGE':
      return type === NbdCmd.READ ? NbdErr.EINVAL : NbdErr.ENOSPC;
    case 'VSHM_ERR_BLK_READ_ONLY':
      return NbdErr.EPERM;
    case 'VSHM_ERR_BLK_ALIGNMENT':
    case 'VSHM_ERR_ARGUMENT':
      return NbdErr.EINVAL;
    case 'VSHM_ERR_BLK_UNSUPPORTED':
      return NbdErr.ENOTSUP;
    case 'VSHM_ERR_BLK_NO_MEMORY':
      return NbdErr.ENOMEM;
    case 'VSHM_ERR_BLK_CLOSED':
      return NbdErr.ESHUTDOWN;
    default:
      return NbdErr.EIO; // IOERR, device lost (maybe applied, never acknowledged)
  }
}

/** NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 count, u16 info types. */
function parseInfoRequest(d: Buffer): { name: string; infos: number[] } | null {
  if (d.length < 6) return null;
  const nlen = d.readUInt32BE(0);
  if (nlen > d.length - 6) return null;
  const n = d.readUInt16BE(4 + nlen);
  if (d.length !== 6 + nlen + 2 * n) return null;
  const infos: number[] = [];
  for (let i = 0; i < n; i++) infos.push(d.readUInt16BE(6 + nlen + 2 * i));
  return { name: d.subarray(4, 4 + nlen).toString('utf8'), infos };
}
