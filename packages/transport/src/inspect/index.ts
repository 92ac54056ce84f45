/**
 * `@vshm/transport/inspect`: the wire-format files a read-only inspector decodes with
 * (`vshm-inspect`), so that it never keeps a second copy of an offset: the §2 layout, the §4.2
 * header offsets and its ordered reader, the split-ring layout (§6.1), the state-table values,
 * and the status files the daemons publish (status-file.ts). Nothing here writes shared memory.
 */
export { SharedMemoryLayout, STATE_TABLE_SIZE, MAX_PEERS_LIMIT } from '../ivshmem/layout.js';
export { PEER_STATE_READY, PEER_STATE_RESET } from '../ivshmem/device.js';
export { PROTOCOL_VIRTIO } from '../ivshmem/protocol.js';
export { roleOfProtocol } from '../virtio/role.js';
export * from '../virtio/header.js';
export { SplitRingLayout, type QueueAddresses } from '../ring/ring-layout.js';
export type { QueueDescription, TransportDescription } from '../virtio/describe.js';
export {
  STATUS_FORMAT,
  statusDirectory,
  readStatusFile,
  listStatusFiles,
  StatusFileError,
  type StatusFile,
  type StatusQueue,
} from '../status-file.js';
