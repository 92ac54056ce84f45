/**
 * Argument parsing of `vshm-console-frontend` (checked at the edge: one stderr line and
 * exit 2 on a bad argument). Pure: argv in, options or a UsageError out, through the shared CLI
 * kit of @vshm/transport so every vshm command speaks alike.
 */
import { parseCommandLine, UsageError } from '@vshm/transport/cli';
import { MAX_PORTS_LIMIT } from './driver.js';
import { DEFAULT_MULTIPORT_RX_BUFFER, DEFAULT_RX_BUFFER, MAX_RX_BUFFER } from './port.js';

export const PROGRAM = 'vshm-console-frontend';
export const DEFAULT_SERVER_SOCKET = '/tmp/ivshmem_socket';
export const DEFAULT_TRANSACTION_TIMEOUT_MS = 5000;
export const DEFAULT_STALL_RETRIES = 3;
/** How long a restarted server may take before the front-end gives up (issue 9 item 6). */
export const DEFAULT_SERVER_TIMEOUT_S = 60;

export const USAGE = `Usage: ${PROGRAM} [options] [-- COMMAND [ARGS...]]

The virtio-console DRIVER (front-end, peer 1) of a vshm server started with -P 0x8003.
Start vshm-server, then vshm-console-backend, then this command.

Attachments (one of):
  (default)            the console port on this terminal (raw mode on a TTY);
                       type Ctrl-] then q to quit (Ctrl-] Ctrl-] sends one Ctrl-])
  -- COMMAND [ARGS]    run COMMAND on a pty bridged to the port, like a getty
                       (echo, line editing, ^C to its job, size from the device);
                       exits with the command's status
  --no-pty             with -- COMMAND: plain pipes instead of a pty (binary-safe)
  --bridge PATH        bridge the port to a UNIX socket this command listens on at PATH
                       (one client at a time; --socket PATH is a deprecated spelling)

Options:
  -S, --server PATH    vshm-server socket [${DEFAULT_SERVER_SOCKET}]
  --port NAME          use the port named NAME (MULTIPORT) instead of the console port;
                       waits until the back-end adds it (after 1 s says which names it has)
  --max-ports N|auto   ports to set up with MULTIPORT, 1-${MAX_PORTS_LIMIT}, or auto: the device's
                       max_nr_ports [auto]
  --rx-buffer-size N   bytes per posted receive buffer, 1-${MAX_RX_BUFFER}
                       [${DEFAULT_RX_BUFFER}; ${DEFAULT_MULTIPORT_RX_BUFFER} per port with MULTIPORT]
  --wait               if the back-end is not connected yet (we would get peer 0),
                       disconnect and retry until it is, instead of exiting 1
  --transaction-timeout MS
                       a header write the back-end does not complete within MS ms
                       means it is stalled [${DEFAULT_TRANSACTION_TIMEOUT_MS}]
  --stall-retries N    give up (exit 1) after N stalled attempts in a row [${DEFAULT_STALL_RETRIES}]
  --wait-forever       never give up on a stalled back-end
  --server-timeout SECONDS
                       if the server goes away, reconnect to a restarted one at the
                       same path; give up (exit 1) after SECONDS [${DEFAULT_SERVER_TIMEOUT_S}]
  --no-reconnect       exit 1 as soon as the server goes away
  -q, --quiet          no link-state lines (back-end / server lost / back, waiting for
                       --port NAME) on stderr
  -h, --help           this help

If the back-end goes away, the front-end waits for a new one (spec §4.10) and resumes;
data written meanwhile is sent once it is back. The same holds for a server restart:
the front-end reconnects and re-initialises the device on the new shared memory.
SIGINT/SIGTERM/SIGHUP reset the device and exit 0.
Exit status: 0 on a clean quit, 1 on runtime failures, 2 on bad arguments.
DEBUG=vshm:* traces every layer.`;

export type Attachment = { kind: 'terminal' } | { kind: 'command'; command: string; args: string[]; pty: boolean } | { kind: 'socket'; path: string };

export interface CliOptions {
  help: boolean;
  server: string;
  attach: Attachment;
  portName: string | null;
  maxPorts: number | 'auto';
  wait: boolean;
  quiet: boolean;
  transactionTimeoutMs: number;
  /** Stalled attempts in a row before exit 1; Infinity with --wait-forever. */
  stallRetries: number;
  /** Warnings to print once (a deprecated option spelling). */
  warnings: string[];
  /** Reconnect to a restarted server (default), unless --no-reconnect. */
  reconnect: boolean;
  /** --server-timeout in ms. */
  serverTimeoutMs: number;
  /** --rx-buffer-size; undefined = the driver's default. */
  rxBufferSize?: number;
}

