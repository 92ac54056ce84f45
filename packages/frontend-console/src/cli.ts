/**
 * `vshm-console-frontend`: the virtio-console driver as a command (see USAGE in cli-args.ts).
 *
 * Exit status: 0 after Ctrl-] q or SIGINT/SIGTERM/SIGHUP (orderly: device reset, State := RESET,
 * disconnect); the command's status with `-- COMMAND` (127 if it cannot be run); 1 for runtime
 * failures (no server, wrong role, not a console device, socket in use); 2 for bad arguments.
 * Every failure is one stderr line starting with the program name.
 *
 * `run()` is the command (the bin's entry): a terminal on stdout or stderr is written
 * asynchronously (`asyncTerminalOutput`), so one that stalls pushes back instead of holding the
 * whole process — its input and the quit key included; the exit waits for the queued output for
 * as long as it moves (`exitAfterOutput`: 2 s without progress ends it). `main()` is the same
 * without either, for running in-process.
 */
import { createLogger as createDebug } from '@vshm/transport';
import { asyncTerminalOutput, describeIoError, exitAfterOutput, exitOnUncaughtException, onTerminationSignal, parseOrUsage, printDiagnostic } from '@vshm/transport/cli';
import { attachCommand } from './attach-command.js';
import { attachPty } from './attach-pty.js';
import { attachSocket } from './attach-socket.js';
import { attachTerminal } from './attach-terminal.js';
import type { Attachment } from './attachment.js';
import { PROGRAM, USAGE, parseCli, type CliOptions } from './cli-args.js';
import { describeOpenError, openConsole, type Console } from './open.js';
import type { ConsolePort } from './port.js';
import { ConsoleFeature, hasFeature } from 'virtio-spec-types';

const debug = createDebug('vshm:console-fe');

/**
 * One stderr line. Lines name the back-end's ports (PORT_NAME is its text): controls go escaped
 * (`printDiagnostic`), so a hostile back-end cannot retitle, clear or rewrite the user's terminal or
 * forge lines.
 */
function fail(message: string): void {
  printDiagnostic(PROGRAM, message);
}

/**
 * Link-state lines (one CLI voice; -q silences them): `back-end lost, waiting` when a live
 * session ends, `back-end back, N bytes re-sent` when the port is served again (N: transmit bytes
 * the last session left unconsumed, posted again on the new one).
 */
function reportLinkState(con: Console, port: ConsolePort, info: (line: string) => void): void {
  let lost = false;
  con.on('lost', () => {
    if (lost) return;
    lost = true;
    info('back-end lost, waiting');
  });
  // 'attach' fires when a session serves the port again (at probe, or on DEVICE_ADD with
  // MULTIPORT), before the held transmit bytes are posted: what is pending now is what is re-sent.
  port.on('attach', () => {
    if (!lost) return;
    lost = false;
    info(`back-end back, ${port.pendingTransmitBytes} bytes re-sent`);
  });
}

/**
 * A stalled back-end (READY, but a header write transaction not completed in time): one line per
 * stalled attempt; resolves with 1 after `limit` in a row (a session going live resets the count).
 */
function giveUpOnStall(con: Console, limit: number): Promise<number> {
  return new Promise<number>((resolve) => {
    let stalled = 0;
    con.on('ready', () => (stalled = 0));
    con.on('transaction-timeout', (err: Error) => {
      stalled++;
      if (stalled >= limit) {
        fail(`back-end not answering: ${err.message}; giving up after ${stalled} attempt${stalled === 1 ? '' : 's'} (--wait-forever to keep waiting)`);
        resolve(1);
      } else {
        fail(`back-end not answering: ${err.message}; retrying (${stalled} of ${Number.isFinite(limit) ? limit : 'unlimited'})`);
      }
    });
  });
}

/**
 * How long `--port NAME` waits in silence for the port before it says what it is waiting for. A
 * back-end announces its ports just after DRIVER_OK (DEVICE_ADD, then PORT_NAME), so a name that
 * exists arrives well within this; one that does not may still be added later (hot-plug), so the
 * front-end keeps waiting — but the user learns which names the back-end does offer.
 */
const PORT_WAIT_NOTE_MS = 1000;

/** The named ports a driver knows of, for a message: `'log' (1), 'mon' (2)` or `none`. */
function namedPorts(con: Console): string {
  const named: string[] = [];
  for (const [id, p] of con.driver.ports) if (p.portName !== null) named.push(`'${p.portName}' (${id})`);
  return named.length > 0 ? named.join(', ') : 'none';
}

async function pickPort(con: Console, opts: CliOptions, signalled: Promise<unknown>, info: (line: string) => void): Promise<ConsolePort | null | undefined> {
  if (opts.portName === null) return con.driver.port(0) as ConsolePort;
  const name = opts.portName;
  // Without MULTIPORT the device has the console port only: no name will ever come. (The
  // features are known once the first session is live.)
  if ((await Promise.race([con.whenReady().then(() => true), signalled.then(() => false)])) === false) return null;
  if (!hasFeature(con.driver.negotiatedFeatures, ConsoleFeature.MULTIPORT)) {
    fail(`--port ${name}: the back-end offers no named ports (no MULTIPORT); start it with --port ${name}`);
    return undefined;
  }
  const note = setTimeout(() => info(`waiting for port '${name}'; the back-end's named ports so far: ${namedPorts(con)}`), PORT_WAIT_NOTE_MS);
  try {
    return await Promise.race([con.driver.waitForPort(name), signalled.then(() => null)]);
  } finally {
    clearTimeout(note);
  }
}

