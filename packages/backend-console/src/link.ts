/**
 * Connect the console device to a vshm server as the back-end (peer 0, protocol 0xC003, §4.1)
 * and run the transport's VirtioBackend on it. Turns the usual start-up mistakes into one-line
 * LinkErrors: no server, the front-end got peer 0 first, a server that is not a console.
 *
 * Orderly close (§4.10 "Orderly shutdown", §3): VirtioBackend.close() (session ends, State :=
 * RESET), then the peer closes (Interrupt Control := 0, State 0, disconnect).
 */
import { EventEmitter } from 'node:events';
import { IvshmemPeer, VirtioBackend, VshmError, isVshmErrorCode, type VshmErrorCode } from '@vshm/transport';
import { VirtioDeviceId } from 'virtio-spec-types';
import type { VirtioDeviceOps } from '@vshm/transport';

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
  /** Orderly: State := RESET, then disconnect. Idempotent. */
  close(): Promise<void>;
}

const hex = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Events on the returned link: 'server-gone' (the server socket hung up), 'error' (err), and
 * 'phase' (backend phase) forwarded for diagnostics.
 */
export async function connectBackend(socketPath: string, ops: VirtioDeviceOps): Promise<BackendLink> {
  let peer: IvshmemPeer;
  try {
    peer = await IvshmemPeer.connect(socketPath);
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      throw new LinkError('VSHM_ERR_NO_SERVER', `no vshm server at ${socketPath} (start: vshm-server -l 64K -n 2 -V 3 -P 0x8003 -S ${socketPath})`, { cause: err });
    }
    if (code === 'VSHM_ERR_SERVER_EOF') {
      throw new LinkError(code, `the server at ${socketPath} closed the connection: no free peer id (is a back-end already running?)`, { cause: err });
    }
    if (code === 'EACCES') throw new LinkError('VSHM_ERR_NO_SERVER', `no permission to connect to ${socketPath}`, { cause: err });
    throw new LinkError(isVshmErrorCode(code) ? code : 'VSHM_ERR_CONNECT', `cannot connect to ${socketPath}: ${(err as Error).message}`, { cause: err });
  }
  const p = peer.protocol;
  const fail = (code: VshmErrorCode, msg: string): never => {
    peer.close();
    throw new LinkError(code, msg);
  };
  if (p < 0x8000) fail('VSHM_ERR_DEVICE_ID', `server protocol ${hex(p)} is not virtio (expected a server started with -P 0x8003)`);
  if ((p & 0x3fff) !== VirtioDeviceId.CONSOLE) fail('VSHM_ERR_DEVICE_ID', `server protocol ${hex(p)} is virtio device ${p & 0x3fff}, not a console (expected -P 0x8003)`);
  if ((p & 0xc000) !== 0xc000) {
    fail('VSHM_ERR_ROLE', `connected as peer ${peer.id} (front-end role, protocol ${hex(p)}): start the back-end first`);
  }
  let backend: VirtioBackend;
  try {
    backend = new VirtioBackend(peer, ops);
  } catch (err) {
    peer.close();
    throw new LinkError(err instanceof VshmError ? err.code : 'VSHM_ERR_TRANSPORT', (err as Error).message, { cause: err });
  }
  const link = new EventEmitter() as BackendLink & EventEmitter;
  let closing: Promise<void> | null = null;
  Object.defineProperties(link, {
    id: { value: peer.id, enumerable: true },
    protocol: { value: p, enumerable: true },
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
  backend.start();
  return link;
}
