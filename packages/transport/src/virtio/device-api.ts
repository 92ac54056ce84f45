/**
 * The device plug-in API: ops tables a user implements to put a virtio device on
 * either side of the transport. The transport negotiates features, runs the status bits, sets up
 * queues, validates rings and recovers from peer loss once for every device; a device sees only
 * queues, chains (byte reader/writer) and its config space — never `ivshmem/` or the header.
 *
 * Threading: everything runs on the Node event loop. Callbacks must not throw; an exception from
 * a device callback is caught by the transport, logged, and fails the session (the BE sets
 * DEVICE_NEEDS_RESET, the FE resets and re-probes).
 */

/** Width of a config-space access in bytes. */
export type ConfigWidth = 1 | 2 | 4;

/** One field of a device's configuration space (offsets relative to the config start, §4.8). */
export interface ConfigField {
  readonly name: string;
  /** Offset inside the config space. */
  readonly offset: number;
  /** Natural width: driver writes use it (§4.3). */
  readonly width: ConfigWidth;
  /** True if the driver may write it (e.g. console `emerg_wr`); other driver writes are undone. */
  readonly driverWritable?: boolean;
}

/** Little-endian accessors over the config space in the shared header (offset 0x4C + offset). */
export interface ConfigSpace {
  readonly size: number;
  read(offset: number, width: ConfigWidth): number;
  /** Device side: only inside `initConfig` or `DeviceSession.updateConfig`. */
  write(offset: number, width: ConfigWidth, value: number): void;
}

/** Why a device session ended. */
export type SessionEndReason =
  | 'driver-reset' // device_status := 0 by the driver
  | 'driver-gone' // the front-end left READY or disconnected
  | 'needs-reset' // a ring violation (§6.3) broke the device
  | 'shutdown'; // local close

// ------------------------------------------------------------------------------------------
// Device side (back-end)
// ------------------------------------------------------------------------------------------

/** A descriptor chain popped from an available ring; a byte reader/writer over its buffers. */
export interface DeviceChain {
  readonly head: number;
  /** Total bytes of the device-readable descriptors. */
  readonly readableLength: number;
  /** Total bytes of the device-writable descriptors. */
  readonly writableLength: number;
  /** Copy readable bytes starting at `offset` into `dst`; returns the count copied. */
  read(dst: Uint8Array, offset?: number): number;
  /** Copy `src` into the writable bytes starting at `offset`; returns the count copied. */
  write(src: Uint8Array, offset?: number): number;
  /**
   * Zero-copy: views straight into shared memory of the device-readable segments, in chain
   * order (together `readableLength` bytes; no empty segments). For a device that consumes in
   * place — hands the bytes to a syscall, parses, checksums — instead of copying them out.
   *
   * Lifetime: valid from `pop()` until `push()` of this chain; afterwards the driver reuses the
   * buffers, and calling this throws. The array and the view objects are reused (a steady-state
   * call allocates nothing): do not keep or modify the array, and do not let anything keep a view
   * past push — e.g. a Node Writable may hold a chunk after `write()` returns, so copy first.
   *
   * Trust: the driver owns these bytes and may change them at any time (§6.2), also between two
   * reads of the same byte. A device that validates and then uses data must `read()` a private
   * copy (read once, check the copy); views are for consuming each byte once.
   *
   * Session end (`deactivate`, a queue disabled, a violation): the transport empties every chain
   * the device still holds — from then on this throws a RingError VSHM_ERR_SESSION_DEAD (the
   * chain belongs to a stopped queue), `read`/`write` copy 0 bytes and `push` of the chain is a
   * no-op on its old queue — so no call reaches the old buffers,
   * which the driver may already have reused (§4.5). What it cannot revoke is a view obtained
   * before: a `Uint8Array` keeps reaching shared memory for as long as something holds it
   * (only a closed ivshmem device detaches the mapping, leaving length 0). A device must drop its
   * views in `deactivate`, and must not let an asynchronous job (a file read into a writable
   * view) finish into one after it.
   */
  readableSegments(): readonly Uint8Array[];
  /**
   * Zero-copy: views of the device-writable segments, in order (together `writableLength` bytes),
   * to produce bytes in place. Same lifetime and reuse rules as `readableSegments()`; report the
   * bytes produced, counted from the start of the writable part, as `push(chain, written)`.
   */
  writableSegments(): readonly Uint8Array[];
}

