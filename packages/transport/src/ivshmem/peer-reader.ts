/**
 * The client side of the server socket (spec §1.8): framing, fd attribution and the stateful
 * validation of the message sequence. It only ever READS the socket (§1.1: a client never
 * writes to or half-closes it) and never acts on the device model: valid messages go to a
 * `ReaderSink`, which takes ownership of the fd that came with them.
 *
 * Framing: the 8-byte header is read with control space for one fd, then exactly `len − 8` body
 * bytes. No recvmsg asks for bytes past the current message, so an fd is always attributed to the
 * message whose bytes carried it, even when the server sent several messages back to back. Each
 * message is one sendmsg() on the server side, but a stream may still deliver it in pieces, so
 * the header and the body are accumulated across partial reads.
 */
import { readlinkSync } from 'node:fs';
import type { Binding } from '@vshm/addon';
import { ProtocolError, type VshmErrorCode } from '../errors.js';
import {
  HEADER_SIZE,
  IVSHMEM_VERSION,
  MAX_MESSAGE_LEN,
  MSG_EVENT_FD,
  MSG_INIT,
  MSG_PEER_GONE,
  decodeHeader,
  decodeMessage,
  validateInit,
  type InitMessage,
} from './protocol.js';

/** Receives each valid message. Every fd passed in is owned by the sink from the call on. */
export interface ReaderSink {
  /** INIT, validated against the memory fd's fstat `memorySize`. */
  init(msg: InitMessage, memFd: number, memorySize: number): void;
  /** EVENT_FD(id, vector): the next eventfd of `id` (vector = count already held). */
  eventFd(id: number, vector: number, fd: number): void;
  /** PEER_GONE(id) of a present foreign peer. */
  peerGone(id: number): void;
}

export type PumpResult = 'again' | 'eof';

/**
 * Messages one pump() dispatches before it yields ('again'): a server that keeps the socket full
 * must not hold the event loop in one callback. The socket watcher is level-triggered, so the
 * rest is read on the next loop turn.
 */
export const MAX_MESSAGES_PER_PUMP = 64;

/** File-type bits of st_mode, and the regular-file type (<sys/stat.h>). */
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

function protocolError(code: VshmErrorCode, message: string): ProtocolError {
  return new ProtocolError(code, '1.8', message);
}

/** What /proc names an eventfd's descriptor (Linux since 2.6.22: an anonymous inode). */
const EVENTFD_LINK = 'anon_inode:[eventfd]';

/**
 * Why `fd` is not an eventfd, or null when it is one. /proc/self/fd names the file an fd refers
 * to; without /proc only the type bits are left: an eventfd's anonymous inode has none (or, on
 * some kernels, those of a regular file), so a directory, socket, FIFO or device is refused and a
 * regular file cannot be told from an eventfd. (`readlink`: a seam for tests.)
 * @internal
 */
export function notAnEventfd(binding: Binding, fd: number, readlink: (path: string) => string = readlinkSync): string | null {
  let link: string;
  try {
    link = readlink(`/proc/self/fd/${fd}`);
  } catch {
    const mode = binding.fstat(fd).mode;
    const type = mode & S_IFMT;
    return type === 0 || type === S_IFREG ? null : `mode 0o${mode.toString(8)}`;
  }
  return link === EVENTFD_LINK ? null : link;
}

export class ServerReader {
  private readonly binding: Binding;
  private readonly sock: number;
  private readonly sink: ReaderSink;
  /** The message being assembled: header first, then the body (`len` ≤ 4096 bytes). */
  private readonly buf = Buffer.alloc(MAX_MESSAGE_LEN);
  private got = 0;
  /** Header's `len` once the header is complete, else 0. */
  private len = 0;
  /** The fd received with the current message, or -1. */
  private fd = -1;
  /** Set by stop(): the socket may be closed (and its number reused) by a sink callback. */
  private stopped = false;