/** A bad command line: print `err.lineFor(PROGRAM)` and exit 2 (the shared UsageError). */
export const CliUsageError = UsageError;
export type CliUsageError = UsageError;

function nonEmpty(flag: string, v: string | undefined): string | undefined {
  if (v !== undefined && v.length === 0) throw new UsageError(`option '${flag}' needs a non-empty value`);
  return v;
}

export function parseCli(argv: readonly string[]): CliOptions {
  const dashdash = argv.indexOf('--');
  const own = dashdash < 0 ? argv : argv.slice(0, dashdash);
  const command = dashdash < 0 ? null : argv.slice(dashdash + 1);
  const { values, positionals } = parseCommandLine(
    own,
    {
      help: { type: 'boolean', short: 'h' },
      server: { type: 'string', short: 'S' },
      bridge: { type: 'string' },
      socket: { type: 'string' }, // deprecated spelling of --bridge (it never was the server socket)
      port: { type: 'string' },
      'max-ports': { type: 'string' },
      wait: { type: 'boolean' },
      'transaction-timeout': { type: 'string' },
      'stall-retries': { type: 'string' },
      'wait-forever': { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      'no-pty': { type: 'boolean' },
      'rx-buffer-size': { type: 'string' },
      'server-timeout': { type: 'string' },
      'no-reconnect': { type: 'boolean' },
    },
    true,
  );
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' (a command goes after --)`);
  const warnings: string[] = [];
  if (values.socket !== undefined) {
    if (values.bridge !== undefined) throw new UsageError('--bridge and --socket (its deprecated spelling) both given');
    // Users type `--socket /tmp/vshm.sock` meaning the server: say what it does instead.
    warnings.push(
      `--socket is deprecated and is not the server socket: it creates a bridge socket at ${values.socket} (write --bridge); the vshm-server socket is -S/--server (now ${values.server || DEFAULT_SERVER_SOCKET})`,
    );
  }
  const help = values.help === true;
  const server = nonEmpty('--server', values.server) ?? DEFAULT_SERVER_SOCKET;
  const socketPath = nonEmpty(values.socket !== undefined ? '--socket' : '--bridge', values.bridge ?? values.socket);
  const portName = nonEmpty('--port', values.port) ?? null;
  const int = (flag: string, v: string | undefined, min: number, max: number, dflt: number): number => {
    if (v === undefined) return dflt;
    if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${flag} must be an integer ${min}-${max}, got '${v}'`);
    return Number(v);
  };
  const mp = values['max-ports'];
  const maxPorts: number | 'auto' = mp === undefined || mp === 'auto' ? 'auto' : int('--max-ports', mp, 1, MAX_PORTS_LIMIT, 0);
  const transactionTimeoutMs = int('--transaction-timeout', values['transaction-timeout'], 1, 3_600_000, DEFAULT_TRANSACTION_TIMEOUT_MS);
  if (values['wait-forever'] === true && values['stall-retries'] !== undefined) throw new UsageError('--stall-retries and --wait-forever exclude each other');
  const rb = values['rx-buffer-size'];
  const rxBufferSize = rb === undefined ? undefined : int('--rx-buffer-size', rb, 1, MAX_RX_BUFFER, 0);
  const stallRetries = values['wait-forever'] === true ? Infinity : int('--stall-retries', values['stall-retries'], 1, 1_000_000, DEFAULT_STALL_RETRIES);
  if (values['no-reconnect'] === true && values['server-timeout'] !== undefined) throw new UsageError('--server-timeout and --no-reconnect exclude each other');
  const serverTimeoutMs = int('--server-timeout', values['server-timeout'], 1, 86_400, DEFAULT_SERVER_TIMEOUT_S) * 1000;
  let attach: Attachment = { kind: 'terminal' };
  if (command !== null) {
    if (command.length === 0 || command[0].length === 0) throw new UsageError('-- must be followed by a command');
    if (socketPath !== undefined) throw new UsageError('--bridge and -- COMMAND exclude each other');
    attach = { kind: 'command', command: command[0], args: command.slice(1), pty: values['no-pty'] !== true };
  } else if (socketPath !== undefined) {
    attach = { kind: 'socket', path: socketPath };
  }
  if (values['no-pty'] === true && attach.kind !== 'command') throw new UsageError('--no-pty needs -- COMMAND');
  return {
    help,
    server,
    attach,
    portName,
    maxPorts,
    wait: values.wait === true,
    quiet: values.quiet === true,
    transactionTimeoutMs,
    stallRetries,
    warnings,
    rxBufferSize,
    reconnect: values['no-reconnect'] !== true,
    serverTimeoutMs,
  };
}
