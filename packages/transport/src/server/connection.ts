/**
 * One connected peer as the server sees it (spec §1.3, §1.6): its socket, its eventfds, and an
 * outgoing queue so that every message reaches it completely and in order even while its socket
 * buffer is full (§1.3 last paragraph).
 *
 * Each message is one sendmsg() carrying at most one fd (§1.1). A short send leaves the fd
 * delivered with the first byte (SCM_RIGHTS rides on the first segment), so only the remaining
 * bytes are queued, without fd. A message queued with an fd holds a dup of it: the original may be
 * closed (its owner departs) before the queue drains, and the kernel must not see a reused number.
 */
import type { Binding, FdWatcher } from '@vshm/addon';

/**
 * Slack of the outgoing queue beyond a peer's initial burst, in fds. A queue holding more fds than
 * `queuedFdLimit()` means the peer does not read: it is dropped (§1.3). Each queued fd is a dup
 * the server holds, so this is what bounds the descriptors one stalled peer can pin. The kernel
 * socket buffer absorbs the first few hundred messages before anything is queued here; a peer owed
 * 256 eventfds beyond its burst has missed many turnovers of the others. The queue's length is
 * bounded through it: every message but PEER_GONE and the tail of a short send carries an fd, and
 * each PEER_GONE follows a join whose eventfds were queued or sent.
 */
export const MAX_QUEUED_FDS = 256;

/**
 * The most fds a peer's queue may hold: its own initial burst — up to `maxPeers × vectors`
 * EVENT_FDs (§1.3 steps 6–7), sent in one go and so mostly queued however fast the peer reads —
 * plus MAX_QUEUED_FDS. A bound of MAX_QUEUED_FDS alone dropped every newcomer whose burst
 * exceeded what the kernel buffer takes plus 256 (the 9th peer at -n 16 -V 64). The server already
 * holds `maxPeers × vectors` eventfds for such options, so the bound stays of the options' scale.
 */
export function queuedFdLimit(maxPeers: number, vectors: number): number {
  return maxPeers * vectors + MAX_QUEUED_FDS;
}

interface Pending {
  bytes: Buffer;
  /** A dup owned by the queue, or -1. */
  fd: number;
}

export class PeerConnection {
  /** Our copies of the peer's eventfds, index = vector. Shared with every other peer (§1.3). */
  readonly eventfds: number[];
  private readonly queue: Pending[] = [];
  /** How many queue entries hold a dup. */
  private queuedFds = 0;
  private watcher: FdWatcher | undefined;
  private closed = false;

  constructor(
    private readonly binding: Binding,
    readonly id: number,
    readonly socket: number,
    eventfds: number[],
    /** See queuedFdLimit(). */
    private readonly maxQueuedFds = MAX_QUEUED_FDS,
  ) {
    this.eventfds = eventfds;
  }

  get queued(): number {
    return this.queue.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Watch the socket. Any readability, hang-up or error calls `onGone` (§1.1: the server never
   * reads client data); writability flushes the queue, and a flush failure calls `onGone` too.
   */
  watch(onGone: (reason: string) => void): void {
    const b = this.binding;
    this.watcher = b.createWatcher(this.socket, (status, events) => {
      if (this.closed) return;
      if (status < 0) return onGone(`poll error ${status}`);
      if (events & b.POLL_READABLE) return onGone('readable');
      if (events & b.POLL_DISCONNECT) return onGone('hang-up');
      if (events & b.POLL_WRITABLE) {
        const err = this.flush();
        if (err) onGone(err);
      }
    });
    this.arm();
  }

  private arm(): void {
    if (!this.watcher || this.closed) return;
    const b = this.binding;
    this.watcher.start(b.POLL_READABLE | b.POLL_DISCONNECT | (this.queue.length > 0 ? b.POLL_WRITABLE : 0));
  }

  /**
   * Send one message (with an optional fd), or queue it behind earlier ones. Returns an error
   * string when the peer can no longer be served (caller drops it), else undefined.
   */
  send(bytes: Buffer, fd = -1): string | undefined {
    if (this.closed) return 'closed';
    if (this.queue.length === 0) {
      let n: number;
      try {
        n = this.binding.sendMsg(this.socket, bytes, fd >= 0 ? [fd] : []);
      } catch (err) {
        return `send failed: ${(err as Error).message}`;
      }
      if (n === bytes.length) return undefined;
      const err = n > 0 ? this.enqueue(bytes.subarray(n), -1) : this.enqueue(bytes, fd);
      this.arm();
      return err;
    }
    return this.enqueue(bytes, fd);
  }

  private enqueue(bytes: Buffer, fd: number): string | undefined {
    let copy = -1;
    if (fd >= 0) {
      if (this.queuedFds >= this.maxQueuedFds) return `outgoing queue overflow (${this.maxQueuedFds} fds waiting)`;
      try {
        copy = this.binding.dup(fd);
      } catch (err) {
        return `cannot queue an fd: ${(err as Error).message}`;
      }
    }
    this.queue.push({ bytes, fd: copy });
    if (copy >= 0) this.queuedFds++;
    return undefined;
  }

  /** Send as much of the queue as the socket takes. Returns an error string on failure. */
  flush(): string | undefined {
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0];
      let n: number;
      try {
        n = this.binding.sendMsg(this.socket, head.bytes, head.fd >= 0 ? [head.fd] : []);
      } catch (err) {
        return `send failed: ${(err as Error).message}`;
      }
      if (n < 0) break;
      if (head.fd >= 0 && n > 0) {
        this.binding.close(head.fd);
        head.fd = -1;
        this.queuedFds--;
      }
      if (n === head.bytes.length) this.queue.shift();
      else head.bytes = head.bytes.subarray(n);
    }
    this.arm();
    return undefined;
  }

  /**
   * Release the socket (watcher first: a uv_poll must not outlive its fd) and queued dups. The
   * eventfds are closed separately by `closeEventfds()`, after PEER_GONE went out (§1.6 order).
   */
  closeSocket(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    for (const p of this.queue) if (p.fd >= 0) this.binding.close(p.fd);
    this.queue.length = 0;
    this.queuedFds = 0;
    this.binding.close(this.socket);
  }

  closeEventfds(): void {
    for (const fd of this.eventfds.splice(0)) this.binding.close(fd);
  }
}