/** A live queue as a device sees it. Valid from `activate` until `deactivate`. */
export interface DeviceQueueHandle {
  readonly index: number;
  /** Negotiated queue size. */
  readonly size: number;
  /**
   * Called by the transport after a kick (or any wake-up that may have brought buffers). The
   * device pops until null. Inside one call pop() yields at most `size` chains and then null even
   * if more are waiting; the transport calls onAvailable again on the next event-loop turn, so a
   * driver that re-posts as fast as the device consumes cannot starve the process. Re-entrancy:
   * not called while the device is inside pop/push/flush.
   */
  onAvailable: (() => void) | null;
  /** The next available chain, or null. After a ring violation the device is broken: null. */
  pop(): DeviceChain | null;
  /** Return `chain` with `written` bytes written to its writable part. Published by flush(). */
  push(chain: DeviceChain, written: number): void;
  /** Publish pushed used entries and notify the driver if it asked to be (EVENT_IDX/flags). */
  flush(): void;
}

/** What a device gets on DRIVER_OK. */
export interface DeviceSession {
  /** Negotiated feature bits (device-specific and transport bits). */
  readonly features: bigint;
  /** Queues by index; undefined for queues the driver did not enable. */
  readonly queues: readonly (DeviceQueueHandle | undefined)[];
  /** Update config by the generation rule (§4.8), then raise a config event. */
  updateConfig(mutate: (config: ConfigSpace) => void): void;
  /** Raise a config event without changing config (console: on DRIVER_OK, §7.3). */
  notifyConfig(): void;
}

/**
 * The shared memory a driver sets up its rings and buffers in, as the device sees it when the
 * transport asks `queueMaxSize` (§2, §5): sizes of the sections of this region. A device that
 * wants its offer to fit the memory — a console whose Linux driver keeps every receive queue full
 * of page-sized bounce buffers — derives its queue sizes from it.
 */
export interface DeviceMemory {
  /**
   * RW: bytes of the R/W section (§2), header included. A Linux front-end (and a vshm front-end
   * with OUT = 0) allocates every ring and buffer here (§5.1).
   */
  readonly rwSize: number;
  /**
   * OUT: bytes of each peer's output section (§2); 0 when there are none. With OUT ≠ 0 a vshm
   * front-end places its rings and buffers in the two output sections instead (§5.2); a Linux
   * front-end still uses the R/W section.
   */
  readonly outputSectionSize: number;
  /** Bytes of the virtio header at the start of the R/W section (§4.2), which no driver allocates. */
  readonly headerSize: number;
}

/** The ops table of a virtio device (back-end side). */
export interface VirtioDeviceOps {
  /** VIRTIO device id (console 3, rng 4). The protocol's `dev` must match (§4.1). */
  readonly deviceId: number;
  /**
   * Feature bits this device offers: device-specific bits 0–23 plus optional
   * RING_INDIRECT_DESC / RING_EVENT_IDX. The transport always adds VERSION_1, ACCESS_PLATFORM and
   * ORDER_PLATFORM, and never offers RING_PACKED (§4.4).
   */
  readonly features: bigint;
  /** Number of queues under `features` (offered set before FEATURES_OK, negotiated after). */
  queueCount(features: bigint): number;
  /**
   * Maximum size offered for queue `index` (power of two, 1…32768). Called once per queue when
   * the transport is built on a region, before any driver is there; `memory` describes that
   * region's sections, for a device whose offer follows the memory (a device may ignore it).
   */
  queueMaxSize(index: number, memory: DeviceMemory): number;
  /** Size of the config space in bytes (the header `size` is derived from it). */
  readonly configSize: number;
  readonly configFields: readonly ConfigField[];
  /** Fill defaults into the freshly zeroed config space (every header initialisation). */
  initConfig(config: ConfigSpace): void;
  /** Return false to reject a feature set the driver proposes (FEATURES_OK is then cleared). */
  acceptFeatures?(features: bigint): boolean;
  /** The driver wrote a driverWritable field; `value` is already stored. Any status. */
  configWritten?(field: ConfigField, value: number): void;
  /** DRIVER_OK: queues are live. */
  activate(session: DeviceSession): void;
  /** The session ended: stop touching its queues and chains now. */
  deactivate(reason: SessionEndReason): void;
}

