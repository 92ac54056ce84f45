/**
 * Connect helpers: connect an `IvshmemPeer` to a vshm-server, check the role and device id the
 * server assigned (spec §4.1), and put a virtio transport on it.
 *
 * Why the checks matter: the server hands out roles by connection order (§1.4, §1.5: peer 0 is the
 * back-end). A front-end that connects before its back-end becomes peer 0 and is told it is the
 * back-end — the most common setup mistake — so it must disconnect with a clear message instead of
 * hanging. Ownership: the caller gets both objects and closes the transport first, then the peer.
 */
import { TransportError } from './errors.js';
import { IvshmemPeer, type PeerOptions } from './ivshmem/peer.js';
import { VirtioBackend, type VirtioBackendOptions } from './virtio/backend.js';
import { VirtioFrontend, type VirtioFrontendOptions } from './virtio/frontend.js';
import type { DriverSession, VirtioDeviceOps, VirtioDriverOps } from './virtio/device-api.js';
import type { SpinOptions } from './virtio/spin.js';

export type VirtioRole = 'back-end' | 'front-end';

/** Role encoded in an INIT protocol (§4.1), or null for a non-virtio protocol (< 0x8000). */
export function roleOfProtocol(protocol: number): VirtioRole | null {
  if (protocol >= 0xc000 && protocol <= 0xffff) return 'back-end';
  if (protocol >= 0x8000) return 'front-end';
  return null;
}

/**
 * §4.1: check the protocol a peer received against the application's request. Throws
 * TransportError VSHM_ERR_ROLE (wrong or no virtio role) or VSHM_ERR_DEVICE_ID.
 */
export function checkVirtioRole(protocol: number, expected: VirtioRole, deviceId: number, peerId?: number): void {
  const role = roleOfProtocol(protocol);
  const hex = `0x${protocol.toString(16)}`;
  const who = peerId === undefined ? '' : ` as peer ${peerId}`;
  if (role === null) {
    throw new TransportError(
      'VSHM_ERR_ROLE',
      '4.1',
      `server protocol ${hex} is not virtio: start vshm-server with -P 0x${(0x8000 | deviceId).toString(16)}`,
    );
  }
  if (role !== expected) {
    const hint =
      role === 'back-end'
        ? 'connected as back-end: the back-end is not running — start the back-end first'
        : 'connected as front-end: another peer is already the back-end (or this process started second) — start the back-end first, alone';
    throw new TransportError('VSHM_ERR_ROLE', '4.1', `${hint} (protocol ${hex}${who})`);
  }
  const id = protocol & 0x3fff;
  if (id !== deviceId) {
    throw new TransportError(
      'VSHM_ERR_DEVICE_ID',
      '4.1',
      `server offers virtio device id ${id}, this ${expected} implements device id ${deviceId} (protocol ${hex})`,
    );
  }
}

export interface OpenBackendOptions extends Omit<VirtioBackendOptions, 'spin'> {
  /** Options of the IvshmemPeer connection. */
  peer?: PeerOptions;
  /** Adaptive spin after interrupts (virtio/spin.ts). Default on ($VSHM_SPIN_US µs); false: off. */
  spin?: SpinOptions | false;
}

export interface OpenFrontendOptions extends Omit<VirtioFrontendOptions, 'spin'> {
  /** Options of the IvshmemPeer connection. */
  peer?: PeerOptions;
  /** Adaptive spin after interrupts (virtio/spin.ts). Default on ($VSHM_SPIN_US µs); false: off. */
  spin?: SpinOptions | false;
}

/**
 * Connect as the back-end for `ops.deviceId`, check the role (§4.1) and start a VirtioBackend.
 * On a failed check the peer is closed and the TransportError is thrown.
 */
export async function openBackend(
  socketPath: string,
  ops: VirtioDeviceOps,
  opts: OpenBackendOptions = {},
): Promise<{ peer: IvshmemPeer; transport: VirtioBackend }> {
  const { peer: peerOpts, spin, ...beOpts } = opts;
  const peer = await IvshmemPeer.connect(socketPath, peerOpts);
  try {
    checkVirtioRole(peer.protocol, 'back-end', ops.deviceId, peer.id);
    const transport = new VirtioBackend(peer, ops, spin === false ? beOpts : { ...beOpts, spin: spin ?? {} });
    transport.start();
    return { peer, transport };
  } catch (err) {
    peer.close();
    throw err;
  }
}

/**
 * Connect as the front-end for `ops.deviceId`, check the role (§4.1) and start a VirtioFrontend.
 * `ready` resolves with the first session once the device is live (it is already marked handled:
 * ignoring it does not raise an unhandled rejection). On a failed check the peer is closed and
 * the TransportError is thrown.
 */
export async function openFrontend(
  socketPath: string,
  ops: VirtioDriverOps,
  opts: OpenFrontendOptions = {},
): Promise<{ peer: IvshmemPeer; transport: VirtioFrontend; ready: Promise<DriverSession> }> {
  const { peer: peerOpts, spin, ...feOpts } = opts;
  const peer = await IvshmemPeer.connect(socketPath, peerOpts);
  try {
    checkVirtioRole(peer.protocol, 'front-end', ops.deviceId, peer.id);
    const transport = new VirtioFrontend(peer, ops, spin === false ? feOpts : { ...feOpts, spin: spin ?? {} });
    const ready = transport.start();
    ready.catch(() => undefined);
    return { peer, transport, ready };
  } catch (err) {
    peer.close();
    throw err;
  }
}
