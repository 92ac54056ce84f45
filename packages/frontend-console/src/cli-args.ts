/**
 * Argument parsing of `vshm-console-frontend` (style §8: check at the edge, one stderr line and
 * exit 2 on a bad argument). Pure: argv in, options or a CliUsageError out.
 */
import { parseArgs } from 'node:util';
import { MAX_PORTS_LIMIT } from './driver.js';
import { DEFAULT_RX_BUFFER, MAX_RX_BUFFER } from './port.js';

export const PROGRAM = 'vshm-console-frontend';
export const DEFAULT_SERVER_SOCKET = '/tmp/ivshmem_socket';

export const USAGE = `Usage: ${PROGRAM} [options] [-- COMMAND [ARGS...]]

The virtio-console DRIVER (front-end, peer 1) of a vshm server started with -P 0x8003.
Start vshm-server, then vshm-console-backend, then this command.

Attachments (one of):
  (default)            the console port on this terminal (raw mode on a TTY);
                       type Ctrl-] then q to quit (Ctrl-] Ctrl-] sends one Ctrl-])
  -- COMMAND [ARGS]    run COMMAND with the port as its stdin/stdout/stderr (pipes);
                       exits with the command's status
  --socket PATH        bridge the port to a UNIX socket listening at PATH
                       (one client at a time)

Options:
  -S, --server PATH    vshm-server socket [${DEFAULT_SERVER_SOCKET}]
  --port NAME          use the port named NAME (MULTIPORT) instead of the console port
  --max-ports N        ports to set up with MULTIPORT, 1-${MAX_PORTS_LIMIT} [auto: max_nr_ports]
  --rx-buffer-size N   bytes per posted receive buffer, 1-${MAX_RX_BUFFER} [${DEFAULT_RX_BUFFER}]
  --wait               if the back-end is not connected yet (we would get peer 0),
                       disconnect and retry until it is, instead of exiting 1
  -h, --help           this help

If the back-end goes away, the front-end waits for a new one (spec §4.10) and resumes;
data written meanwhile is sent once it is back. SIGINT/SIGTERM reset the device and exit 0.
DEBUG=vshm:* traces every layer.`;

export type Attachment = { kind: 'terminal' } | { kind: 'command'; command: string; args: string[] } | { kind: 'socket'; path: string };

export interface CliOptions {
  help: boolean;
  server: string;
  attach: Attachment;
  portName: string | null;
  maxPorts: number | 'auto';
  wait: boolean;
  /** --rx-buffer-size; undefined = the driver's default. */
  rxBufferSize?: number;
}

/** A bad command line: print `${PROGRAM}: ${message}` and exit 2. */
export class CliUsageError extends Error {
  readonly code = 'VSHM_ERR_ARGUMENT';
}

function nonEmpty(flag: string, v: string | undefined): string | undefined {
  if (v !== undefined && v.length === 0) throw new CliUsageError(`${flag} needs a non-empty value`);
  return v;
}

export function parseCli(argv: readonly string[]): CliOptions {
  const dashdash = argv.indexOf('--');
  const own = dashdash < 0 ? argv : argv.slice(0, dashdash);
  const command = dashdash < 0 ? null : argv.slice(dashdash + 1);
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...own],
      options: {
        help: { type: 'boolean', short: 'h' },
        server: { type: 'string', short: 'S' },
        socket: { type: 'string' },
        port: { type: 'string' },
        'max-ports': { type: 'string' },
        wait: { type: 'boolean' },
        'rx-buffer-size': { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    // parseArgs messages are long (and multi-line at times): keep them short, on one line.
    const m = (err as Error).message;
    const unknown = /^Unknown option '([^']*)'/.exec(m);
    throw new CliUsageError(unknown !== null ? `unknown option '${unknown[1]}' (see --help)` : m.split('\n')[0].replace(/\. To specify.*$/, ''));
  }
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument '${positionals[0]}' (a command goes after --)`);
  const help = values.help === true;
  const server = nonEmpty('-S', values.server as string | undefined) ?? DEFAULT_SERVER_SOCKET;
  const socketPath = nonEmpty('--socket', values.socket as string | undefined);
  const portName = nonEmpty('--port', values.port as string | undefined) ?? null;
  let maxPorts: number | 'auto' = 'auto';
  const mp = values['max-ports'] as string | undefined;
  if (mp !== undefined) {
    if (!/^[0-9]+$/.test(mp) || Number(mp) < 1 || Number(mp) > MAX_PORTS_LIMIT) {
      throw new CliUsageError(`--max-ports must be an integer 1-${MAX_PORTS_LIMIT}, got '${mp}'`);
    }
    maxPorts = Number(mp);
  }
  let attach: Attachment = { kind: 'terminal' };
  if (command !== null) {
    if (command.length === 0 || command[0].length === 0) throw new CliUsageError('-- must be followed by a command');
    if (socketPath !== undefined) throw new CliUsageError('--socket and -- COMMAND are exclusive');
    attach = { kind: 'command', command: command[0], args: command.slice(1) };
  } else if (socketPath !== undefined) {
    attach = { kind: 'socket', path: socketPath };
  }
  const rb = values['rx-buffer-size'] as string | undefined;
  if (rb !== undefined && (!/^[0-9]+$/.test(rb) || Number(rb) < 1 || Number(rb) > MAX_RX_BUFFER)) {
    throw new CliUsageError(`--rx-buffer-size must be an integer 1-${MAX_RX_BUFFER}, got '${rb}'`);
  }
  return { help, server, attach, portName, maxPorts, wait: values.wait === true, rxBufferSize: rb === undefined ? undefined : Number(rb) };
}
