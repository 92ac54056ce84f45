/**
 * Command-line parsing of `vshm-blk-backend`. Pure: argv in, options out, or a UsageError (one
 * line, exit 2), through the shared CLI kit of @vshm/transport so every vshm command speaks alike.
 */
import { parseCommandLine, UsageError } from '@vshm/transport/cli';
import { BLK_SECTOR_SIZE } from 'virtio-spec-types';
import { isSerialText, type CacheMode } from './device.js';

export { UsageError };

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
  --block-size N         logical block size offered (BLK_SIZE), a power of two 512…65536
                         (default 512); requests must be aligned to it, and the disk is the
                         image's whole blocks (a partial last block is not served). Linux
                         guests take at most their page size (4096 on x86)
  --serial S             GET_ID serial, printable ASCII, at most 20 bytes (default: derived
                         from the image path)
  --cache MODE           writeback (default: writes complete once written, FLUSH syncs) or
                         writethrough (every write is synced before it completes)
  --print-capabilities   print the device's capabilities as JSON and exit
  -q, --quiet            no link-state lines on stderr
  -h, --help             this help

SIGHUP re-reads the image size (resize); SIGINT/SIGTERM exit cleanly.
Exit status: 0 on a clean exit, 1 on runtime failures, 2 on bad arguments.`;

export interface BlkCliOptions {
  help: boolean;
  printCapabilities: boolean;
  image: string | undefined;
  server: string;
  readOnly: boolean;
  queues: number;
  queueSize: number;
  blockSize: number;
  serial: string | undefined;
  cache: CacheMode;
  quiet: boolean;
}

/** The options the CLI accepts, for --print-capabilities. */
export const CLI_OPTIONS = ['--server', '--read-only', '--queues', '--queue-size', '--block-size', '--serial', '--cache', '--print-capabilities', '--quiet', '--help'];

function intArg(text: string, flag: string, min: number, max: number): number {
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`invalid ${flag} '${text}' (expected a decimal integer)`);
  const v = Number(text);
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new UsageError(`${flag} ${text} out of range ${min}…${max}`);
  return v;
}

export function parseCliArgs(argv: readonly string[]): BlkCliOptions {
  const { values, positionals } = parseCommandLine(
    argv,
    {
      server: { type: 'string', short: 'S' },
      'read-only': { type: 'boolean' },
      queues: { type: 'string' },
      'queue-size': { type: 'string' },
      'block-size': { type: 'string' },
      serial: { type: 'string' },
      cache: { type: 'string' },
      'print-capabilities': { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  const help = values.help ?? false;
  const printCapabilities = values['print-capabilities'] ?? false;
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  const image = positionals[0];
  if (image === undefined && !help && !printCapabilities) throw new UsageError('missing operand IMAGE');
  if (image === '') throw new UsageError('empty IMAGE path');
  if (values.server === '') throw new UsageError("option '--server' needs a non-empty value");
  const queues = values.queues === undefined ? 1 : intArg(values.queues, '--queues', 1, 64);
  const queueSize = values['queue-size'] === undefined ? 128 : intArg(values['queue-size'], '--queue-size', 4, 32768);
  if ((queueSize & (queueSize - 1)) !== 0) throw new UsageError(`--queue-size ${queueSize} is not a power of two`);
  const blockSize = values['block-size'] === undefined ? BLK_SECTOR_SIZE : intArg(values['block-size'], '--block-size', BLK_SECTOR_SIZE, 65536);
  if ((blockSize & (blockSize - 1)) !== 0) throw new UsageError(`--block-size ${blockSize} is not a power of two`);
  if (values.serial !== undefined && Buffer.byteLength(values.serial) > 20) {
    throw new UsageError(`--serial '${values.serial}' is longer than 20 bytes`);
  }
  if (values.serial !== undefined && !isSerialText(values.serial)) {
    throw new UsageError(`--serial ${JSON.stringify(values.serial)} is not printable ASCII`);
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
    blockSize,
    serial: values.serial,
    cache,
    quiet: values.quiet ?? false,
  };
}
