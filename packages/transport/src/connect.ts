/**
 * Connect helpers: connect an `IvshmemPeer` to a vshm-server and put a virtio transport on it.
 * The transport's constructor checks the role and device id the server assigned (spec §4.1, the
 * one rule in virtio/role.ts); on a refusal the peer is closed again. Ownership: the caller gets
 * both objects and closes the transport first, then the peer.
 */
import { IvshmemPeer, type PeerOptions } from './ivshmem/peer.js';
import { VirtioBackend, type VirtioBackendOptions } from './virtio/backend.js';
import { VirtioFrontend, type VirtioFrontendOptions } from './virtio/frontend.js';
import type { DriverSession, VirtioDeviceOps, VirtioDriverOps } from './virtio/device-api.js';
import type { SpinOptions } from './virtio/spin.js';
import { publishStatus } from './status-file.js';

export { roleOfProtocol, checkVirtioRole, checkVirtioDevice, VirtioRoleError, type VirtioRole } from './virtio/role.js';

export interface OpenBackendOptions extends Omit<VirtioBackendOptions, 'spin'> {
  /** Options of the IvshmemPeer connection. */
  peer?: PeerOptions;
  /**
   * Publish a status file for `vshm-inspect` (status-file.ts: 0600, written on phase changes
   * only, removed at close and exit). Default false; the vshm daemons turn it on.
   */
  status?: boolean;
  /** Adaptive spin after interrupts (virtio/spin.ts). Default on ($VSHM_SPIN_US µs); false: off. */
  spin?: SpinOptions | false;
}

export interface OpenFrontendOptions extends Omit<VirtioFrontendOptions, 'spin'> {
  /** Options of the IvshmemPeer connection. */
  peer?: PeerOptions;
  /**
   * Publish a status file for `vshm-inspect` (status-file.ts: 0600, written on phase changes
   * only, removed at close and exit). Default false; the vshm daemons turn it on.
   */
  status?: boolean;
  /** Adaptive spin after interrupts (virtio/spin.ts). Default on ($VSHM_SPIN_US µs); false: off. */
  spin?: SpinOptions | false;
}

/**
 * Connect as the back-end for `ops.deviceId`, check the role (§4.1) and start a VirtioBackend.
 * On a failed check the peer is closed and the VirtioRoleError (a TransportError) is thrown.
 */
export async function openBackend(
  socketPath: string,
  ops: VirtioDeviceOps,
  opts: OpenBackendOptions = {},
): Promise<{ peer: IvshmemPeer; transport: VirtioBackend }> {
  const { peer: peerOpts, spin, status, ...beOpts } = opts;
  const peer = await IvshmemPeer.connect(socketPath, peerOpts);
  try {
    // The constructor runs the §4.1 check (VirtioRoleError) before it touches the memory.
    const transport = new VirtioBackend(peer, ops, spin === false ? beOpts : { ...beOpts, spin: spin ?? {} });
    if (status === true) publishStatus(peer, transport);
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
  const { peer: peerOpts, spin, status, ...feOpts } = opts;
  const peer = await IvshmemPeer.connect(socketPath, peerOpts);
  try {
    // The constructor runs the §4.1 check (VirtioRoleError) before it touches the memory.
    const transport = new VirtioFrontend(peer, ops, spin === false ? feOpts : { ...feOpts, spin: spin ?? {} });
    if (status === true) publishStatus(peer, transport);
    const ready = transport.start();
    ready.catch(() => undefined);
    return { peer, transport, ready };
  } catch (err) {
    peer.close();
    throw err;
  }
}
