export * from './errors.js';
export * from './ivshmem/layout.js';
export * from './ivshmem/device.js';
export * from './ivshmem/loopback.js';
export { IvshmemPeer, type PeerOptions } from './ivshmem/peer.js';