  // Stateful §1.8 checks.
  private initSeen = false;
  private version = 0;
  private ownId = -1;
  private maxPeers = 0;
  private vectors = 0;
  /** Eventfds held per peer id; > 0 means present. */
  private counts = new Uint16Array(0);

  constructor(binding: Binding, sock: number, sink: ReaderSink) {
    this.binding = binding;
    this.sock = sock;
    this.sink = sink;
  }

  /** Whether all own eventfds have arrived (the initial burst is complete, §1.8). */
  get burstComplete(): boolean {
    return this.initSeen && this.counts[this.ownId] === this.vectors;
  }

  /**
   * Read and dispatch the complete messages available, at most `limit`. Returns
   * 'again' when the socket would block or the batch is full, 'eof' at end of stream or on a
   * reset (a partial message is then dropped, its fd closed). Throws a
   * ProtocolError (or an addon SyscallError) after closing any fd it still holds; the reader must
   * not be used afterwards.
   */
  pump(limit = MAX_MESSAGES_PER_PUMP): PumpResult {
    try {
      for (let dispatched = 0; ; ) {
        if (this.stopped || dispatched >= limit) return 'again';
        const want = (this.len === 0 ? HEADER_SIZE : this.len) - this.got;
        const r = this.recv(want);
        if (r === null) return 'again';
        this.takeFds(r.fds, r.ctrunc);
        const n = r.bytes.length;
        if (n === 0) {
          this.dropFd();
          return 'eof';
        }
        r.bytes.copy(this.buf, this.got);
        this.got += n;
        if (this.len === 0) {
          if (this.got < HEADER_SIZE) continue;
          this.len = decodeHeader(this.buf.subarray(0, HEADER_SIZE)).len;
        }
        if (this.got < this.len) continue;
        const fd = this.fd;
        this.fd = -1;
        const len = this.len;
        this.len = 0;
        this.got = 0;
        this.dispatch(this.buf.subarray(0, len), fd);
        dispatched++;
      }
    } catch (err) {
      this.dropFd();
      throw err;
    }
  }

  /**
   * Read nothing more, also in a pump() that is still running: its owner closes the socket, whose
   * number another open() may reuse at once (e.g. from a listener the sink calls). Idempotent.
   */
  stop(): void {
    this.stopped = true;
    this.dropFd();
  }

  /**
   * One recvmsg. A reset (ECONNRESET: the server closed its end with bytes it never read — a
   * client never writes, but a server may die with anything queued) ends the stream like EOF:
   * §1.8 treats a hang-up as the server gone, whatever its form.
   */
  private recv(want: number): ReturnType<Binding['recvMsg']> {
    try {
      return this.binding.recvMsg(this.sock, want, 1);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ECONNRESET') throw err;
      return { bytes: Buffer.alloc(0), fds: [], ctrunc: false };
    }
  }

  /** Close an fd that no message kept (on error, EOF or when abandoning the reader). */
  dropFd(): void {
    if (this.fd >= 0) {
      closeQuietly(this.binding, this.fd);
      this.fd = -1;
    }
  }

  private takeFds(fds: number[], ctrunc: boolean): void {
    if (fds.length === 0 && !ctrunc) return;
    if (ctrunc || fds.length > 1 || this.fd >= 0) {
      for (const f of fds) closeQuietly(this.binding, f);
      throw protocolError(
        ctrunc ? 'VSHM_ERR_MSG_CTRUNC' : 'VSHM_ERR_MSG_FDS',
        // MSG_CTRUNC at our end is almost always the kernel refusing to install the fds for us
        // (the open-file limit), far more often than a server sending more than one.
        ctrunc
          ? 'control data truncated: the kernel dropped the fds of a server message (is the open-file limit reached? `ulimit -n`)'
          : 'more than one fd on a message',
      );
    }
    this.fd = fds[0];
  }

