/**
 * A raw ivshmem v2 test client: connects with the addon and reads the server's byte stream
 * exactly as §1.8 frames it — the 8-byte header with room for one fd, then `len − 8` body bytes —
 * without any validation, so tests see precisely what the server sent. Asynchronous (an fd
 * watcher), so it works against an in-process server sharing the event loop.
 */
import { readdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Binding, FdWatcher } from '@vshm/addon';
import { decodeHeader, decodeMessage, HEADER_SIZE, type ServerMessage } from '../../src/ivshmem/protocol.js';

export interface RawMessage {
  msg: ServerMessage;
  /** Exactly the `len` bytes received. */
  bytes: Buffer;
  /** Fds that arrived with this message (header and body reads). Owned by the client until taken. */
  fds: number[];
}

type Item = RawMessage | 'eof';

export class RawClient {
  private readonly items: Item[] = [];
  private waiters: ((i: Item) => void)[] = [];
  private watcher: FdWatcher | undefined;
  private header: Buffer | undefined;
  private part = Buffer.alloc(0);
  private partFds: number[] = [];
  private eof = false;
  /** Every fd received and not yet closed; close() closes them. */
  private readonly owned = new Set<number>();
  fd: number;

  private constructor(
    private readonly b: Binding,
    fd: number,
    paused: boolean,
  ) {
    this.fd = fd;
    this.watcher = b.createWatcher(fd, (status, events) => this.onReady(status, events));
    if (!paused) this.resume();
  }

  /** Connect to `path`. With `paused`, nothing is read until resume() (a peer that stalls). */
  static connect(binding: Binding, path: string, opts: { paused?: boolean } = {}): RawClient {
    return new RawClient(binding, binding.socketConnect(path), opts.paused ?? false);
  }

  /** Start reading (again). */
  resume(): void {
    this.watcher?.start(this.b.POLL_READABLE | this.b.POLL_DISCONNECT);
  }

  private onReady(status: number, events: number): void {
    if (status < 0 || this.eof) return this.finish();
    if (!(events & (this.b.POLL_READABLE | this.b.POLL_DISCONNECT))) return;
    for (;;) {
      const want = this.header ? decodeHeader(this.header).len - HEADER_SIZE - this.part.length : HEADER_SIZE - this.part.length;
      let r;
      try {
        r = this.b.recvMsg(this.fd, want, 1);
      } catch {
        return this.finish();
      }
      if (r === null) return;
      for (const f of r.fds) {
        this.owned.add(f);
        this.partFds.push(f);
      }
      if (r.bytes.length === 0) return this.finish();
      this.part = Buffer.concat([this.part, r.bytes]);
      if (!this.header) {
        if (this.part.length < HEADER_SIZE) continue;
        this.header = this.part;
        this.part = Buffer.alloc(0);
        if (decodeHeader(this.header).len > HEADER_SIZE) continue;
      } else if (this.part.length < decodeHeader(this.header).len - HEADER_SIZE) {
        continue;
      }
      const bytes = Buffer.concat([this.header, this.part]);
      const fds = this.partFds;
      this.header = undefined;
      this.part = Buffer.alloc(0);
      this.partFds = [];
      this.push({ msg: decodeMessage(bytes), bytes, fds });
    }
  }

  private finish(): void {
    if (this.eof) return;
    this.eof = true;
    this.watcher?.close();
    this.watcher = undefined;
    this.push('eof');
  }

  private push(i: Item): void {
    const w = this.waiters.shift();
    if (w) w(i);
    else this.items.push(i);
  }

  private nextItem(timeoutMs: number): Promise<Item> {
    const queued = this.items.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.eof) return Promise.resolve('eof');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`raw client: no message within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (i: Item): void => {
        clearTimeout(timer);
        resolve(i);
      };
      this.waiters.push(waiter);
    });
  }

  /** The next message; rejects on EOF or after `timeoutMs` (a failure bound, not a sleep). */
  async next(timeoutMs = 20000): Promise<RawMessage> {
    const i = await this.nextItem(timeoutMs);
    if (i === 'eof') {
      this.items.unshift('eof');
      throw new Error('raw client: EOF instead of a message');
    }
    return i;
  }

  /** The next `n` messages. */
  async take(n: number, timeoutMs = 20000): Promise<RawMessage[]> {
    const out: RawMessage[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(timeoutMs));
    return out;
  }

  /** Every message up to EOF (resolves at EOF). */
  async untilEof(timeoutMs = 20000): Promise<RawMessage[]> {
    const out: RawMessage[] = [];
    for (;;) {
      const i = await this.nextItem(timeoutMs);
      if (i === 'eof') {
        this.items.unshift('eof');
        return out;
      }
      out.push(i);
    }
  }

  get isEof(): boolean {
    return this.eof && this.items[0] === 'eof';
  }

  /** Remove `fd` from the fds close() will close (the test closes it itself). */
  keepFd(fd: number): number {
    this.owned.delete(fd);
    return fd;
  }

  /** Write bytes to the socket (clients must not: used to provoke §1.6). */
  write(bytes: Uint8Array): void {
    this.b.sendMsg(this.fd, bytes, []);
  }

  /** Close the socket and every received fd not taken. Idempotent. */
  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.fd >= 0) {
      this.b.close(this.fd);
      this.fd = -1;
    }
    for (const f of this.owned) this.b.close(f);
    this.owned.clear();
    this.eof = true;
  }
}

let counter = 0;
/** A unique path under os.tmpdir() (nothing is created). */
export function tmpPath(tag: string, ext = '.sock'): string {
  return join(tmpdir(), `vshm-${tag}-${process.pid}-${Date.now().toString(36)}-${counter++}${ext}`);
}

/** Remove `path` if it exists. */
export function removeIfExists(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // not there
  }
}

/** Count the open fds of process `pid` (default: this one). */
export function countFds(pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
