/**
 * Argument parsing of `vshm-blk-frontend`, through the shared CLI kit of @vshm/transport (a bad
 * argument is one stderr line `vshm-blk-frontend: what is wrong (try --help)` and exit 2). Pure:
 * argv in, options or a CliUsageError out.
 */
import { parseCommandLine, UsageError } from '@vshm/transport/cli';
import { DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS_LIMIT } from './nbd-protocol.js';

export const PROGRAM = 'vshm-blk-frontend';
export const DEFAULT_SERVER_SOCKET = '/tmp/ivshmem_socket';

export const USAGE = `Usage: ${PROGRAM} --nbd PATH [options]

The virtio-blk DRIVER (front-end, peer 1) of a vshm server started with -P 0x8002, exporting
the disk over NBD on a UNIX socket (mode 0600) for qemu-img, qemu-io, nbdcopy, nbd-client...
Start vshm-server, then vshm-blk-backend IMAGE, then this command; then for example
  qemu-img info nbd+unix:///?socket=PATH

Options:
  --nbd PATH           serve NBD on the UNIX socket PATH (required)
  --export-name NAME   export name to announce [''] (the default name '' is always accepted)
  -S, --server PATH    vshm-server socket [${DEFAULT_SERVER_SOCKET}]
  --queues N           request queues to use, 1…64 [1]; N > 1 accepts MQ and uses
                       min(N, the back-end's --queues) queues
  --max-connections N  NBD clients served at once, 1…${MAX_CONNECTIONS_LIMIT} [${DEFAULT_MAX_CONNECTIONS}]; one more is
                       closed on arrival, before the NBD greeting
  --wait               if the back-end is not connected yet (we would get peer 0) or the
                       server is not there yet, retry until it is, instead of exiting 1
  -q, --quiet          no link-state lines on stderr
  -h, --help           this help

If the back-end goes away, requests in flight fail with EIO (they are never re-sent: a write
may or may not have reached the disk, and was not acknowledged); new requests wait for the
next back-end. SIGINT/SIGTERM/SIGHUP close the NBD socket (requests on the device are answered
first, within 2 s; those waiting for a back-end get ESHUTDOWN), reset the device and exit 0.
DEBUG=vshm:* traces every layer.

Exit status: 0 after SIGINT/SIGTERM/SIGHUP, 1 on runtime failures, 2 on bad arguments.`;

export interface CliOptions {
  help: boolean;
  server: string;
  nbd: string;
  exportName: string;
  wait: boolean;
  quiet: boolean;
  queues: number;
  maxConnections: number;
}

/** A bad command line: print `err.lineFor(PROGRAM)` and exit 2 (the shared kit's UsageError). */
export { UsageError as CliUsageError };

export function parseCli(argv: readonly string[]): CliOptions {
  const { values } = parseCommandLine(argv, {
    help: { type: 'boolean', short: 'h' },
    server: { type: 'string', short: 'S' },
    nbd: { type: 'string' },
    'export-name': { type: 'string' },
    wait: { type: 'boolean' },
    queues: { type: 'string' },
    'max-connections': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
  });
  const help = values.help === true;
  if (help) return { help, server: DEFAULT_SERVER_SOCKET, nbd: '', exportName: '', wait: false, quiet: false, queues: 1, maxConnections: DEFAULT_MAX_CONNECTIONS };
  const str = (name: 'server' | 'nbd'): string | undefined => {
    const v = values[name];
    if (v !== undefined && v.length === 0) throw new UsageError(`option '--${name}' needs a non-empty value`);
    return v;
  };
  const nbd = str('nbd');
  if (nbd === undefined) throw new UsageError("missing '--nbd PATH' (the NBD socket to serve)");
  const exportName = values['export-name'] ?? '';
  if (Buffer.byteLength(exportName) > 4096) throw new UsageError('--export-name is longer than 4096 bytes');
  let queues = 1;
  if (values.queues !== undefined) {
    if (!/^[0-9]+$/.test(values.queues)) throw new UsageError(`invalid --queues '${values.queues}' (expected a decimal integer)`);
    queues = Number(values.queues);
    if (queues < 1 || queues > 64) throw new UsageError(`--queues ${values.queues} out of range 1…64`);
  }
  let maxConnections = DEFAULT_MAX_CONNECTIONS;
  const mc = values['max-connections'];
  if (mc !== undefined) {
    if (!/^[0-9]+$/.test(mc)) throw new UsageError(`invalid --max-connections '${mc}' (expected a decimal integer)`);
    maxConnections = Number(mc);
    if (maxConnections < 1 || maxConnections > MAX_CONNECTIONS_LIMIT) throw new UsageError(`--max-connections ${mc} out of range 1…${MAX_CONNECTIONS_LIMIT}`);
  }
  return { help, server: str('server') ?? DEFAULT_SERVER_SOCKET, nbd, exportName, wait: values.wait === true, quiet: values.quiet === true, queues, maxConnections };
}
