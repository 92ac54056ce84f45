/**
 * Connect the console device to a vshm server as the back-end (peer 0, protocol 0xC003, §4.1)
 * and run the transport's VirtioBackend on it. Turns the usual start-up mistakes into one-line
 * LinkErrors: no server, the front-end got peer 0 first, a server that is not a console.
 *
 * Orderly close (§4.10 "Orderly shutdown", §3): VirtioBackend.close() (session ends, State :=
 * RESET), then the peer closes (Interrupt Control := 0, State 0, disconnect).
 */
import { EventEmitter } from 'node:events';
import { IvshmemPeer, VirtioBackend, describeIoError } from '@vshm/transport';
import { VirtioDeviceId } from 'virtio-spec-types';
import type { VirtioDeviceOps } from '@vshm/transport';

export class LinkError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LinkError';
    this.code = code;
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
 * Events on the returned link: 'server-gone' (the server socket hung up), 'error' (err),
 * 'phase' (backend phase) forwarded for diagnostics, and 'device-exception' (err, callback): a
 * device callback threw (the CLI prints the stack).
 */
export async function connectBackend(socketPath: string, ops: VirtioDeviceOps): Promise<BackendLink> {
  let peer: IvshmemPeer;
  try {
    peer = await IvshmemPeer.connect(socketPath);
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      throw new LinkError('VSHM_ERR_NO_SERVER', `${describeIoError('connect to', socketPath, err)}; start a server: vshm-server -l 64K -n 2 -V 3 -P 0x8003 -S ${socketPath}`, { cause: err });
    }
    if (code === 'VSHM_ERR_SERVER_EOF') {
      throw new LinkError(code, `the server at ${socketPath} closed the connection: no free peer id (is a back-end already running?)`, { cause: err });
    }
    if (code === 'EACCES') throw new LinkError('VSHM_ERR_NO_SERVER', describeIoError('connect to', socketPath, err), { cause: err });
    throw new LinkError(code || 'VSHM_ERR_CONNECT', describeIoError('connect to', socketPath, err), { cause: err });
  }
  const p = peer.protocol;
  const fail = (code: string, msg: string): never => {
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
    throw new LinkError((err as { code?: string }).code ?? 'VSHM_ERR_TRANSPORT', (err as Error).message, { cause: err });
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
  backend.on('device-exception', (err: Error, callback: string) => link.emit('device-exception', err, callback));
  backend.start();
  return link;
}
