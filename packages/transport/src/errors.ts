/**
 * Typed errors: every error vshm raises on purpose carries a stable `code`
 * (VSHM_ERR_*) and, where one applies, the spec section it enforces. Tests check the class and
 * `code`, never the message text.
 */

/**
 * Every `code` a vshm error carries, in one table, so a user can `switch` on
 * `err.code` exhaustively. Keys drop the `VSHM_ERR_` prefix. A test greps the repository for
 * `VSHM_ERR_` literals and fails if one is missing here.
 */
export const VshmErrorCode = {
  // --- Arguments and usage (checked at the edge) ---
  /** Bad argument to a public constructor or function, or a bad command line (CLIs exit 2). */
  ARGUMENT: 'VSHM_ERR_ARGUMENT',
  /** `@vshm/addon` was loaded but its native binding is not built (thrown by the addon as a plain Error). */
  ADDON_MISSING: 'VSHM_ERR_ADDON_MISSING',
  /** The host is big-endian; shared memory is little-endian. */
  ENDIAN: 'VSHM_ERR_ENDIAN',

  // --- vshm-server (§1.3, §1.9) ---
  /** Server: accepting a connection on the listening socket failed (reported as a warning). */
  ACCEPT: 'VSHM_ERR_ACCEPT',
  /** Server: INIT could not be sent to a new peer; the connection is closed (warning). */
  INIT_SEND: 'VSHM_ERR_INIT_SEND',
  /** Server: an operation that needs a started server ran before start() or after stop(). */
  NOT_RUNNING: 'VSHM_ERR_NOT_RUNNING',
  /** A socket path exists and is not a socket (server -S, console --port-socket); it is not replaced. */
  NOT_SOCKET: 'VSHM_ERR_NOT_SOCKET',
  /** A socket path is in use by a live listener, or that cannot be ruled out; it is not replaced. */
  SOCKET_IN_USE: 'VSHM_ERR_SOCKET_IN_USE',
  /** A `-M` shared-memory object is held open by another running process (a live server); it is not reused. */
  SHM_IN_USE: 'VSHM_ERR_SHM_IN_USE',
  /** A `-M` shared-memory object exists and another user could open it (not ours, or group/other bits); it is not reused. */
  SHM_UNSAFE: 'VSHM_ERR_SHM_UNSAFE',
  /** Server: a client of another uid (not ours, not root, not in `--peer-uids` / `VSHM_PEER_UIDS`) was closed before any message (warning). */
  PEER_UID: 'VSHM_ERR_PEER_UID',
  /** Server: the socket path cannot be inspected or a stale socket cannot be removed (§1.9). */
  SOCKET_PATH: 'VSHM_ERR_SOCKET_PATH',

  // --- Peer: connection and message validation (§1.1, §1.8) ---
  /** No vshm server listens at the socket path (or no permission to connect). */
  NO_SERVER: 'VSHM_ERR_NO_SERVER',
  /** Connecting to the server failed for another reason (the cause holds the system error). */
  CONNECT: 'VSHM_ERR_CONNECT',
  /** The server accepted no connection within the timeout (listen backlog full, §1.1). */
  CONNECT_TIMEOUT: 'VSHM_ERR_CONNECT_TIMEOUT',
  /** The process listening on the server socket is another user (not us, not root, not in `VSHM_SERVER_UIDS`). */
  SERVER_UID: 'VSHM_ERR_SERVER_UID',
  /** The server closed or reset the connection before the initial burst completed (no free id, §1.8). */
  SERVER_EOF: 'VSHM_ERR_SERVER_EOF',
  /** The initial message burst did not complete within the timeout (§1.8). */
  BURST_TIMEOUT: 'VSHM_ERR_BURST_TIMEOUT',
  /** Fewer than 8 bytes where a message header was expected (§1.2). */
  MSG_TRUNCATED: 'VSHM_ERR_MSG_TRUNCATED',
  /** A message `len` below 8 or above 4096 (§1.8). */
  MSG_LEN: 'VSHM_ERR_MSG_LEN',
  /** A message `len` below its type's minimum (INIT 40, EVENT_FD 16, PEER_GONE 12; §1.8). */
  MSG_SHORT: 'VSHM_ERR_MSG_SHORT',
  /** An unknown message type from a server of this version (§1.8). */
  MSG_TYPE: 'VSHM_ERR_MSG_TYPE',
  /** Messages out of order: not INIT first, or a second INIT (§1.8). */
  MSG_ORDER: 'VSHM_ERR_MSG_ORDER',
  /** A message carries the wrong number of fds (or PEER_GONE carries one; §1.8). */
  MSG_FDS: 'VSHM_ERR_MSG_FDS',
  /** The kernel truncated a message's control data (MSG_CTRUNC): fds were lost (§1.8). */
  MSG_CTRUNC: 'VSHM_ERR_MSG_CTRUNC',
  /** INIT or EVENT_FD arrived without the fd it must carry (§1.8). */
  MSG_NO_FD: 'VSHM_ERR_MSG_NO_FD',
  /** INIT `compatible_version` is not 2 (§1.8). */
  INIT_VERSION: 'VSHM_ERR_INIT_VERSION',
  /** INIT `max_peers` is 0 or above 1024 (§1.8). */
  INIT_MAX_PEERS: 'VSHM_ERR_INIT_MAX_PEERS',
  /** INIT `id` is not below `max_peers` (§1.8). */
  INIT_ID: 'VSHM_ERR_INIT_ID',
  /** INIT `vectors` is 0 or above 1024 (§1.8). */
  INIT_VECTORS: 'VSHM_ERR_INIT_VECTORS',
  /** INIT: a virtio protocol (≥ 0x8000) with `max_peers` ≠ 2 (§1.8). */
  INIT_PROTOCOL: 'VSHM_ERR_INIT_PROTOCOL',
  /** INIT: the memory is too small for the state table and output sections (§1.8, §2), or no regular file. */
  INIT_MEMORY: 'VSHM_ERR_INIT_MEMORY',
  /** INIT `output_section_size` of 2^53 or more, which no memory can hold (§1.8). */
  INIT_OUTPUT_SIZE: 'VSHM_ERR_INIT_OUTPUT_SIZE',
  /** EVENT_FD for an id not below `max_peers` (§1.8). */
  EVENTFD_ID: 'VSHM_ERR_EVENTFD_ID',
  /** EVENT_FD for a vector not below `vectors` (§1.8). */
  EVENTFD_VECTOR: 'VSHM_ERR_EVENTFD_VECTOR',
  /** EVENT_FD vectors of a peer not in ascending order from 0 (§1.8). */
  EVENTFD_ORDER: 'VSHM_ERR_EVENTFD_ORDER',
  /** EVENT_FD carries a descriptor that is not an eventfd (§1.8). */
  EVENTFD_KIND: 'VSHM_ERR_EVENTFD_KIND',
  /** PEER_GONE for the own id or for an id that is not present (§1.8). */
  PEER_GONE_ID: 'VSHM_ERR_PEER_GONE_ID',
  /** A doorbell or interrupt eventfd failed (§3). */
  EVENTFD: 'VSHM_ERR_EVENTFD',

  // --- Memory layout (§2) ---
  /** The sections do not fit the shared memory (§2). */
  LAYOUT: 'VSHM_ERR_LAYOUT',
  /** A section offset or size is not page-aligned, so it cannot be mapped (§2). */
  LAYOUT_ALIGN: 'VSHM_ERR_LAYOUT_ALIGN',
  /** The server's memory fd is read-only: the peer's read/write mapping fails with EACCES (§2). */
  MEMORY_READONLY: 'VSHM_ERR_MEMORY_READONLY',
  /** The memory fd is sealed, but not against shrinking: a shrink would SIGBUS every peer (§1.1). */
  MEMORY_SEALS: 'VSHM_ERR_MEMORY_SEALS',

  // --- Virtio transport (§4) ---
  /** The peer's INIT protocol has the wrong or no virtio role for this side, or max_peers ≠ 2 (§4.1). */
  ROLE: 'VSHM_ERR_ROLE',
  /** The server's virtio device id is not the one this side implements (§4.1). */
  DEVICE_ID: 'VSHM_ERR_DEVICE_ID',
  /** The front-end refuses the transport header (revision 0, size out of range; §4.2). */
  HEADER: 'VSHM_ERR_HEADER',
  /** The R/W section cannot hold the transport header (§4.2). */
  HEADER_SIZE: 'VSHM_ERR_HEADER_SIZE',
  /** A write transaction at offset 0 (§4.3). */
  TXN_OFFSET: 'VSHM_ERR_TXN_OFFSET',
  /** A write transaction was not completed by the back-end in time (§4.3). */
  TXN_TIMEOUT: 'VSHM_ERR_TXN_TIMEOUT',
  /** The device lacks VERSION_1/ACCESS_PLATFORM, or DRIVER_OK came without accepted features (§4.4, §4.5). */
  FEATURES: 'VSHM_ERR_FEATURES',
  /** The device cleared FEATURES_OK: it rejected the negotiated features (§4.5). */
  FEATURES_REJECTED: 'VSHM_ERR_FEATURES_REJECTED',
  /** A queue missing, already enabled or of a bad size (§4.6); on the BE, one enabled after DRIVER_OK. */
  QUEUE: 'VSHM_ERR_QUEUE',
  /** config_generation did not settle while the front-end read the config (§4.8). */
  CONFIG_BUSY: 'VSHM_ERR_CONFIG_BUSY',
  /** A device wrote its config outside initConfig/updateConfig (§4.8). */
  CONFIG_WRITE: 'VSHM_ERR_CONFIG_WRITE',
  /** The device set DEVICE_NEEDS_RESET (§6.3); the front-end resets it. */
  NEEDS_RESET: 'VSHM_ERR_NEEDS_RESET',
  /** The back-end left (State not READY, PEER_GONE, server gone); in-flight requests fail (§4.10). */
  BACKEND_LOST: 'VSHM_ERR_BACKEND_LOST',
  /** start() called twice, or after close() (§4.10). */
  STATE: 'VSHM_ERR_STATE',
  /** The front-end was closed; pending requests and start() fail (§4.10). */
  CLOSED: 'VSHM_ERR_CLOSED',
  /** The ivshmem device under the front-end was closed (§4.10). */
  DEVICE_CLOSED: 'VSHM_ERR_DEVICE_CLOSED',
  /** A session object was used after its session ended (§4.10), or a chain's views after its queue stopped (§4.5). */
  SESSION_DEAD: 'VSHM_ERR_SESSION_DEAD',
  /** A driver callback threw something that is not an Error (wrapped). */
  CALLBACK: 'VSHM_ERR_CALLBACK',
  /** A transport failure the back-end console's link reports without a more specific code. */
  TRANSPORT: 'VSHM_ERR_TRANSPORT',

  // --- Shared-memory allocator (§5) ---
  /** No shared memory left for a queue's rings (§5). */
  NO_MEMORY: 'VSHM_ERR_NO_MEMORY',
  /** A free that matches no allocation, or a double free (§5.1). */
  ALLOC_FREE: 'VSHM_ERR_ALLOC_FREE',

  // --- Split rings (§6); the RingErrorCode subset of the ring engine ---
  /** §6.1: queue size not a power of two in 1 … offered maximum. */
  QUEUE_SIZE: 'VSHM_ERR_QUEUE_SIZE',
  /** §6.1: a queue the front-end selected does not exist on the device. */
  QUEUE_ABSENT: 'VSHM_ERR_QUEUE_ABSENT',
  /** §6.1: ring address misaligned. */
  RING_ALIGN: 'VSHM_ERR_RING_ALIGN',
  /** §6.1/§6.2: ring not inside one readable (desc, avail) / writable (used) section. */
  RING_BOUNDS: 'VSHM_ERR_RING_BOUNDS',
  /** §6.3.1: avail.idx moved by more than the queue size. */
  AVAIL_JUMP: 'VSHM_ERR_AVAIL_JUMP',
  /** §6.3.2: head or next index ≥ queue size (or ≥ table entries inside an indirect table). */
  DESC_INDEX: 'VSHM_ERR_DESC_INDEX',
  /** §6.3.3: chain longer than the queue size / the indirect table (a loop). */
  DESC_LOOP: 'VSHM_ERR_DESC_LOOP',
  /** §6.3.4: buffer not inside one readable section. */
  DESC_BOUNDS: 'VSHM_ERR_DESC_BOUNDS',
  /** §6.3.4: device-writable buffer inside a section the device may only read. */
  DESC_WRITE_PERM: 'VSHM_ERR_DESC_WRITE_PERM',
  /** §6.3.4: addr + len wraps around 2^64. */
  DESC_OVERFLOW: 'VSHM_ERR_DESC_OVERFLOW',
  /** §6.3.5: a readable descriptor after a writable one. */
  DESC_ORDER: 'VSHM_ERR_DESC_ORDER',
  /** §6.3.6: INDIRECT not negotiated, with NEXT, nested, or a bad table length/placement. */
  INDIRECT: 'VSHM_ERR_INDIRECT',
  /** §6.3.7: head popped again while still in flight. */
  HEAD_IN_FLIGHT: 'VSHM_ERR_HEAD_IN_FLIGHT',
  /** §6.4: used.idx moved by more than the queue size. */
  USED_JUMP: 'VSHM_ERR_USED_JUMP',
  /** §6.4: used id ≥ queue size or not heading a chain in flight. */
  USED_ID: 'VSHM_ERR_USED_ID',
  /** §6.4: used len above the chain's writable length. */
  USED_LEN: 'VSHM_ERR_USED_LEN',

  // --- Console (§7) ---
  /** A console control message shorter than its header or its RESIZE payload (§7.2). */
  CONTROL_SHORT: 'VSHM_ERR_CONTROL_SHORT',
  /** The device removed the console port (DEVICE_REMOVE, §7.2); its stream fails. */
  PORT_REMOVED: 'VSHM_ERR_PORT_REMOVED',
  /** No live console device session (before the first probe or while recovering; §4.10). */
  NOT_READY: 'VSHM_ERR_NOT_READY',
  /** The console feature an operation needs (e.g. EMERG_WRITE) was not negotiated (§7.2). */
  FEATURE: 'VSHM_ERR_FEATURE',
  /** No console port with that id (§7.2). */
  NO_PORT: 'VSHM_ERR_NO_PORT',
  /** The front-end console cannot listen on its --port-socket path. */
  SOCKET: 'VSHM_ERR_SOCKET',

  // --- Block device (virtio-blk back-end) ---
  /** An image file or block device operation failed (the error names syscall, path and errno). */
  IMAGE: 'VSHM_ERR_IMAGE',
  /** virtio-blk driver: the device answered VIRTIO_BLK_S_IOERR. */
  BLK_IO: 'VSHM_ERR_BLK_IO',
  /** virtio-blk driver: the device answered UNSUPP, or does not offer the feature the call needs. */
  BLK_UNSUPPORTED: 'VSHM_ERR_BLK_UNSUPPORTED',
  /** virtio-blk driver: a write, discard or write-zeroes on a read-only device (VIRTIO_BLK_F_RO). */
  BLK_READ_ONLY: 'VSHM_ERR_BLK_READ_ONLY',
  /** virtio-blk driver: the byte range leaves the disk. */
  BLK_RANGE: 'VSHM_ERR_BLK_RANGE',
  /** virtio-blk driver: offset or length not a multiple of 512 bytes. */
  BLK_ALIGNMENT: 'VSHM_ERR_BLK_ALIGNMENT',
  /** virtio-blk driver: the device went away with the request in flight (it may or may not have been applied). */
  BLK_DEVICE_LOST: 'VSHM_ERR_BLK_DEVICE_LOST',
  /** virtio-blk driver: the request cannot fit the shared memory even with nothing in flight. */
  BLK_NO_MEMORY: 'VSHM_ERR_BLK_NO_MEMORY',
  /** virtio-blk driver: the driver was closed. */
  BLK_CLOSED: 'VSHM_ERR_BLK_CLOSED',
  /** NBD server: a client broke the NBD protocol; its connection is closed. */
  NBD_CLIENT: 'VSHM_ERR_NBD_CLIENT',
  /** vshm-server -p: the pid file is a symlink, belongs to a live process, or holds no pid. */
  PID_FILE: 'VSHM_ERR_PID_FILE',

  // --- Status files and vshm-inspect ---
  /** The status directory is not a private (0700, own uid, not a symlink) directory; no status file is published. */
  STATUS_DIR: 'VSHM_ERR_STATUS_DIR',
  /** A status file is not a vshm status file of this format, or belongs to another uid. */
  STATUS_FILE: 'VSHM_ERR_STATUS_FILE',
  /** vshm-inspect cannot attach: no such process, no access, no vshm shared memory found, or a layout that does not fit. */
  INSPECT: 'VSHM_ERR_INSPECT',

  // --- Test kit (@vshm/transport testing) ---
  /** The hostile-ring generator found an engine misbehaving (names the seed; §8 item 38). */
  HOSTILE_ASSERTION: 'VSHM_ERR_HOSTILE_ASSERTION',
} as const;