// ------------------------------------------------------------------------------------------
// Driver side (front-end)
// ------------------------------------------------------------------------------------------

/** A live queue as a driver sees it. Valid from `probe` until `remove`. */
export interface DriverQueueHandle<T = unknown> {
  readonly index: number;
  /** Negotiated queue size. */
  readonly size: number;
  /**
   * Post a request. `out` (may be null/empty) is copied into shared memory the device reads;
   * `inLen` bytes of device-writable space are reserved (0 for none). Returns false — and posts
   * nothing — when descriptors or shared memory are short: retry after a completion.
   */
  add(out: Uint8Array | null, inLen: number, token: T): boolean;
  /**
   * Scatter-gather posting, the shape of Linux `virtqueue_add_sgs`: one request made of
   * device-readable segments `out` then device-writable segments `in_`, one descriptor per
   * segment, in order (virtio-blk: header | data… ‖ data… | status).
   *
   * - `out[k]`: a `Uint8Array` of ≥ 1 bytes. A live view from this queue's `allocOut` is posted
   *   in place (zero-copy; freed when the request completes or fails); any other bytes are copied
   *   into shared memory now (the caller may reuse its array at once).
   * - `in_[k]`: a length ≥ 1 of device-writable space, or a caller `Uint8Array` that receives the
   *   bytes the device wrote into that segment (copied out just before `onUsed`, at most the part
   *   of the written length `len` that falls into the segment; the rest of the array is untouched).
   *   `onUsed` also gets a view per writable segment.
   *
   * With RING_INDIRECT_DESC negotiated, a request of two or more segments takes one ring slot (an
   * indirect table in shared memory); without it, a chain of one descriptor per segment. At most
   * `size` segments (VIRTIO 1.2 §2.7.5.3.1: no chain longer than the queue). Returns false — posting
   * nothing, every allocOut view still the caller's — when descriptors or shared memory are short:
   * retry after a completion, as for `add()`. Throws ArgumentError for malformed segments (empty,
   * a shared-memory view that is not a live allocOut of this queue, the same view twice).
   * Optional in the interface (test doubles may lack it); the transport's queues have it.
   */
  addSgs?(out: readonly Uint8Array[], in_: readonly (number | Uint8Array)[], token: T): boolean;
  /** Publish added requests and notify the device if it asked to be. */
  kick(): void;
  /**
   * A completed request. `data` views the device-written bytes (first `len`, already validated
   * against the reserved size, §6.4) and is valid only during the call: copy what you keep.
   * `segments` views the written bytes per device-writable segment, in posting order: segment k
   * holds the part of the first `len` bytes that falls into it (so a segment past `len` is empty).
   * `data` is `segments[0]` (empty without writable segments) — the whole answer for `add()` and
   * `addAllocated()`, which post one writable segment. Neither the views nor the array may be kept.
   */
  onUsed: ((token: T, data: Uint8Array, segments: readonly Uint8Array[]) => void) | null;
  /**
   * Optional: called once after a run of `onUsed` calls — every completion one look at the used
   * ring found (an interrupt, a poll, a spin round, the acknowledged completions of an ending
   * session) — and not called when the run delivered nothing. A consumer can gather work over the
   * run (one stream push for many receive buffers, one refill and kick) and do it here, while the
   * run's completions are known to be all there are for now. Exceptions count like `onUsed`'s.
   * The transport's queues have it (initially null); test doubles may lack it.
   */
  onUsedBatch?: (() => void) | null;
  /** A request that will never complete (device lost, reset or broken): the token comes back. */
  onFailed: ((token: T, err: Error) => void) | null;
  /** Requests posted and not yet completed or failed. */
  readonly inFlight: number;
  /**
   * Optional: false once the session of this queue is ending or over — it then accepts nothing.
   * During recovery the transport still delivers, through `onUsed`, the completions the device
   * acknowledged (§4.10) before it fails the rest; a producer that reacts to such a completion
   * can tell a dead queue from a full one by this flag. The transport's queues have it.
   */
  readonly live?: boolean;
  /**
   * Optional zero-copy posting (the transport's queues have it; test doubles may not): a
   * device-readable buffer of `len` ≥ 1 bytes in shared memory, zeroed, to fill in place. Null
   * when memory or ring space is short (retry after a completion) or the session ended. Post it with
   * `addAllocated`, or give it back with `freeOut`. With `init` (at most `len` bytes) the buffer
   * starts with a copy of it and only the rest is zeroed (one memory pass instead of two).
   *
   * The view belongs to the current session. Once posted, the device may read it until the
   * request completes: do not write to it any more. In `onFailed` its bytes are still readable
   * — take a copy there if they must be re-sent after recovery (§4.10) — unless the ivshmem
   * device itself was closed (the mapping is then detached: length 0). After `onUsed`/`onFailed`
   * returns, the buffer is freed or gone with the session.
   *
   * Ownership: the view is the caller's from here until it is posted (`addAllocated`, `addSgs`
   * returning true) or given back (`freeOut`); the methods that take a view back accept only an
   * object this session's `allocOut` returned and the caller still holds — the view carries its
   * session's mark (a private symbol-keyed property), not just an offset — and throw ArgumentError
   * for any other (posted or given back already, made by hand over the window or by `subarray`,
   * or of an earlier session even where the next session's buffer lies on the same span). On
   * this queue once its session ended, `addAllocated` returns false and `freeOut` does nothing:
   * the memory went with the session.
   *
   * Not revocable: a view is a plain `Uint8Array` over shared memory. After its session ended —
   * or after it was posted or freed — writing through it still reaches the memory, which may by
   * then hold another request's buffer or a ring of the next session (and reading it shows their
   * bytes). Drop views when they are posted or given back, and in `remove()` at the latest.
   */
  allocOut?(len: number, init?: Uint8Array): Uint8Array | null;
  /**
   * Post `view` (from `allocOut` of this queue, filled in place) plus `inLen` device-writable
   * bytes. False — keeping `view` allocated: retry later or `freeOut` it — when descriptors or
   * memory are short, or the queue's session ended. ArgumentError for a view the caller does not
   * hold (see `allocOut`, "Ownership").
   */
  addAllocated?(view: Uint8Array, inLen: number, token: T): boolean;
  /**
   * Give back an `allocOut` view that was not posted. A no-op once the queue's session ended;
   * ArgumentError for a view the caller does not hold (see `allocOut`, "Ownership").
   */
  freeOut?(view: Uint8Array): void;
  /**
   * Optional: a producer waits for the requests in flight to complete (a flush, `end()`), not
   * for ring space. Completions are then noticed even from a back-end that never notifies this
   * queue (§4.9: the Jailhouse console skips transmit completions), as after a refused `add()`,
   * until one arrives; call again while the wait goes on. A no-op with nothing in flight.
   */
  awaitCompletions?(): void;
  /**
   * Optional, only inside `onUsed` of a request posted by `add(null, inLen, token)` (one
   * device-writable buffer, nothing readable): post that same request again once `onUsed`
   * returns — the same shared buffer, the same `inLen` and token — instead of freeing its buffer.
   * The buffer is not zeroed again: it holds only bytes the device itself wrote into it (or the
   * zeroes of its allocation), so re-posting shows the device nothing it did not already have
   * (docs/decisions.md, "Receive buffers re-posted in place"). It stays unpublished until the
   * next `kick()`, like any add. Returns false — and the buffer is freed as usual — outside such
   * an `onUsed` call, once the session is ending, or when an `add` earlier in the same `onUsed`
   * took the descriptor the completion freed. Once it returned true, that room is held for the
   * repost: a later `add` in the same call is turned away as on a full ring. A receive queue kept
   * full this way allocates and zeroes nothing per completion. The transport's queues have it.
   */
  repost?(): boolean;
}

