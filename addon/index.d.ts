/**
 * The whole native surface of vshm, typed by hand. Syscalls only: no protocol policy
 * lives behind this interface. Layers above take a `Binding` as a parameter so policy tests can
 * pass a fake.
 *
 * Errors: every failing syscall throws a `SyscallError` (an `Error` with `code` such as 'EBADF',
 * `errno` (positive number) and `syscall` (e.g. 'mmap')), never a crash. Functions documented as
 * "EAGAIN → x" return x instead of throwing when the fd is non-blocking and would block.
 *
 * All fds the addon creates are O_CLOEXEC. Received fds (recvMsg) are MSG_CMSG_CLOEXEC.
 */

export interface SyscallError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

export interface RecvResult {
  /** The bytes received: at most the requested length; length 0 means EOF. */
  bytes: Buffer;
  /** Descriptors that arrived with these bytes (SCM_RIGHTS), in order. Owned by the caller. */
  fds: number[];
  /** MSG_CTRUNC was set: control data (fds) was truncated. Any fds that did fit are in `fds`. */
  ctrunc: boolean;
}

export interface FdWatcher {
  /** Start (or change) watching for `events` (bitmask of Binding.POLL_*). */
  start(events: number): void;
  /** Stop watching; start() may be called again. */
  stop(): void;
  /** Keep (ref) or do not keep (unref) the event loop alive while started. Default: ref. */
  ref(): void;
  unref(): void;
  /** Stop and release the uv handle. Does NOT close the fd. Idempotent. */
  close(): void;
}

/**
 * Watcher callback: `status` is 0 or a negative libuv error code (e.g. -EBADF); `events` the
 * subset of POLL_* that fired. Called on the main thread with a fresh handle scope; exceptions it
 * throws go to process 'uncaughtException' like any other callback.
 */
export type WatchCallback = (status: number, events: number) => void;

export interface Binding {
  // ---- constants ------------------------------------------------------------------------
  readonly PROT_NONE: number;
  readonly PROT_READ: number;
  readonly PROT_WRITE: number;
  readonly F_SEAL_SEAL: number;
  readonly F_SEAL_SHRINK: number;
  readonly F_SEAL_GROW: number;
  readonly F_SEAL_WRITE: number;
  readonly O_RDONLY: number;
  readonly O_RDWR: number;
  readonly O_CREAT: number;
  readonly O_EXCL: number;
  readonly POLL_READABLE: number;
  readonly POLL_WRITABLE: number;
  readonly POLL_DISCONNECT: number;
  readonly PAGE_SIZE: number;
  readonly FALLOC_FL_KEEP_SIZE: number;
  readonly FALLOC_FL_PUNCH_HOLE: number;
  readonly FALLOC_FL_ZERO_RANGE: number;

  // ---- memory objects -------------------------------------------------------------------
  /** memfd_create(name, MFD_CLOEXEC | (allowSealing ? MFD_ALLOW_SEALING : 0)). */
  memfdCreate(name: string, allowSealing: boolean): number;
  /** shm_open(name, flags | O_CLOEXEC, mode). `name` starts with '/'. */
  shmOpen(name: string, flags: number, mode: number): number;
  /** shm_unlink(name). */
  shmUnlink(name: string): void;
  /** An unlinked regular file in `dir` (O_TMPFILE, falling back to mkstemp + unlink). */
  openTmpfile(dir: string, mode: number): number;
  /** ftruncate(fd, size). `size` must be a safe integer ≥ 0. */
  ftruncate(fd: number, size: number): void;
  /** fcntl(F_ADD_SEALS). */
  addSeals(fd: number, seals: number): void;
  /** fcntl(F_GET_SEALS); throws EINVAL for fds that do not support sealing. */
  getSeals(fd: number): number;
  /**
   * fstat(fd): size in bytes (as a safe integer), mode, inode, and `dev` (st_dev as a bigint, the
   * raw dev_t — glibc's makedev() encoding, the value node:fs reports as `dev`). Device and inode
   * together name a file; an inode number alone is unique only within its filesystem.
   */
  fstat(fd: number): { size: number; mode: number; ino: number; dev: bigint };
  /** close(fd). Throws EBADF for a closed fd. */
  close(fd: number): void;
  /** dup(fd) with O_CLOEXEC. */
  dup(fd: number): number;

  // ---- mappings -------------------------------------------------------------------------
  /**
   * mmap(NULL, length, prot, MAP_SHARED, fd, offset) as an external ArrayBuffer. `offset` must be
   * page-aligned. The mapping is unmapped when the ArrayBuffer is collected, unless munmap() was
   * called first. Never maps past what the caller asked for. A `length` above what this Node.js
   * can hold in one ArrayBuffer (`buffer.constants.MAX_LENGTH`, 4 GiB on Node 20) throws a
   * RangeError (code ERR_BUFFER_TOO_LARGE) and leaves nothing mapped.
   */
  mmap(fd: number, offset: number, length: number, prot: number): ArrayBuffer;
  /** mprotect() a page-aligned sub-range [offset, offset + length) of a buffer from mmap(). */
  mprotect(buf: ArrayBuffer, offset: number, length: number, prot: number): void;
  /** Detach `buf` (all views become length 0), then munmap. Throws EINVAL if not from mmap(). */
  munmap(buf: ArrayBuffer): void;
  /** Sequentially consistent full fence (atomic_thread_fence(memory_order_seq_cst)). */
  fence(): void;

