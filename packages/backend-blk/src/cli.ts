/**
 * `vshm-blk-backend IMAGE`: the virtio-blk device on a vshm server (see USAGE in cli-args.ts).
 *
 * Exit: 0 after SIGINT/SIGTERM (transport closed: State := RESET then disconnect; image closed);
 * 1 on runtime failures (one line naming the path and the errno code); 2 on bad arguments. The
 * back-end outlives its front-ends: the transport re-initialises after each one leaves.
 *
 * A terminal on stdout or stderr is written asynchronously (`asyncTerminalOutput`): one that
 * stalls holds the link-state lines, not the device — I/O goes on being served. Every exit waits
 * for the queued output, for as long as it moves (`exitAfterOutput`: 2 s without progress ends it).
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { createLogger, openBackend, type IvshmemPeer, type VirtioBackend } from '@vshm/transport';
import { asyncTerminalOutput, describeIoError, deviceCapabilities, exitAfterOutput, exitOnUncaughtException, parseOrUsage, printDiagnostic, type DeviceCapabilities } from '@vshm/transport/cli';
import { BlkFeature, VirtioDeviceId, hasFeature } from 'virtio-spec-types';
import { parseCliArgs, CLI_OPTIONS, PROG, USAGE, type BlkCliOptions } from './cli-args.js';
import { BlockDevice, blockDeviceFeatures, openBlockDevice } from './device.js';
import { ImageError } from './image.js';

const debug = createLogger('vshm:blk-be');

/** --print-capabilities: what this command line would offer (vhost-user back-end convention). */
export function capabilities(o: Pick<BlkCliOptions, 'readOnly' | 'queues'>): DeviceCapabilities {
  const ops = {
    deviceId: VirtioDeviceId.BLOCK,
    features: blockDeviceFeatures({ readOnly: o.readOnly, queues: o.queues }),
    queueCount: (f: bigint) => (hasFeature(f, BlkFeature.MQ) ? o.queues : 1),
  };
  return deviceCapabilities('block', ops, BlkFeature, CLI_OPTIONS);
}

/** One stderr line (the kit's printDiagnostic: it may quote the image path, escaped). */
function say(line: string): void {
  printDiagnostic(PROG, line);
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0];
}

/**
 * MSG_CTRUNC on the server socket: the transport's message asks whether the open-file limit was
 * reached (the usual cause at our end); this adds what the limit is.
 */
function fdLimitHint(err: unknown): string {
  return (err as { code?: unknown } | null)?.code === 'VSHM_ERR_MSG_CTRUNC' ? ` (the open-file limit here: ${currentFdLimit()})` : '';
}

function currentFdLimit(): string {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    return line?.split(/\s{2,}/)[1] ?? '?';
  } catch {
    return '?';
  }
}

class Runtime {
  readonly opts: BlkCliOptions;
  device: BlockDevice | null = null;
  peer: IvshmemPeer | null = null;
  transport: VirtioBackend | null = null;
  private exiting = false;

  constructor(opts: BlkCliOptions) {
    this.opts = opts;
  }

  info(line: string): void {
    if (!this.opts.quiet) say(line);
  }

  async shutdown(code: number, message?: string): Promise<never> {
    if (this.exiting) return new Promise<never>(() => {});
    this.exiting = true;
    try {
      await this.transport?.close(); // State := RESET, then disconnect (§4.10)
    } catch {
      // exiting anyway
    }
    this.peer?.close();
    await this.device?.drain(); // writes already started reach the file before it is closed
    await this.device?.image.close().catch(() => undefined);
    if (message !== undefined) say(message);
    return exitAfterOutput(code);
  }

  /** SIGHUP: re-read the image size. Before the image is open there is nothing to do: the open reads it. */
  resize(): void {
    const device = this.device;
    if (device === null || this.exiting) return;
    device.resize().then(
      (sectors) => this.info(`image resized: ${sectors} sectors`),
      (err: unknown) => say(`resize failed: ${firstLine(err)}`),
    );
  }