  /** Validate one complete message against the sequence so far; hand it and its fd on. */
  private dispatch(bytes: Buffer, fd: number): void {
    try {
      const msg = decodeMessage(bytes);
      if (!this.initSeen && msg.type !== MSG_INIT) {
        throw protocolError('VSHM_ERR_MSG_ORDER', `first message has type ${msg.type}, not INIT`);
      }
      switch (msg.type) {
        case MSG_INIT: {
          const init = msg as InitMessage;
          if (this.initSeen) throw protocolError('VSHM_ERR_MSG_ORDER', 'second INIT');
          if (fd < 0) throw protocolError('VSHM_ERR_MSG_NO_FD', 'INIT without the memory fd');
          validateInit(init); // the cheap checks first, fstat only for a sane INIT
          const st = this.binding.fstat(fd);
          // memfd, POSIX shm, a tmpfs/hugetlbfs file: all regular. A directory or device has a
          // size that means nothing and cannot be mapped shared with the other peers.
          if ((st.mode & S_IFMT) !== S_IFREG) {
            throw protocolError('VSHM_ERR_INIT_MEMORY', `the memory fd is not a regular file or shared-memory object (mode 0o${st.mode.toString(8)})`);
          }
          const size = st.size;
          validateInit(init, size);
          this.initSeen = true;
          this.version = init.version;
          this.ownId = init.id;
          this.maxPeers = init.maxPeers;
          this.vectors = init.vectors;
          this.counts = new Uint16Array(init.maxPeers);
          const memFd = fd;
          fd = -1;
          this.sink.init(init, memFd, size);
          return;
        }
        case MSG_EVENT_FD: {
          const { id, vector } = msg as { id: number; vector: number };
          if (fd < 0) throw protocolError('VSHM_ERR_MSG_NO_FD', `EVENT_FD(${id}, ${vector}) without an fd`);
          if (id >= this.maxPeers) throw protocolError('VSHM_ERR_EVENTFD_ID', `EVENT_FD id ${id} ≥ max_peers ${this.maxPeers}`);
          if (vector >= this.vectors) {
            throw protocolError('VSHM_ERR_EVENTFD_VECTOR', `EVENT_FD(${id}, ${vector}): vector ≥ vectors ${this.vectors}`);
          }
          if (vector !== this.counts[id]) {
            throw protocolError('VSHM_ERR_EVENTFD_ORDER', `EVENT_FD(${id}, ${vector}) but ${this.counts[id]} fds held for ${id}`);
          }
          // A doorbell writes 8 bytes into every foreign eventfd and the own ones are polled:
          // anything else (a file, a socket) would take those bytes or never signal.
          const not = notAnEventfd(this.binding, fd);
          if (not !== null) throw protocolError('VSHM_ERR_EVENTFD_KIND', `EVENT_FD(${id}, ${vector}) carries no eventfd: ${not}`);
          this.counts[id] = vector + 1;
          const efd = fd;
          fd = -1;
          this.sink.eventFd(id, vector, efd);
          return;
        }
        case MSG_PEER_GONE: {
          const { id } = msg as { id: number };
          if (fd >= 0) throw protocolError('VSHM_ERR_MSG_FDS', `PEER_GONE(${id}) carries an fd`);
          if (id >= this.maxPeers || id === this.ownId || this.counts[id] === 0) {
            throw protocolError('VSHM_ERR_PEER_GONE_ID', `PEER_GONE for ${id === this.ownId ? 'the own' : 'an absent'} id ${id}`);
          }
          this.counts[id] = 0;
          this.sink.peerGone(id);
          return;
        }
        default:
          // §1.8: a later server version may add message types; an older one may not.
          if (this.version <= IVSHMEM_VERSION) {
            throw protocolError('VSHM_ERR_MSG_TYPE', `unknown message type ${msg.type} from a version ${this.version} server`);
          }
          return; // skipped; its fd (if any) is closed below
      }
    } finally {
      if (fd >= 0) closeQuietly(this.binding, fd);
    }
  }
}

/** close() for cleanup paths, where a failure must not hide the error being reported. */
export function closeQuietly(binding: Binding, fd: number): void {
  try {
    binding.close(fd);
  } catch {
    // Already closed or invalid: nothing left to release.
  }
}
