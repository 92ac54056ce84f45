/**
 * Command lines of the example: `vshm-rng-backend` and `vshm-rng-frontend` (style §8: a bad
 * flag prints one stderr line and exits 2; runtime failures exit 1).
 */
import { parseArgs } from 'node:util';
import { VshmError } from '@vshm/transport';
import { openRngBackend, openRngFrontend } from './index.js';

const DEFAULT_SOCKET = '/tmp/ivshmem_socket';

/** A bad command line: one stderr line, exit 2 (style §8). */
class UsageError extends VshmError {
  constructor(message: string) {
    super('VSHM_ERR_ARGUMENT', '', message);
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}

function parse(prog: string, argv: string[], extra: Record<string, { type: 'string' | 'boolean'; short?: string }>) {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { socket: { type: 'string', short: 'S' }, help: { type: 'boolean', short: 'h' }, ...extra },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 0) throw new UsageError(`unexpected operand '${positionals[0]}'`);
    return values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError(`${prog}: ${firstLine(e)}`);
  }
}

function intArg(prog: string, name: string, v: string | boolean | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+$/.test(v) || n < min || n > max) throw new UsageError(`${prog}: ${name} must be an integer ${min}…${max}, got '${String(v)}'`);
  return n;
}

function usageExit(e: unknown): never {
  process.stderr.write(`${firstLine(e)}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
}

/** `vshm-rng-backend [-S SOCKET]`: serve random bytes until SIGINT/SIGTERM. */
export async function runBackend(argv = process.argv.slice(2)): Promise<void> {
  const prog = 'vshm-rng-backend';
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parse(prog, argv, {});
  } catch (e) {
    usageExit(e);
  }
  if (values.help === true) {
    process.stdout.write(`usage: ${prog} [-S SOCKET]\n  Serve a virtio-rng device (id 4) on a vshm-server started with -P 0x8004.\n`);
    return;
  }
  const socket = typeof values.socket === 'string' ? values.socket : DEFAULT_SOCKET;
  let be: Awaited<ReturnType<typeof openRngBackend>>;
  try {
    be = await openRngBackend(socket);
  } catch (e) {
    process.stderr.write(`${prog}: ${firstLine(e)}\n`);
    process.exit(1);
  }
  process.stderr.write(`${prog}: serving on ${socket} as peer ${be.peer.id}\n`);
  be.transport.on('session', () => process.stderr.write(`${prog}: driver live\n`));
  be.transport.on('session-end', (r: string) => process.stderr.write(`${prog}: session ended (${r})\n`));
  be.peer.on('peer-gone', (id: number) => process.stderr.write(`${prog}: peer ${id} gone\n`));
  let stopping = false;
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    void be.transport.close().then(() => {
      be.peer.close();
      process.exit(code);
    });
  };
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));
  be.peer.on('server-gone', () => {
    process.stderr.write(`${prog}: server gone\n`);
    stop(1);
  });
}

/** `vshm-rng-frontend [-S SOCKET] [-n BYTES] [-c COUNT]`: print COUNT reads of BYTES as hex lines. */
export async function runFrontend(argv = process.argv.slice(2)): Promise<void> {
  const prog = 'vshm-rng-frontend';
  let bytes: number;
  let count: number;
  let socket: string;
  try {
    const values = parse(prog, argv, { bytes: { type: 'string', short: 'n' }, count: { type: 'string', short: 'c' } });
    if (values.help === true) {
      process.stdout.write(`usage: ${prog} [-S SOCKET] [-n BYTES] [-c COUNT]\n  Read random bytes from a vshm virtio-rng back-end; one hex line per read.\n`);
      return;
    }
    bytes = intArg(prog, '-n', values.bytes, 32, 1, 1 << 20);
    count = intArg(prog, '-c', values.count, 1, 1, 1 << 20);
    socket = typeof values.socket === 'string' ? values.socket : DEFAULT_SOCKET;
  } catch (e) {
    usageExit(e);
  }
  let fe: Awaited<ReturnType<typeof openRngFrontend>>;
  try {
    fe = await openRngFrontend(socket);
  } catch (e) {
    process.stderr.write(`${prog}: ${firstLine(e)}\n`);
    process.exit(1);
  }
  let code = 0;
  try {
    for (let i = 0; i < count; i++) {
      const b = await fe.rng.read(bytes);
      process.stdout.write(`${b.toString('hex')}\n`);
    }
  } catch (e) {
    process.stderr.write(`${prog}: ${firstLine(e)}\n`);
    code = 1;
  }
  await fe.transport.close();
  fe.peer.close();
  process.exitCode = code;
}