  /** One warning when the disk the guest sees differs from the file: empty, or a partial last block. */
  private async warnOddSize(image: string, device: BlockDevice): Promise<void> {
    const size = await device.image.size().catch(() => null);
    const block = device.blockSize;
    if (size === 0) say(`warning: ${image} is empty: the disk has 0 sectors`);
    else if (size !== null && size % block !== 0) {
      const what = block === 512 ? '512' : `the block size ${block}`;
      say(`warning: ${image} is ${size} bytes, not a multiple of ${what}: its last ${size % block} bytes are not served`);
    }
  }

  async run(): Promise<void> {
    const o = this.opts;
    const image = o.image as string;
    try {
      this.device = await openBlockDevice(image, {
        readOnly: o.readOnly,
        queues: o.queues,
        queueSize: o.queueSize,
        blockSize: o.blockSize,
        serial: o.serial,
        cache: o.cache,
      });
    } catch (err) {
      // ImageError keeps the fs error as its cause: the line names the path and the errno. One
      // of its own (not a file or block device) has no cause: its errno and reason, path once.
      if (err instanceof ImageError && err.cause === undefined) {
        return this.shutdown(1, `cannot open image ${image}: ${err.errnoCode} (${err.reason})`);
      }
      const cause = err instanceof ImageError ? err.cause : err;
      const line = describeIoError('open image', image, cause);
      return this.shutdown(1, (line.startsWith('cannot ') ? line : `cannot open image ${image}: ${line}`) + readOnlyHint(image, o.readOnly, cause));
    }
    const device = this.device;
    await this.warnOddSize(image, device);
    device.on('io-error', (err: Error) => say(`image I/O failed: ${err.message}`));
    try {
      ({ peer: this.peer, transport: this.transport } = await openBackend(o.server, device, { status: true }));
    } catch (err) {
      const line = describeIoError('connect to', o.server, err);
      return this.shutdown(1, (line.startsWith('cannot ') ? line : `cannot serve on ${o.server}: ${line}`) + fdLimitHint(err));
    }
    const transport = this.transport;
    transport.on('session', (s: { features: bigint }) => this.info(`front-end connected (features 0x${s.features.toString(16)})`));
    transport.on('session-end', (reason: string) => this.info(`front-end left (${reason})`));
    transport.on('error', (err: Error) => void this.shutdown(1, firstLine(err)));
    this.peer.on('server-gone', () => void this.shutdown(1, `server at ${o.server} went away`));
    // The peer fails alone on a broken server message or lost fds (the transport does not forward it).
    this.peer.on('error', (err: Error) => void this.shutdown(1, `server connection failed: ${firstLine(err)}${fdLimitHint(err)}`));
    const blocks = device.blockSize === 512 ? '' : `, ${device.blockSize}-byte blocks`;
    this.info(`serving ${image} (${device.capacitySectors} sectors${blocks}${device.readOnly ? ', read-only' : ''}) on ${o.server} as peer ${this.peer.id}`);
  }
}

/**
 * A write-open refused (EACCES, EROFS, EPERM) on an image we may read: the user probably wants
 * `--read-only`, so the line says so. Empty otherwise.
 */
function readOnlyHint(image: string, readOnly: boolean, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (readOnly || (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM')) return '';
  try {
    accessSync(image, constants.R_OK);
  } catch {
    return ''; // not readable either: --read-only would not help
  }
  return '; it is readable: serve it with --read-only';
}

export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  asyncTerminalOutput(PROG, { log: debug });
  const opts = parseOrUsage(PROG, USAGE, () => parseCliArgs(argv), process, capabilities);
  if (typeof opts === 'number') return exitAfterOutput(opts);
  const rt = new Runtime(opts);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void rt.shutdown(0));
  // Installed before the start-up, like the others: a resize request (SIGHUP) that arrives while
  // the image opens or the server connects must not take SIGHUP's default action (exit).
  process.on('SIGHUP', () => rt.resize());
  // The stack (bounded wait for it), exit 1; a recurrence is not reprinted.
  exitOnUncaughtException(PROG);
  await rt.run();
}
