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
 *
 * Server restart (issue 9 item 6, opt-in here, the CLI's default): with `reconnect`, a server
 * that goes away is not the end. The transport first ends the session as it does for any
 * back-end loss (the ports keep what the device did not acknowledge), then the old peer is
 * closed and a new one connects to the same socket path with backoff; a new VirtioFrontend on
 * the NEW memory region re-initialises the device with the same ConsoleDriver, so the ports,
 * their streams and their unacknowledged output carry over and that output is re-sent once.
 * A server gone longer than `reconnect.timeoutMs` ends the console ('server-gone').
 */
import { EventEmitter } from 'node:events';
import { createLogger as createDebug, openFrontend, PEER_STATE_READY, PEER_STATE_RESET, VirtioRoleError, type IvshmemPeer, type OpenFrontendOptions, type VirtioFrontend } from '@vshm/transport';
import { describeIoError } from '@vshm/transport/cli';
import { ConsoleDriver, type ConsoleDriverOptions } from './driver.js';
import type { ConsolePort } from './port.js';
import { ConsoleError } from './errors.js';

const debug = createDebug('vshm:console-fe');

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
  /** Reconnect to a restarted server instead of ending with 'server-gone'. Default: off. */
  reconnect?: ReconnectOptions;
}

/** How to follow a server restart (issue 9 item 6). */
export interface ReconnectOptions {
  /** Give up ('server-gone') once the server has been gone this long, ms. */
  timeoutMs: number;
  /** First delay between connection attempts, doubled after each failed one. Default 50. */
  backoffMinMs?: number;
  /** Largest delay between attempts. Default 2000. */
  backoffMaxMs?: number;
}

/** Default backoff of a reconnect: 50 ms doubling to 2 s. */
export const RECONNECT_BACKOFF_MIN_MS = 50;
export const RECONNECT_BACKOFF_MAX_MS = 2000;
/**
 * After a role refusal (we connected first and got peer 0), the back-end is about to connect:
 * retry at this fixed pace, slower than the back-end's own role retry so that it wins the race
 * for peer 0 (both daemons reconnect at once after a server restart).
 */
const ROLE_RETRY_MS = 200;

/**
 * A connected console front-end. Events: 'ready' (first and every later device session),
 * 'lost' (err: the back-end went away; recovery follows) — forwarded from the driver;
 * 'server-gone' (the server socket closed: no back-end can ever come back on this memory, §1.8;
 * with `reconnect`: the server stayed away longer than the limit — the console is closed);
 * 'server-lost' (with `reconnect`: the server went away, reconnecting), 'server-back' (with
 * `reconnect`: connected to the restarted server, the device re-initialises);
 * 'error' (err: the connection failed for good, e.g. a protocol error; the peer is closed);
 * 'device-error' (err: the transport refused the device or found a broken ring; it resets and
 * waits or re-initialises by itself — informational);
 * 'device-warning' (message: a device fault the transport works around, e.g. a queue's device
 * vector out of range, §4.6 — informational);
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

/** Errors of a reconnect attempt worth another one: the server is not (yet) back, or busy. */
function reconnectable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return retryable(err) || code === 'VSHM_ERR_SOCKET' || code === 'VSHM_ERR_CONNECT_TIMEOUT' || code === 'ECONNRESET' || code === 'EAGAIN';
}

interface Link {
  readonly peer: IvshmemPeer;
  readonly transport: VirtioFrontend;
}

/** How long a back-end may take to stop after the server went away (see backendStopped). */
export const SERVER_GONE_GRACE_MS = 2000;

/**
 * Resolves once the back-end stopped touching the rings after the server went away, or after
 * SERVER_GONE_GRACE_MS (a back-end that died with the server never says so).
 *
 * Why: both peers learn of the server's end on their own, in any order, and the memory and the
 * eventfds still work. A front-end that read the used rings at once (§4.10 recovery) could miss
 * completions the still-running back-end publishes right after — console output it printed would
 * be sent again, input it completed would be lost. A back-end that sees the server gone ends its
 * session and sets its State to RESET (in the shared state table, still readable: the peer is
 * connected with keepPeersOnServerGone); after that store it touches nothing, so what the used
 * rings say is final.
 */
function backendStopped(peer: IvshmemPeer): Promise<void> {
  const partner = 1 - peer.id;
  const deadline = Date.now() + SERVER_GONE_GRACE_MS;
  return new Promise((resolve) => {
    const check = (): void => {
      let state = PEER_STATE_RESET;
      try {
        state = peer.peerState(partner);
      } catch {
        // the mapping is gone (closed meanwhile): nothing left to wait for
      }
      if (state !== PEER_STATE_READY || Date.now() >= deadline) resolve();
      else setTimeout(check, 2);
    };
    check();
  });
}

/** Ownership (connect.ts): close the transport first (orderly reset, State := RESET), then the peer. */
async function closeLink(link: Link): Promise<void> {
  try {
    await link.transport.close();
  } finally {
    link.peer.close();
  }
}

class ConsoleHandle extends EventEmitter implements Console {
  readonly driver: ConsoleDriver;
  private link: Link | null;
  private closing: Promise<void> | null = null;
  private closed = false;
  /** Wakes a reconnect backoff early on close(). */
  private wakeBackoff: (() => void) | null = null;
  /** The running reconnect, awaited by close(). */
  private reconnecting: Promise<void> | null = null;

  constructor(
    driver: ConsoleDriver,
    link: Link,
    private readonly socketPath: string,
    private readonly frontendOpts: OpenFrontendOptions,
    private readonly reconnect: Required<ReconnectOptions> | null,
  ) {
    super();
    this.driver = driver;
    this.link = link;
    driver.on('ready', (f: bigint) => this.emit('ready', f));
    // Our own close() ends the session too; that is not the back-end going away.
    driver.on('lost', (err: Error) => {
      if (this.closing === null) this.emit('lost', err);
    });
    this.bind(link);
  }

