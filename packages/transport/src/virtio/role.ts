/**
 * The §4.1 rule, written once: which virtio role and device id an INIT protocol gives a peer, and
 * the check every side runs before it touches the shared memory (`VirtioBackend`,
 * `VirtioFrontend`, and through them `openBackend`/`openFrontend` and the console links).
 *
 * Why the check matters: the server hands out roles by connection order (§1.4, §1.5: peer 0 is
 * the back-end). A front-end that connects before its back-end becomes peer 0 and is told it is
 * the back-end — the most common setup mistake — so it must refuse with a clear message instead
 * of hanging.
 */
import { TransportError } from '../errors.js';

export type VirtioRole = 'back-end' | 'front-end';

/**
 * Role encoded in an INIT protocol (§4.1), or null for a non-virtio protocol: below 0x8000, or
 * above 0xFFFF (the INIT field is a u32, §4.1 assigns roles only in the 16-bit range; taking the
 * low half, as a C server that stores it in 16 bits would, could hand a peer a role nobody meant).
 */
export function roleOfProtocol(protocol: number): VirtioRole | null {
  if (protocol > 0xffff || protocol < 0x8000) return null;
  return protocol >= 0xc000 ? 'back-end' : 'front-end';
}

/**
 * A §4.1 refusal (code VSHM_ERR_ROLE or VSHM_ERR_DEVICE_ID), with what the server assigned so a
 * caller can word its own one-line message (the console CLIs do) without parsing this one.
 */
export class VirtioRoleError extends TransportError {
  /** The INIT protocol the peer received. */
  readonly protocol: number;
  /** The role that protocol gives (null: not virtio). */
  readonly role: VirtioRole | null;
  /** The role the application asked for. */
  readonly expected: VirtioRole;
  /** The device id the application implements. */
  readonly deviceId: number;
  /** The peer's INIT id, when known. */
  readonly peerId: number | undefined;
  constructor(
    code: 'VSHM_ERR_ROLE' | 'VSHM_ERR_DEVICE_ID',
    message: string,
    at: { protocol: number; expected: VirtioRole; deviceId: number; peerId?: number },
  ) {
    super(code, '4.1', message);
    this.protocol = at.protocol;
    this.role = roleOfProtocol(at.protocol);
    this.expected = at.expected;
    this.deviceId = at.deviceId;
    this.peerId = at.peerId;
  }
}

/**
 * §4.1: check the protocol a peer received against the application's request. Throws
 * VirtioRoleError VSHM_ERR_ROLE (wrong or no virtio role) or VSHM_ERR_DEVICE_ID.
 */
export function checkVirtioRole(protocol: number, expected: VirtioRole, deviceId: number, peerId?: number): void {
  const role = roleOfProtocol(protocol);
  const hex = `0x${protocol.toString(16)}`;
  const who = peerId === undefined ? '' : ` as peer ${peerId}`;
  const at = { protocol, expected, deviceId, peerId };
  if (role === null) {
    throw new VirtioRoleError(
      'VSHM_ERR_ROLE',
      `server protocol ${hex} is not virtio: start vshm-server with -P 0x${(0x8000 | deviceId).toString(16)}`,
      at,
    );
  }
  if (role !== expected) {
    const hint =
      role === 'back-end'
        ? 'connected as back-end: the back-end is not running — start the back-end first'
        : 'connected as front-end: another peer is already the back-end (or this process started second) — start the back-end first, alone';
    throw new VirtioRoleError('VSHM_ERR_ROLE', `${hint} (protocol ${hex}${who})`, at);
  }
  const id = protocol & 0x3fff;
  if (id !== deviceId) {
    throw new VirtioRoleError(
      'VSHM_ERR_DEVICE_ID',
      `server offers virtio device id ${id}, this ${expected} implements device id ${deviceId} (protocol ${hex})`,
      at,
    );
  }
}

/**
 * The whole §4.1 check of an ivshmem device a transport is built on: role and device id
 * ({@link checkVirtioRole}), and the two-peer link virtio needs (VSHM_ERR_ROLE otherwise).
 */
export function checkVirtioDevice(
  device: { readonly protocol: number; readonly id: number; readonly maxPeers: number },
  expected: VirtioRole,
  deviceId: number,
): void {
  checkVirtioRole(device.protocol, expected, deviceId, device.id);
  if (device.maxPeers !== 2 || device.id > 1) {
    throw new VirtioRoleError('VSHM_ERR_ROLE', `virtio needs max_peers 2, got ${device.maxPeers} (id ${device.id})`, {
      protocol: device.protocol,
      expected,
      deviceId,
      peerId: device.id,
    });
  }
}

/**
 * A transport needs an open device: a closed `IvshmemPeer` has released its mapping (a detached
 * window, which the header views would misreport as one too small) and a closed loopback device
 * never hears from its partner (the transport would wait for ever). Throws VSHM_ERR_DEVICE_CLOSED.
 */
export function checkDeviceOpen(device: { readonly id: number; isPresent(id: number): boolean }, who: string): void {
  if (!device.isPresent(device.id)) {
    throw new TransportError('VSHM_ERR_DEVICE_CLOSED', '4.10', `${who}: the ivshmem device is closed; connect a new one`);
  }
}