/** The union of every vshm error code: `switch (err.code)` over it is checked for exhaustiveness. */
export type VshmErrorCode = (typeof VshmErrorCode)[keyof typeof VshmErrorCode];

const CODES: ReadonlySet<string> = new Set(Object.values(VshmErrorCode));

/** Whether `code` is one of vshm's error codes (for errors of unknown origin, e.g. a `cause`). */
export function isVshmErrorCode(code: unknown): code is VshmErrorCode {
  return typeof code === 'string' && CODES.has(code);
}

/**
 * The base of every error vshm raises on purpose: a stable `code` from {@link VshmErrorCode} and,
 * where one applies, the spec section the check enforces.
 */
export class VshmError extends Error {
  readonly code: VshmErrorCode;
  /** Spec section (e.g. '1.8', '6.3') the check enforces, or '' when none applies. */
  readonly section: string;
  constructor(code: VshmErrorCode, section: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.section = section;
  }
}

/** A server message, or the sequence of them, broke §1.8 (client) or §1.2 (wire format). */
export class ProtocolError extends VshmError {}

/** A memory layout that does not fit (§2). */
export class LayoutError extends VshmError {}

/** Hostile or inconsistent ring contents (§6). */
export class RingError extends VshmError {}

/** Virtio transport failures: header, transactions, negotiation, peer loss (§4). */
export class TransportError extends VshmError {}

/** Bad arguments to a public constructor or CLI (checked at the edge). */
export class ArgumentError extends VshmError {
  constructor(message: string) {
    super('VSHM_ERR_ARGUMENT', '', message);
  }
}
