/**
 * Connect the console device to a vshm server as the back-end (peer 0, protocol 0xC003, §4.1)
 * through `openBackend`, as the front-end console uses `openFrontend`. Turns the usual start-up
 * mistakes into one-line LinkErrors: no server, the front-end got peer 0 first, a server that is
 * not a console; the transport's error is the `cause`.
 *
 * Orderly close (§4.10 "Orderly shutdown", §3): VirtioBackend.close() (session ends, State :=
 * RESET), then the peer closes (Interrupt Control := 0, State 0, disconnect).
 */
import { EventEmitter } from 'node:events';
import { openBackend, ProtocolError, VirtioRoleError, VshmError, type IvshmemPeer, type VirtioBackend, type VirtioDeviceOps, type VshmErrorCode } from '@vshm/transport';
import { describeIoError } from '@vshm/transport/cli';

/** A one-line start-up failure of the back-end link; `cause` holds the underlying error. */
export class LinkError extends VshmError {
  constructor(code: VshmErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, options?.cause instanceof VshmError ? options.cause.section : '', message, options);
  }
}

export interface BackendLink extends EventEmitter {
  /** INIT id (0 for a back-end). */
  readonly id: number;
  readonly protocol: number;
  /** INIT vectors: interrupt vectors every peer has. */
  readonly vectors: number;
  /** Orderly: State := RESET, then disconnect. Idempotent. */
  close(): Promise<void>;
}

const hex = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

/** The one-line LinkError for a failed openBackend (connect, §4.1 check or transport start). */
function linkError(err: unknown, socketPath: string): LinkError {
  const opts = { cause: err };
  if (err instanceof VirtioRoleError) {
    const p = hex(err.protocol);
    if (err.code === 'VSHM_ERR_DEVICE_ID') {
      return new LinkError(err.code, `server protocol ${p} is virtio device ${err.protocol & 0x3fff}, not a console (expected -P 0x8003)`, opts);
    }
    if (err.role === null) return new LinkError(err.code, `server protocol ${p} is not virtio (expected a server started with -P 0x8003)`, opts);
    if (err.role === 'front-end') {
      return new LinkError(err.code, `connected as peer ${String(err.peerId)} (front-end role, protocol ${p}): start the back-end first`, opts);
    }
    return new LinkError(err.code, err.message, opts); // max_peers ≠ 2
  }
  if (err instanceof VshmError) {
    if (err.code === 'VSHM_ERR_SERVER_EOF') {
      return new LinkError(err.code, `the server at ${socketPath} closed the connection: no free peer id (is a back-end already running?)`, opts);
    }
    // Other ProtocolErrors come from the connection (§1.8); the rest from the transport.
    const text = err instanceof ProtocolError ? describeIoError('connect to', socketPath, err) : err.message;
    return new LinkError(err.code, text, opts);
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOENT' || code === 'ECONNREFUSED') {
    return new LinkError('VSHM_ERR_NO_SERVER', `${describeIoError('connect to', socketPath, err)}; start a server: vshm-server -l 64K -n 2 -V 3 -P 0x8003 -S ${socketPath}`, opts);
  }
  if (code === 'EACCES') return new LinkError('VSHM_ERR_NO_SERVER', describeIoError('connect to', socketPath, err), opts);
  return new LinkError('VSHM_ERR_CONNECT', describeIoError('connect to', socketPath, err), opts);
}

/**
 * Connect through the transport's `openBackend` (the one connect path and §4.1 check). Events
 * on the returned link: 'server-gone' (the server socket hung up), 'error' (err), 'phase'
 * (backend phase) forwarded for diagnostics, and 'device-exception' (err, callback): a device
 * callback threw (the CLI prints the stack).
 */
export async function connectBackend(socketPath: string, ops: VirtioDeviceOps, status = false): Promise<BackendLink> {
  let peer: IvshmemPeer;
  let backend: VirtioBackend;
  try {
    // spin: false — the console back-end has always run on interrupts only.
    ({ peer, transport: backend } = await openBackend(socketPath, ops, { spin: false, status }));
  } catch (err) {
    throw linkError(err, socketPath);
  }
  const link = new EventEmitter() as BackendLink & EventEmitter;
  let closing: Promise<void> | null = null;
  Object.defineProperties(link, {
    id: { value: peer.id, enumerable: true },
    protocol: { value: peer.protocol, enumerable: true },
    vectors: { value: peer.vectors, enumerable: true },
  });
  link.close = () => {
    closing ??= (async () => {
      await backend.close();
      peer.close();
    })();
    return closing;
  };
  peer.on('server-gone', () => link.emit('server-gone'));
  peer.on('error', (err: Error) => link.emit('error', err));
  backend.on('error', (err: Error) => link.emit('error', err));
  backend.on('phase', (ph: string) => link.emit('phase', ph));
  backend.on('device-exception', (err: Error, callback: string) => link.emit('device-exception', err, callback));
  return link;
}
