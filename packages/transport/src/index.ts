/**
 * `@vshm/transport`: virtio over ivshmem v2 shared memory — the public API, what a device, a
 * driver or an application builds with. Four more doors: `@vshm/transport/cli` (the CLI kit every
 * vshm command is built with), `@vshm/transport/ring` (the split-ring engine alone, no ivshmem),
 * `@vshm/transport/testing` (mocks, loopback pair, hostile generator; never for product code)
 * and `@vshm/transport/inspect` (read-only decoding for `vshm-inspect`). test/index.test.ts pins
 * the runtime names below.
 *
 * @module index
 */

// Errors: every error vshm raises on purpose is a VshmError with a stable `code`.
export * from './errors.js';
export { ServerError } from './server/socket.js';
export { RingErrorCode, type RingErrorCodeValue } from './ring/validation.js';

// The plug-in API: ops tables for a device (back-end) or a driver (front-end), and what they get.
export type * from './virtio/device-api.js';

// Connecting: role checks (§4.1) and the one-call open for either side.
export * from './connect.js';

// The two transport sides (§4.10 state machines).
export { VirtioBackend, type VirtioBackendOptions, type BackendPhase } from './virtio/backend.js';
export { VirtioFrontend, type VirtioFrontendOptions, type FrontendPhase } from './virtio/frontend.js';
export type { TransactionOptions } from './virtio/frontend-transactions.js';
export type { TransportDescription, QueueDescription } from './virtio/describe.js';
export type { FrontendVectorMode } from './virtio/vectors.js';
export { DEFAULT_SPIN_US, type SpinOptions, type SpinStats } from './virtio/spin.js';

// The ivshmem peer (device model) the transport runs on, and the server it connects to.
export { IvshmemPeer, type PeerOptions } from './ivshmem/peer.js';
export { PEER_STATE_READY, PEER_STATE_RESET, type IvshmemDevice } from './ivshmem/device.js';
export type { SharedMemoryLayout } from './ivshmem/layout.js';
export { PROTOCOL_VIRTIO } from './ivshmem/protocol.js';
export { IvshmemServer, type IvshmemServerOptions } from './server/server.js';
export { DEFAULT_SOCKET_PATH, type MemorySource, type ServerOptions, type ServerOptionsInput } from './server/options.js';

// Owner-only local sockets (mode 0600, other uids refused): the console bridges use them.
export * from './local-socket.js';

// Debug logging that loads `debug` only when DEBUG is set (a CLI's start does not pay for it).
export { createLogger, type Logger } from './log.js';