  get port(): ConsolePort {
    return this.driver.consolePort;
  }

  whenReady(): Promise<void> {
    if (this.driver.ready) return Promise.resolve();
    return new Promise((resolve) => this.driver.once('ready', () => resolve()));
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.wakeBackoff?.();
      await this.reconnecting;
      const link = this.link;
      this.link = null;
      if (link !== null) await closeLink(link);
    })();
    return this.closing;
  }

  /** Forward the events of one connection (one server lifetime). */
  private bind(link: Link): void {
    const { peer, transport } = link;
    // The transport must hear of the server's loss only once the back-end has stopped touching
    // the rings (see backendStopped): take its listener and call it ourselves.
    const transportListeners = peer.listeners('server-gone') as (() => void)[];
    for (const fn of transportListeners) peer.off('server-gone', fn);
    peer.once('server-gone', () => {
      void backendStopped(peer).then(() => {
        for (const fn of transportListeners) fn();
        if (this.closed) return; // close() took this link down meanwhile
        if (this.reconnect === null) this.emit('server-gone');
        else this.reconnecting ??= this.followRestart(link).finally(() => (this.reconnecting = null));
      });
    });
    transport.on('error', (err: Error) => this.emit('device-error', err));
    transport.on('warning', (message: string) => this.emit('device-warning', message));
    transport.on('lost', (err: Error & { code?: string }) => {
      if (err.code === 'VSHM_ERR_TXN_TIMEOUT') this.emit('transaction-timeout', err);
    });
    // A peer 'error' without a listener would throw; report it only if someone listens.
    peer.on('error', (err: Error) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
  }

  /**
   * The server of `old` went away: let the transport end the session (close() awaits its loop,
   * which fails what the device did not acknowledge back into the ports), drop the old memory,
   * then connect again with backoff until the server is back or the limit is reached.
   */
  private async followRestart(old: Link): Promise<void> {
    const r = this.reconnect as Required<ReconnectOptions>;
    const deadline = Date.now() + r.timeoutMs;
    this.emit('server-lost');
    this.link = null;
    await closeLink(old).catch((err: Error) => debug('closing the old link: %s', err.message));
    let backoff = r.backoffMinMs;
    for (;;) {
      if (this.closed) return;
      let wait = backoff;
      try {
        const { peer, transport } = await openFrontend(this.socketPath, this.driver, this.frontendOpts);
        const link = { peer, transport };
        if (this.closed) {
          await closeLink(link);
          return;
        }
        this.link = link;
        this.bind(link);
        this.emit('server-back');
        return;
      } catch (err) {
        if (!reconnectable(err)) {
          this.closed = true;
          if (this.listenerCount('error') > 0) this.emit('error', err);
          return;
        }
        debug('reconnect: %s', (err as Error).message);
        // A role refusal means the server is back and the back-end about to take peer 0.
        if ((err as { code?: unknown }).code === 'VSHM_ERR_ROLE') wait = ROLE_RETRY_MS;
        else backoff = Math.min(backoff * 2, r.backoffMaxMs);
      }
      if (Date.now() + wait > deadline) {
        this.closed = true;
        this.emit('server-gone', r.timeoutMs);
        return;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.wakeBackoff = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wakeBackoff = null;
    }
  }
}

function checkReconnect(r: ReconnectOptions | undefined): Required<ReconnectOptions> | null {
  if (r === undefined) return null;
  const { timeoutMs, backoffMinMs = RECONNECT_BACKOFF_MIN_MS, backoffMaxMs = RECONNECT_BACKOFF_MAX_MS } = r;
  for (const [name, v] of [['reconnect.timeoutMs', timeoutMs], ['reconnect.backoffMinMs', backoffMinMs], ['reconnect.backoffMaxMs', backoffMaxMs]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ConsoleError('VSHM_ERR_ARGUMENT', '', `${name} must be a positive integer, got ${String(v)}`);
  }
  if (backoffMaxMs < backoffMinMs) throw new ConsoleError('VSHM_ERR_ARGUMENT', '', `reconnect.backoffMaxMs ${backoffMaxMs} is below backoffMinMs ${backoffMinMs}`);
  return { timeoutMs, backoffMinMs, backoffMaxMs };
}

export async function openConsole(opts: OpenConsoleOptions = {}): Promise<Console> {
  const { socketPath = '/tmp/ivshmem_socket', wait = false, retryMs = 250, onRetry, transactionTimeoutMs, status = false, reconnect, ...driverOpts } = opts;
  if (typeof socketPath !== 'string' || socketPath.length === 0) {
    throw new ConsoleError('VSHM_ERR_ARGUMENT', '', 'socketPath must be a non-empty string');
  }
  if (!Number.isInteger(retryMs) || retryMs < 1) throw new ConsoleError('VSHM_ERR_ARGUMENT', '', `retryMs must be a positive integer, got ${String(retryMs)}`);
  const rc = checkReconnect(reconnect);
  const driver = new ConsoleDriver(driverOpts);
  // keepPeersOnServerGone: the back-end's State stays readable after the server's end (backendStopped).
  const feOpts = { ...(transactionTimeoutMs === undefined ? {} : { transactionTimeoutMs }), status, peer: { keepPeersOnServerGone: true } };
  for (;;) {
    try {
      const { peer, transport } = await openFrontend(socketPath, driver, feOpts);
      return new ConsoleHandle(driver, { peer, transport }, socketPath, feOpts, rc);
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
