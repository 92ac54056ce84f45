/**
 * `openConsole()`: connect to a vshm server as the console front-end (peer 1, protocol 0x8003)
 * and run a ConsoleDriver on it, through the public `openFrontend` of '@vshm/transport'.
 *
 * Start order (§1.4, §4.1): IDs are lowest-free, so a front-end that connects before the
 * back-end gets peer 0 and the back-end role; the transport then refuses with VSHM_ERR_ROLE.
 * By default that is an error; with `wait: true` we disconnect at once and retry after
 * `retryMs`, until the back-end holds peer 0. (While we briefly hold peer 0, a back-end that
 * connects gets peer 1 and refuses itself — so a back-end started during the wait may have to
 * be restarted, unless it retries too.) A missing server is retried the same way with `wait`.
 *
 * Once connected, the front-end never gives up on its own: if the back-end leaves, it waits for
 * a new one and re-initialises (§4.10); `close()` is the only way out.
 */
import { EventEmitter } from 'node:events';
import { describeIoError, openFrontend, VirtioRoleError, type IvshmemPeer } from '@vshm/transport';
import { ConsoleDriver, type ConsoleDriverOptions } from './driver.js';
import type { ConsolePort } from './port.js';
import { ConsoleError } from './errors.js';

export interface OpenConsoleOptions extends ConsoleDriverOptions {
  /** vshm-server socket. Default '/tmp/ivshmem_socket'. */
  socketPath?: string;
  /** Retry while the back-end (or the server) is not there yet, instead of failing. Default false. */
  wait?: boolean;
  /** Delay between retries with `wait`, ms. Default 250. */
  retryMs?: number;
  /** Called before each retry with the error that caused it. */
  onRetry?: (err: Error) => void;
  /** A header write transaction not completed within this time is a back-end failure (§4.3). Default 5000. */
  transactionTimeoutMs?: number;
  /** Publish a status file for `vshm-inspect` (the transport's `status` option). Default false; the CLI turns it on. */
  status?: boolean;
}

/**
 * A connected console front-end. Events: 'ready' (first and every later device session),
 * 'lost' (err: the back-end went away; recovery follows) — forwarded from the driver;
 * 'server-gone' (the server socket closed: no back-end can ever come back on this memory, §1.8);
 * 'error' (err: the connection failed for good, e.g. a protocol error; the peer is closed);
 * 'device-error' (err: the transport refused the device or found a broken ring; it resets and
 * waits or re-initialises by itself — informational);
 * 'transaction-timeout' (err: a header write transaction was not completed in time — the
 * back-end is READY but not answering; the transport treats it as lost and re-initialises, so
 * this repeats while the back-end stays stalled: policy, such as giving up, is the caller's).
 */
export interface Console extends EventEmitter {
  readonly driver: ConsoleDriver;
  /** The console port (port 0 unless CONSOLE_PORT named another). Same object across recoveries. */
  readonly port: ConsolePort;
  /** Resolves once a device session is live (immediately if it is). */
  whenReady(): Promise<void>;
  /** Orderly shutdown (§4.10): reset the device, State := RESET, disconnect. Idempotent. */
  close(): Promise<void>;
}

/** Errors worth a retry with `wait`: we got the back-end role, or no server (yet). */
function retryable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === 'VSHM_ERR_ROLE' || code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'VSHM_ERR_SERVER_EOF';
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class ConsoleHandle extends EventEmitter implements Console {
  readonly driver: ConsoleDriver;
  private readonly closeLink: () => Promise<void>;
  private closing: Promise<void> | null = null;

  constructor(driver: ConsoleDriver, peer: IvshmemPeer, transport: EventEmitter, closeLink: () => Promise<void>) {
    super();
    this.driver = driver;
    this.closeLink = closeLink;
    driver.on('ready', (f: bigint) => this.emit('ready', f));
    driver.on('lost', (err: Error) => this.emit('lost', err));
    peer.on('server-gone', () => this.emit('server-gone'));
    transport.on('error', (err: Error) => this.emit('device-error', err));
    transport.on('lost', (err: Error & { code?: string }) => {
      if (err.code === 'VSHM_ERR_TXN_TIMEOUT') this.emit('transaction-timeout', err);
    });
    // A peer 'error' without a listener would throw; report it only if someone listens.
    peer.on('error', (err: Error) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
  }

  get port(): ConsolePort {
    return this.driver.consolePort;
  }

  whenReady(): Promise<void> {
    if (this.driver.ready) return Promise.resolve();
    return new Promise((resolve) => this.driver.once('ready', () => resolve()));
  }

  close(): Promise<void> {
    this.closing ??= this.closeLink();
    return this.closing;
  }
}

export async function openConsole(opts: OpenConsoleOptions = {}): Promise<Console> {
  const { socketPath = '/tmp/ivshmem_socket', wait = false, retryMs = 250, onRetry, transactionTimeoutMs, status = false, ...driverOpts } = opts;
  if (typeof socketPath !== 'string' || socketPath.length === 0) {
    throw new ConsoleError('VSHM_ERR_ARGUMENT', '', 'socketPath must be a non-empty string');
  }
  if (!Number.isInteger(retryMs) || retryMs < 1) throw new ConsoleError('VSHM_ERR_ARGUMENT', '', `retryMs must be a positive integer, got ${String(retryMs)}`);
  const driver = new ConsoleDriver(driverOpts);
  for (;;) {
    try {
      const { peer, transport } = await openFrontend(socketPath, driver, transactionTimeoutMs === undefined ? { status } : { transactionTimeoutMs, status });
      // Ownership (connect.ts): close the transport first (orderly reset, State := RESET), then the peer.
      return new ConsoleHandle(driver, peer, transport, async () => {
        try {
          await transport.close();
        } finally {
          peer.close();
        }
      });
    } catch (err) {
      if (!wait || !retryable(err)) throw err;
      onRetry?.(err as Error);
      await delay(retryMs);
    }
  }
}

/** One line (without the program name) explaining why openConsole failed. */
export function describeOpenError(err: unknown, socketPath: string): string {
  const e = err as { code?: unknown; message?: unknown };
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  switch (e?.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
    case 'ENOTSOCK':
      return `${describeIoError('connect to', socketPath, err)}; start vshm-server first`;
    case 'EACCES':
      return describeIoError('connect to', socketPath, err);
    case 'VSHM_ERR_ROLE':
      // The front-end came first and got the back-end role; other role errors (a non-virtio
      // protocol, max_peers ≠ 2) keep the transport's message.
      if (err instanceof VirtioRoleError && err.role === 'back-end') {
        const proto = `0x${err.protocol.toString(16).toUpperCase().padStart(4, '0')}`;
        return `connected as peer ${String(err.peerId)} (back-end role, protocol ${proto}): start the back-end first, or use --wait`;
      }
      return msg;
    case 'VSHM_ERR_DEVICE_ID':
      return `the server's device is not a console (${msg}): start vshm-server with -P 0x8003`;
    case 'VSHM_ERR_SERVER_EOF':
      return `the server at ${socketPath} closed the connection: no free peer id (a back-end and a front-end are already connected?)`;
    default:
      // Any other errno error still names the socket (one CLI voice).
      return describeIoError('connect to', socketPath, err);
  }
}
