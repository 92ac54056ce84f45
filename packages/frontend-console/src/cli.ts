/**
 * `vshm-console-frontend`: the virtio-console driver as a command (see USAGE in cli-args.ts).
 *
 * Exit status: 0 after Ctrl-] q or SIGINT/SIGTERM (orderly: device reset, State := RESET,
 * disconnect); the command's status with `-- COMMAND` (127 if it cannot be run); 1 for runtime
 * failures (no server, wrong role, not a console device, socket in use); 2 for bad arguments.
 * Every failure is one stderr line starting with the program name.
 */
import createDebug from 'debug';
import { attachTerminal } from './attach-terminal.js';
import type { Attachment } from './attachment.js';
import { attachCommand } from './attach-command.js';
import { attachSocket } from './attach-socket.js';
import { CliUsageError, PROGRAM, USAGE, parseCli, type CliOptions } from './cli-args.js';
import { describeOpenError, openConsole, type Console } from './open.js';
import type { ConsolePort } from './port.js';

const debug = createDebug('vshm:console-fe');

function fail(message: string): void {
  process.stderr.write(`${PROGRAM}: ${message}\n`);
}

/** Resolves with the first SIGINT/SIGTERM; the handlers are removed by the returned dispose. */
function onTerminationSignal(): { signalled: Promise<NodeJS.Signals>; dispose: () => void } {
  let dispose = (): void => {};
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    const handler = (sig: NodeJS.Signals): void => resolve(sig);
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    process.on('SIGHUP', handler);
    dispose = () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
      process.off('SIGHUP', handler);
    };
  });
  return { signalled, dispose };
}

async function pickPort(con: Console, opts: CliOptions, signalled: Promise<unknown>): Promise<ConsolePort | null> {
  if (opts.portName === null) return con.driver.port(0) as ConsolePort;
  const name = opts.portName;
  const found = await Promise.race([con.driver.waitForPort(name), signalled.then(() => null)]);
  return found;
}

/** Run the CLI; resolves with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  let opts: CliOptions;
  try {
    opts = parseCli(argv);
  } catch (err) {
    if (err instanceof CliUsageError) {
      fail(err.message);
      return 2;
    }
    throw err;
  }
  if (opts.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { signalled, dispose } = onTerminationSignal();
  let con: Console | null = null;
  let attachment: Attachment | null = null;
  try {
    try {
      const opening = openConsole({
        socketPath: opts.server,
        maxPorts: opts.maxPorts,
        rxBufferSize: opts.rxBufferSize,
        wait: opts.wait,
        onRetry: (err) => debug('not connected yet (%s): retrying', err.message),
      });
      const first = await Promise.race([opening, signalled.then(() => null)]);
      if (first === null) {
        opening.then((c) => c.close()).catch(() => {});
        return 0;
      }
      con = first;
    } catch (err) {
      fail(describeOpenError(err, opts.server));
      return 1;
    }
    // The server going away ends everything: no back-end can come back on this memory (§1.8).
    const fatal = new Promise<number>((resolve) => {
      const c = con as Console;
      c.once('server-gone', () => {
        fail(`server at ${opts.server} went away`);
        resolve(1);
      });
      c.once('error', (err: Error) => {
        fail(err.message);
        resolve(1);
      });
    });
    con.on('device-error', (err: Error) => fail(`device error (waiting for the back-end to recover): ${err.message}`));
    const port = await Promise.race([pickPort(con, opts, signalled), fatal.then(() => undefined)]);
    if (port === undefined) return 1;
    if (port === null) return 0;
    try {
      if (opts.attach.kind === 'terminal') attachment = attachTerminal(port);
      else if (opts.attach.kind === 'command') {
        const { command, args } = opts.attach;
        attachment = attachCommand(port, command, args, (err) => fail(`cannot run '${command}': ${(err as NodeJS.ErrnoException).code ?? err.message}`));
      } else {
        attachment = await attachSocket(port, opts.attach.path);
        process.stderr.write(`${PROGRAM}: listening on ${opts.attach.path}\n`);
      }
    } catch (err) {
      fail((err as Error).message);
      return 1;
    }
    const status = await Promise.race([attachment.done, fatal, signalled.then((sig) => (debug('%s: shutting down', sig), 0))]);
    return status;
  } finally {
    dispose();
    // Orderly (§4.10): detach I/O, then reset the device, State := RESET, disconnect.
    await attachment?.close().catch(() => {});
    await con?.close().catch((err: Error) => debug('close: %s', err.message));
  }
}
