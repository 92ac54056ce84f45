/**
 * `openBlock()`: connect to a vshm server as the virtio-blk front-end (peer 1, protocol 0x8002)
 * and run a BlockDriver on it, through the public `openFrontend` of '@vshm/transport'. With
 * `wait`, a missing server or a back-end not connected yet (we would get peer 0, the back-end
 * role) is retried, as `openConsole` does.
 */
import { openFrontend, type IvshmemPeer, type VirtioFrontend } from '@vshm/transport';
import { BlockDriver, type BlockDriverOptions } from './driver.js';
import { BlockError } from './errors.js';

export interface OpenBlockOptions extends BlockDriverOptions {
  /** vshm-server socket. Default '/tmp/ivshmem_socket'. */
  socketPath?: string;
  /** Retry while the back-end (or the server) is not there yet. Default false. */
  wait?: boolean;
  /** Delay between retries with `wait`, ms. Default 250. */
  retryMs?: number;
  onRetry?: (err: Error) => void;
  /** Publish a status file for `vshm-inspect` (the transport's `status` option). Default false; the CLI turns it on. */
  status?: boolean;
}

export interface BlockLink {
  readonly driver: BlockDriver;
  readonly peer: IvshmemPeer;
  readonly transport: VirtioFrontend;
  /** Orderly shutdown: fail queued requests, reset the device (§4.10), disconnect. Idempotent. */
  close(): Promise<void>;
}

function retryable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === 'VSHM_ERR_ROLE' || code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'VSHM_ERR_SERVER_EOF';
}

export async function openBlock(opts: OpenBlockOptions = {}): Promise<BlockLink> {
  const { socketPath = '/tmp/ivshmem_socket', wait = false, retryMs = 250, onRetry, status = false, ...driverOpts } = opts;
  if (typeof socketPath !== 'string' || socketPath.length === 0) throw new BlockError('VSHM_ERR_ARGUMENT', '', 'socketPath must be a non-empty string');
  for (;;) {
    const driver = new BlockDriver(driverOpts);
    try {
      const { peer, transport } = await openFrontend(socketPath, driver, { status });
      let closing: Promise<void> | null = null;
      return {
        driver,
        peer,
        transport,
        close() {
          closing ??= (async () => {
            driver.close();
            try {
              await transport.close();
            } finally {
              peer.close();
            }
          })();
          return closing;
        },
      };
    } catch (err) {
      if (!wait || !retryable(err)) throw err;
      onRetry?.(err as Error);
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }
}