/** Run the CLI; resolves with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  const opts = parseOrUsage(PROGRAM, USAGE, () => parseCli(argv));
  if (typeof opts === 'number') return opts;
  const info = (line: string): void => {
    if (!opts.quiet) fail(line);
  };
  const { signalled, dispose } = onTerminationSignal();
  let con: Console | null = null;
  let attachment: Attachment | null = null;
  /** The port served, once picked: what it still holds at the end was never delivered. */
  let served: ConsolePort | null = null;
  try {
    try {
      const opening = openConsole({
        socketPath: opts.server,
        status: true,
        maxPorts: opts.maxPorts,
        rxBufferSize: opts.rxBufferSize,
        wait: opts.wait,
        transactionTimeoutMs: opts.transactionTimeoutMs,
        onRetry: (err) => debug('not connected yet (%s): retrying', err.message),
        reconnect: opts.reconnect ? { timeoutMs: opts.serverTimeoutMs } : undefined,
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
    // The server going away ends everything with --no-reconnect: no back-end can come back on
    // this memory (§1.8). By default the console follows a restarted server (issue 9 item 6) and
    // 'server-gone' means it stayed away longer than --server-timeout.
    const fatal = new Promise<number>((resolve) => {
      const c = con as Console;
      c.once('server-gone', () => {
        if (opts.reconnect) fail(`server at ${opts.server} gone for more than ${opts.serverTimeoutMs / 1000} s; giving up`);
        else fail(`server at ${opts.server} went away`);
        resolve(1);
      });
      c.on('server-lost', () => info('server lost, reconnecting'));
      c.on('server-back', () => info('server back'));
      c.once('error', (err: Error) => {
        fail(err.message);
        resolve(1);
      });
    });
    con.on('device-error', (err: Error) => fail(`device error (waiting for the back-end to recover): ${err.message}`));
    con.on('device-warning', (message: string) => fail(`warning: ${message}`));
    const stalled = giveUpOnStall(con, opts.stallRetries);
    const port = await Promise.race([pickPort(con, opts, signalled, info), fatal.then(() => undefined), stalled.then(() => undefined)]);
    if (port === undefined) return 1;
    if (port === null) return 0;
    served = port;
    reportLinkState(con, port, info);
    // A write that can no longer complete (the device removed the port, DEVICE_REMOVE) errors the
    // port stream. The attachment ends on 'removed' (the command gets EOF); without a listener
    // here that error would be thrown from the pipe into the port and end the process instead.
    port.on('error', (err: Error) => debug('port %d: %s', port.id, err.message));
    // A command ends by itself once it sees EOF (its status is ours); a terminal or a bridge would
    // go on serving a port that is gone: end with 1.
    const removed = new Promise<number>((resolve) => {
      port.once('removed', () => {
        const line = `port ${port.portName ?? port.id} was removed by the back-end`;
        if (opts.attach.kind === 'command') info(line);
        else {
          fail(line);
          resolve(1);
        }
      });
    });
    try {
      if (opts.attach.kind === 'terminal') attachment = attachTerminal(port);
      else if (opts.attach.kind === 'command') {
        const { command, args } = opts.attach;
        const onSpawnError = (err: Error): void => fail(describeIoError('run', `'${command}'`, err));
        attachment = opts.attach.pty
          ? attachPty(port, command, args, onSpawnError, (m) => fail(`warning: ${m}`))
          : attachCommand(port, command, args, onSpawnError);
      } else {
        const path = opts.attach.path;
        attachment = await attachSocket(port, path).catch((err: unknown) => {
          throw new Error(describeIoError('listen on', path, err), { cause: err });
        });
        fail(`listening on ${path}`);
      }
    } catch (err) {
      fail((err as Error).message);
      return 1;
    }
    const status = await Promise.race([attachment.done, removed, fatal, stalled, signalled.then((sig) => (debug('%s: shutting down', sig), 0))]);
    return status;
  } finally {
    dispose();
    // Orderly (§4.10): detach I/O, then reset the device, State := RESET, disconnect.
    await attachment?.close().catch(() => {});
    await con?.close().catch((err: Error) => debug('close: %s', err.message));
    // Output the device never acknowledged (the back-end gone, stalled or not reading) dies with
    // this process: say how much, -q or not (a loss is no link-state chatter).
    const lost = served?.pendingTransmitBytes ?? 0;
    if (lost > 0) fail(`${lost} bytes of ${served?.portName == null ? 'console' : `port ${served.portName}`} output were never delivered (the back-end did not take them)`);
  }
}

/** The command: main() with asynchronous terminal output, then exit once the output is out (bounded). */
export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<never> {
  // An internal error: its stack (bounded wait for it), exit 1; a recurrence is not reprinted.
  exitOnUncaughtException(PROGRAM);
  asyncTerminalOutput(PROGRAM, { log: debug });
  // Only the terminal attachment writes to stdout, and a stdout that fails ends its session. One
  // that fails once the attachment has let go — while the device resets, or while the exit waits
  // for what the attachment queued (EPIPE: the reader left; EIO: the terminal hung up) — has
  // nothing left to end: unheard, its 'error' would end the process with a stack trace, status 1.
  process.stdout.on('error', () => {});
  // The terminal attachment has restored the terminal mode by the time main() returns.
  return exitAfterOutput(await main(argv));
}
