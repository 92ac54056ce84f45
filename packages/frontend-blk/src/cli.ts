/**
 * `vshm-blk-frontend`: the virtio-blk driver as a command, exporting the disk over NBD (see USAGE
 * in cli-args.ts).
 *
 * Exit status: 0 after SIGINT/SIGTERM/SIGHUP (orderly: NBD socket closed and removed, device
 * reset, disconnect); 1 for runtime failures (no server, wrong role, not a block device, NBD
 * socket path in use, the server going away); 2 for bad arguments. Every failure is one stderr
 * line starting with the program name; I/O errors name the path and the errno code.
 *
 * `run()` is the command (the bin's entry): a terminal on stdout or stderr is written
 * asynchronously (`asyncTerminalOutput`), so one that stalls holds the lines, not the NBD export —
 * its clients go on being served; the exit waits for the queued output for as long as it moves
 * (`exitAfterOutput`: 2 s without progress ends it). `main()` is the same without either, for
 * running in-process.
 */
import { createLogger, LocalSocketError } from '@vshm/transport';
import { acceptWarner, asyncTerminalOutput, describeIoError, exitAfterOutput, exitOnUncaughtException, onTerminationSignal, parseOrUsage, printable, printDiagnostic } from '@vshm/transport/cli';
import { PROGRAM, USAGE, parseCli } from './cli-args.js';
import type { BlockGeometry } from './driver.js';
import { NbdServer } from './nbd-server.js';
import { openBlock, type BlockLink } from './open.js';

const debug = createLogger('vshm:blk-fe');

/**
 * One stderr line. Its text may carry what others chose (a back-end's messages, an NBD client's
 * strings in an error): control characters go escaped (the CLI kit's printDiagnostic).
 */
function fail(message: string): void {
  printDiagnostic(PROGRAM, message);
}

/** One line (without the program name) explaining why the connection to the server failed. */
export function describeOpenError(err: unknown, socketPath: string): string {
  const e = err as { code?: unknown; message?: unknown };
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  switch (e?.code) {
    case 'VSHM_ERR_ROLE':
      if (/connected as back-end/.test(msg)) return 'connected as peer 0 (back-end role): start vshm-blk-backend first, or use --wait';
      return msg;
    case 'VSHM_ERR_DEVICE_ID':
      return `the server's device is not virtio-blk (${msg}): start vshm-server with -P 0x8002`;
    case 'VSHM_ERR_SERVER_EOF':
      return `the server at ${socketPath} closed the connection: no free peer id (a back-end and a front-end are already connected?)`;
    default:
      return describeIoError('connect to the vshm server at', socketPath, err);
  }
}

/** The stderr line (without the program name) for a blk_size the driver ignored, else null. */
export function blockSizeWarning(g: Readonly<BlockGeometry> | null): string | null {
  if (g === null || g.reportedBlockSize === null || g.reportedBlockSize === g.blockSize) return null;
  return `the device's blk_size ${g.reportedBlockSize} is not a power of two from 512 to 65536: ignored, ${g.blockSize}-byte blocks used`;
}