  // ---- eventfd --------------------------------------------------------------------------
  /** eventfd(initval, EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0)). */
  eventfd(initval: number, nonBlocking: boolean): number;
  /** write(fd, u64 value). EAGAIN → false, else true. */
  eventfdWrite(fd: number, value: number): boolean;
  /** read(fd, u64): the counter (≤ 2^53 − 1, larger values are clamped). EAGAIN → 0. */
  eventfdRead(fd: number): number;

  // ---- readiness ------------------------------------------------------------------------
  /**
   * A uv_poll watcher on `fd` (any pollable fd: eventfd, socket). Created stopped. libuv puts
   * the fd into O_NONBLOCK mode. One open watcher per fd: another createWatcher on the same fd
   * throws EEXIST until the first is closed. Close the watcher before closing the fd (start()
   * on a closed fd throws EBADF, and so does start() on an fd number reused since for another
   * file — except one eventfd for another, which all share one inode). Regular files throw EPERM.
   */
  createWatcher(fd: number, callback: WatchCallback): FdWatcher;
  /**
   * poll(fd, timeout 0): which of `events` (POLL_* bits) are ready right now. POLL_DISCONNECT is
   * the peer's hang-up (POLLRDHUP) and is also set for POLLHUP/POLLERR whether asked or not.
   * Does not need or disturb a watcher. A closed or negative fd throws EBADF.
   */
  pollNow(fd: number, events: number): number;

  // ---- files (what Node's fs lacks) ---------------------------------------------------
  /**
   * fallocate(fd, mode, offset, length) on the libuv thread pool; settles when the call returned
   * (rejects with a SyscallError, e.g. EOPNOTSUPP where the file system or device lacks the mode).
   * Modes: FALLOC_FL_* bits. Keep `fd` open until the promise settles. `length` ≥ 1.
   */
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<void>;

  /**
   * preadv2(fd, views, position, RWF_NOWAIT): fill `views` in order with at most `length` bytes
   * of the file from `position`, taking only what the page cache holds — never waits for the
   * storage, so nothing is left running when it returns. Returns the bytes read: short (down to
   * 0) where the cache ends or at end of file; -1 when the file system or kernel cannot read
   * without waiting (EOPNOTSUPP / ENOSYS: stop asking). Other errors throw (EBADF, EIO, …).
   * Not for O_DIRECT fds: there RWF_NOWAIT only avoids waiting for locks and allocation, the
   * read itself still goes to the device, straight into `views`.
   */
  preadCached(fd: number, views: readonly Uint8Array[], length: number, position: number): number;

  // ---- UNIX stream sockets --------------------------------------------------------------
  /**
   * socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC), bind(path) such that the socket
   * file has `mode` from creation (fchmod before bind), listen(backlog). Does not unlink.
   */
  socketListen(path: string, mode: number, backlog: number): number;
  /** accept4(SOCK_NONBLOCK | SOCK_CLOEXEC). EAGAIN → -1. */
  socketAccept(fd: number): number;
  /**
   * Blocking connect(path); the returned fd is non-blocking and CLOEXEC. Completes as soon as
   * the listener's backlog has room (the listener need not accept), so connecting to a listener
   * in the same process is fine unless its backlog is full; a signal interrupting that wait
   * (EINTR) makes it connect again, as the socket is still unconnected. With `noWait` true the connect never
   * blocks: a full backlog (EAGAIN) returns -1 — retry later. `noWait` other than a boolean or
   * undefined throws a TypeError (it is never guessed to mean "block").
   */
  socketConnect(path: string, noWait?: boolean): number;
  /** socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC). */
  socketPair(): [number, number];
  /**
   * sendmsg(fd, data, SCM_RIGHTS fds, MSG_NOSIGNAL) — one call. Returns bytes sent (may be short
   * on a stream); EAGAIN → -1. With `fds` empty no control message is attached. Passing fds
   * needs at least one data byte (RangeError otherwise); at most 253 fds.
   */
  sendMsg(fd: number, data: Uint8Array, fds: number[]): number;
  /**
   * recvmsg(fd, at most `length` bytes, control space for `maxFds` fds, MSG_CMSG_CLOEXEC).
   * Never asks the kernel for more than `length` bytes (`length` ≥ 1). EAGAIN → null.
   * `maxFds` is exact (0..253): if more fds arrived, `ctrunc` is set and the kernel closed the
   * excess. A message's fds never arrive with a later message's bytes.
   */
  recvMsg(fd: number, length: number, maxFds: number): RecvResult | null;
  /** getsockopt(SO_PEERCRED). */
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  /** Set or clear O_NONBLOCK. */
  setNonBlocking(fd: number, on: boolean): void;
  /** shutdown(fd, SHUT_RDWR). */
  shutdown(fd: number): void;
}

declare const binding: Binding;
export default binding;