/**
 * Read-only config access for a driver before its queues exist (`VirtioDriverOps.queueCount`):
 * reads honour `config_generation` (§4.8) and check the BE entry while the generation is odd, like
 * `DriverSession.readConfig`. Valid only during the call it is passed to.
 */
export interface ConfigReader {
  /** Bytes of config space (header `size` − 0x4C, §4.2); reads beyond it throw. */
  readonly size: number;
  read(offset: number, width: ConfigWidth): number;
  /** Several fields under one generation check: see `DriverSession.readConfigMany`. */
  readMany<T>(fn: (read: (offset: number, width: ConfigWidth) => number) => T): T;
}

/** What a driver gets once the device is live (after DRIVER_OK). */
export interface DriverSession {
  readonly features: bigint;
  /** Queues by index, as set up for the negotiated features. */
  readonly queues: readonly DriverQueueHandle[];
  /**
   * Read one config field honouring `config_generation` (§4.8). Two calls are two generation
   * checks: fields that belong together — a u64 such as virtio-blk `capacity`, console
   * `cols`/`rows` — can come from two different updates. Read those with `readConfigMany`.
   */
  readConfig(offset: number, width: ConfigWidth): number;
  /**
   * Read several config fields under ONE generation check (§4.8), as Linux's virtio_cread64 and
   * __virtio_cread_many do: `fn` reads every field it needs through `read` (same offsets, widths
   * and checks as `readConfig`) and returns what it made of them. If the back-end updated config
   * while `fn` ran, `fn` runs again — so it may run more than once and must only read and
   * compute (no side effects) — and the value returned is one `fn` computed from a single
   * generation: never a torn pair. `read` is valid only during the call. Throws what `readConfig`
   * throws (ArgumentError, VSHM_ERR_SESSION_DEAD, VSHM_ERR_BACKEND_LOST, VSHM_ERR_CONFIG_BUSY
   * for a generation that never settles) and what `fn` throws (not retried).
   *
   * @example const [cols, rows] = session.readConfigMany((read) => [read(0, 2), read(2, 2)]);
   */
  readConfigMany<T>(fn: (read: (offset: number, width: ConfigWidth) => number) => T): T;
  /** Write a config field by transaction (§4.3); resolves when the BE completed it. */
  writeConfig(offset: number, width: ConfigWidth, value: number): Promise<void>;
}