/** Run the CLI; resolves with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  const opts = parseOrUsage(PROGRAM, USAGE, () => parseCli(argv));
  if (typeof opts === 'number') return opts;
  let shuttingDown = false;
  const info = (line: string): void => {
    // Our own shutdown resets the device: not a link event worth a line.
    if (!opts.quiet && !shuttingDown) fail(line);
  };
  const { signalled, dispose } = onTerminationSignal();
  let link: BlockLink | null = null;
  let nbd: NbdServer | null = null;
  /** NBD clients refused for --max-connections (the first is reported at once, the total at exit). */
  let refused = 0;
  let closeWarner = (): void => {};
  try {
    try {
      const opening = openBlock({ socketPath: opts.server, status: true, wait: opts.wait, queues: opts.queues, onRetry: (e) => debug('not connected yet (%s): retrying', e.message) });
      const first = await Promise.race([opening, signalled.then(() => null)]);
      if (first === null) {
        opening.then((l) => l.close()).catch(() => {});
        return 0;
      }
      link = first;
    } catch (err) {
      fail(describeOpenError(err, opts.server));
      return 1;
    }
    const l = link;
    const fatal = new Promise<number>((resolve) => {
      l.peer.once('server-gone', () => {
        fail(`the server at ${opts.server} went away`);
        resolve(1);
      });
      l.peer.on('error', (err: Error) => {
        fail(`connection to the server failed: ${err.message}`);
        resolve(1);
      });
    });
    // A refused device (e.g. queues that do not fit the shared memory) or a broken ring: the
    // transport waits for the back-end to reset, which may never come — say why, as the console
    // front-end does, instead of waiting in silence.
    l.transport.on('error', (err: Error) => fail(`device error (waiting for the back-end to recover): ${err.message}`));
    l.transport.on('warning', (message: string) => fail(`warning: ${message}`));
    // A device defect, not a link event: said even with --quiet, once per device session.
    const checkBlockSize = (): void => {
      const line = blockSizeWarning(l.driver.geometry);
      if (line !== null) fail(line);
    };
    let seen = false;
    l.driver.on('ready', () => {
      if (seen) info(`back-end back (${l.driver.capacity} bytes)`);
      seen = true;
      checkBlockSize();
    });
    l.driver.on('lost', () => info('back-end lost, waiting'));
    l.driver.on('capacity', (bytes: number) => info(`capacity changed to ${bytes} bytes (NBD clients see it when they reconnect)`));
    const ready = await Promise.race([l.driver.whenReady().then(() => 'ready' as const), fatal, signalled.then(() => 0)]);
    if (ready !== 'ready') return ready;
    if (!seen) checkBlockSize(); // the first device was there before our 'ready' listener
    nbd = new NbdServer(l.driver, { path: opts.nbd, exportName: opts.exportName, maxConnections: opts.maxConnections });
    try {
      await nbd.listen();
    } catch (err) {
      nbd = null;
      // A listener error keeps the errno error of bind()/listen() as its cause: name that errno.
      const cause = err instanceof LocalSocketError && err.cause !== undefined ? err.cause : err;
      // EEXIST is the stale-socket check's refusal of a path that is no socket (a file, a
      // directory, a dangling link): say that rather than libc's "file already exists".
      const notSocket = (cause as NodeJS.ErrnoException | null)?.code === 'EEXIST';
      fail(notSocket ? `cannot serve NBD on ${opts.nbd}: it exists and is not a socket` : describeIoError('serve NBD on', opts.nbd, cause));
      return 1;
    }
    // The open-file limit reached: clients wait in the backlog (the server retries every 100 ms),
    // unanswered — the operator hears why, in the CLI kit's one rate-limited line naming the limit.
    const warner = acceptWarner(fail, 'an NBD client', opts.nbd);
    closeWarner = () => warner.close();
    nbd.on('connection', () => warner.accepted());
    nbd.on('refused', () => warner.accepted());
    nbd.on('accept-error', (err: NodeJS.ErrnoException) => warner.failed(err));
    nbd.on('error', (err: Error) => fail(`NBD listener error: ${err.message}`));
    // The message may quote what the client sent: escaped again here, whatever built it.
    nbd.on('client-error', (id: number, err: Error) => debug('NBD client %d: %s', id, printable(err.message)));
    // A refused client sees only a closed connection: the operator gets the reason. One line for
    // the first; a flood of them is counted and summed up at exit, not printed line by line.
    nbd.on('refused', (connected: number) => {
      if (refused++ === 0) fail(`NBD client refused: ${connected} connected, the limit (--max-connections ${opts.maxConnections}); more refusals are counted`);
    });
    info(`serving NBD on ${opts.nbd} (${l.driver.capacity} bytes${l.driver.readOnly ? ', read-only' : ''})`);
    return await Promise.race([fatal, signalled.then((sig) => (debug('%s: shutting down', sig), 0))]);
  } finally {
    shuttingDown = true;
    closeWarner();
    if (refused > 1) fail(`${refused} NBD clients were refused in all (--max-connections ${opts.maxConnections})`);
    dispose();
    // Requests still waiting for a device fail now — their NBD clients get ESHUTDOWN, the spec's
    // error for a server shutting down — instead of holding the NBD server's grace period; those
    // on the device finish and are answered within it.
    if (nbd !== null) link?.driver.close();
    await nbd?.close().catch(() => {});
    await link?.close().catch((err: Error) => debug('close: %s', err.message));
  }
}

/** The command: main() with asynchronous terminal output, then exit once the output is out (bounded). */
export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<never> {
  // An internal error: its stack (bounded wait for it), exit 1; a recurrence is not reprinted.
  exitOnUncaughtException(PROGRAM);
  asyncTerminalOutput(PROGRAM, { log: debug });
  return exitAfterOutput(await main(argv));
}
