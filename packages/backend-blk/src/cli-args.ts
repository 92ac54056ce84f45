/**
 * Command-line parsing of `vshm-blk-backend` (one CLI voice: check at the edge, one line per usage error). Pure: argv in, options
 * out, or a UsageError whose message is the one stderr line (exit 2).
 */
import { parseArgs } from 'node:util';
import { ArgumentError } from '@vshm/transport';
import type { CacheMode } from './device.js';

export const PROG = 'vshm-blk-backend';
export const DEFAULT_SERVER = '/tmp/ivshmem_socket';

export const USAGE = `Usage: ${PROG} [options] IMAGE

The virtio-blk device (back-end, peer 0, device id 2, protocol 0xC002) of vshm, serving IMAGE
(a raw image file or a block device). Start the server with e.g.
  vshm-server -l 16M -n 2 -V 3 -P 0x8002

Options:
  -S, --server PATH      vshm-server socket (default ${DEFAULT_SERVER})
  --read-only            open IMAGE read-only and offer RO
  --queues N             request queues, 1…64 (N > 1 offers MQ; default 1)
  --queue-size N         queue size offered, a power of two 4…32768 (default 128)
  --serial S             GET_ID serial, at most 20 bytes (default: derived from the image path)
  --cache MODE           writeback (default: writes complete once written, FLUSH syncs) or
                         writethrough (every write is synced before it completes)
  --print-capabilities   print the device's capabilities as JSON and exit
  -q, --quiet            no link-state lines on stderr
  -h, --help             this help

SIGHUP re-reads the image size (resize); SIGINT/SIGTERM exit cleanly.
Exit status: 0 on a clean exit, 1 on runtime failures, 2 on bad arguments.`;

/** A bad command line: one stderr line, exit 2. */
export class UsageError extends ArgumentError {}

export interface BlkCliOptions {
  help: boolean;
  printCapabilities: boolean;
  image: string | undefined;
  server: string;
  readOnly: boolean;
  queues: number;
  queueSize: number;
  serial: string | undefined;
  cache: CacheMode;
  quiet: boolean;
}

/** The options the CLI accepts, for --print-capabilities. */
export const CLI_OPTIONS = ['--server', '--read-only', '--queues', '--queue-size', '--serial', '--cache', '--print-capabilities', '--quiet', '--help'];

function intArg(text: string, flag: string, min: number, max: number): number {
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`invalid ${flag} '${text}' (expected a decimal integer)`);
  const v = Number(text);
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new UsageError(`${flag} ${text} out of range ${min}…${max}`);
  return v;
}

/** Rephrase a node:util parseArgs error as the one-line CLI voice. */
function rephrase(err: Error): string {
  const first = err.message.split('\n')[0];
  let m = /^Unknown option '([^']*)'/.exec(first);
  if (m) return `unknown option '${m[1]}'`;
  m = /^Option '(?:-\w, )?(--?[\w-]+)(?: <value>)?' argument missing/.exec(first);
  if (m) return `option '${m[1]}' needs a value`;
  m = /^Option '(?:-\w, )?(--?[\w-]+)' does not take an argument/.exec(first);
  if (m) return `option '${m[1]}' takes no value`;
  return first.replace(/\.$/, '');
}

export function parseCliArgs(argv: readonly string[]): BlkCliOptions {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: true,
      options: {
        server: { type: 'string', short: 'S' },
        'read-only': { type: 'boolean' },
        queues: { type: 'string' },
        'queue-size': { type: 'string' },
        serial: { type: 'string' },
        cache: { type: 'string' },
        'print-capabilities': { type: 'boolean' },
        quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError(rephrase(err as Error));
  }
  const help = values.help ?? false;
  const printCapabilities = values['print-capabilities'] ?? false;
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  const image = positionals[0];
  if (image === undefined && !help && !printCapabilities) throw new UsageError('missing operand IMAGE');
  if (image === '') throw new UsageError('empty IMAGE path');
  if (values.server === '') throw new UsageError('-S: empty socket path');
  const queues = values.queues === undefined ? 1 : intArg(values.queues, '--queues', 1, 64);
  const queueSize = values['queue-size'] === undefined ? 128 : intArg(values['queue-size'], '--queue-size', 4, 32768);
  if ((queueSize & (queueSize - 1)) !== 0) throw new UsageError(`--queue-size ${queueSize} is not a power of two`);
  if (values.serial !== undefined && Buffer.byteLength(values.serial) > 20) {
    throw new UsageError(`--serial '${values.serial}' is longer than 20 bytes`);
  }
  const cache = values.cache ?? 'writeback';
  if (cache !== 'writeback' && cache !== 'writethrough') throw new UsageError(`invalid --cache '${cache}' (expected writeback or writethrough)`);
  return {
    help,
    printCapabilities,
    image,
    server: values.server ?? DEFAULT_SERVER,
    readOnly: values['read-only'] ?? false,
    queues,
    queueSize,
    serial: values.serial,
    cache,
    quiet: values.quiet ?? false,
  };
}