/** Buffers a driver keeps posted on one queue (`VirtioDriverOps.queueBuffers`). */
export interface QueueBuffers {
  /** `count` device-readable buffers of `bytes` each (e.g. one transmit piece). */
  readonly readable?: { readonly bytes: number; readonly count: number };
  /** `count` device-writable buffers of `bytes` each (e.g. a full receive queue). */
  readonly writable?: { readonly bytes: number; readonly count: number };
}

/** The ops table of a virtio driver (front-end side). */
export interface VirtioDriverOps {
  readonly deviceId: number;
  /**
   * Device-specific (0–23) and ring feature bits the driver accepts. Negotiated = offered ∩
   * (these ∪ VERSION_1 ∪ ACCESS_PLATFORM ∪ ORDER_PLATFORM).
   */
  readonly features: bigint;
  /**
   * Number of queues to set up for the negotiated features. Called after FEATURES_OK was
   * accepted and before the first queue is selected (§4.10 FE step (5)), so the count may depend
   * on config (console: 2·`max_nr_ports` + 2 with MULTIPORT, §7.2) — Linux's virtio_console reads
   * `max_nr_ports` at the same point. The transport refuses the device (status FAILED) if the
   * count names a queue the device does not offer.
   */
  queueCount(features: bigint, config: ConfigReader): number;
  /**
   * Size wanted for queue `index` (≤ offeredMax; rounded down to a power of two); default
   * offeredMax. The transport then takes the largest power of two not above it whose rings — and
   * the buffers `queueBuffers` declares — fit the shared memory left, keeping room for a 1-entry
   * ring (plus its buffers) of every later queue, as Linux and virtio let a driver choose any
   * power of two ≤ the offered maximum (§4.6 step 3). If not even size 1 fits, the device is
   * refused with VSHM_ERR_NO_MEMORY.
   */
  queueSize?(index: number, offeredMax: number): number;
  /**
   * Optional: the buffers the driver keeps in flight on queue `index` once it has `size`
   * entries (a console keeps its receive queue full of `size` receive buffers), so the size the
   * transport picks leaves memory for them. Called after feature negotiation, once per size tried.
   */
  queueBuffers?(index: number, size: number, features: bigint): QueueBuffers;
  /** The device is live. Called again after every recovery (§4.10), with a new session. */
  probe(session: DriverSession): void;
  /**
   * The device went away or broke. Every in-flight request was returned through `onFailed`
   * first; the session must not be used any more. The transport recovers and re-probes.
   */
  remove(reason: Error): void;
  /** A config event (§4.9, vector 0 with `config_event` set). */
  configChanged?(session: DriverSession): void;
}
