/**
 * Command-line parsing of `vshm-console-backend` (checked at the edge, precisely). Pure:
 * argv in, options out or a UsageError (one line, exit 2), through the shared CLI kit of
 * @vshm/transport so every vshm command speaks alike.
 */
import { parseCommandLine, UsageError } from '@vshm/transport/cli';
import type { ConsoleResizeOrder } from 'virtio-spec-types';
import { portNameProblem } from './device.js';

export { UsageError };

export const PROG = 'vshm-console-backend';

export const USAGE = `Usage: ${PROG} [options]

The virtio-console device (back-end, peer 0, protocol 0xC003) of vshm (spec §7).
Port 0 is the console on this terminal: stdin in raw mode, output to stdout.

Options:
  -S, --server PATH        vshm-server socket. Without -S: /tmp/ivshmem_socket if a server
                           listens there, else an embedded server (-l 64K -n 2 -V 3 -P 0x8003)
                           on a private socket whose path is printed on stderr
                           (--socket PATH: deprecated spelling of --server)
  --embedded               always start the embedded server (not with -S)
  --port NAME              add a named port (repeatable; enables MULTIPORT, ports 1, 2, ...);
                           NAME: 1 to 120 bytes of printable UTF-8 (no control characters,
                           no Unicode bidi controls)
  --port-socket NAME=PATH  attach port NAME to a UNIX socket PATH (listens; one client at a
                           time; the client connected = host side open). Adds the port.
  --port-exec NAME=CMD     attach port NAME to the stdin/stdout/stderr of \`sh -c CMD\`. Adds the port.
  --size COLSxROWS         console size when stdout is not a terminal (offers SIZE)
  --emerg-write            offer EMERG_WRITE (emergency output on port 0)
  --queue-size N|auto      maximum queue size offered: a power of two, or auto (default):
                           follows the memory so that a Linux guest's receive buffers take
                           at most about 1/4 of it: 8 on -l 64K, 64 on 1M, 256 from 4M on;
                           with named ports less (1 on -l 64K, 16 on 1M with one port)
  --settle-ms N            without MULTIPORT, deliver input at most N ms after DRIVER_OK even if
                           the front-end has not written yet (default 200)
  --drop-blocked-output MS discard the front-end's output on a port whose host side (a
                           terminal, pipe or socket) has pushed back for MS ms without
                           taking all that waits, until it has, and say how much (default:
                           never — nothing is lost, the front-end waits; a Linux guest's
                           console spins meanwhile, docs/guest.md)
  --resize-order ORDER     cols-rows (default, VIRTIO 1.2) or rows-cols: the order of the
                           size in MULTIPORT RESIZE messages; rows-cols for a Linux guest
                           whose virtio_console predates the 2025 fix (it reads rows first)
  --server-timeout SECONDS if the server (-S) goes away, reconnect to a restarted one at
                           the same path; give up (exit 1) after SECONDS (default 60)
  --no-reconnect           exit 1 as soon as the server goes away
  -q, --quiet              no informational lines on stderr (link state: front-end
                           connected / left, server lost / back); the embedded server's
                           socket path is still printed: nothing else tells it
  --print-capabilities     print the device's capabilities as one JSON object and exit
  -h, --help               this help

Quit with Ctrl-] then q (on a terminal), or SIGINT/SIGTERM/SIGHUP. Ctrl-] Ctrl-] sends one Ctrl-].
Exit status: 0 on a clean quit, 1 on runtime failures, 2 on bad arguments.
DEBUG=vshm:console-be (or vshm:*) traces the device.`;

export type Attachment = { kind: 'socket'; path: string } | { kind: 'exec'; command: string };

export interface BackendCliOptions {
  help: boolean;
  /** --print-capabilities: print the JSON object and exit. */
  printCapabilities: boolean;
  /** Warnings to print once (a deprecated option spelling). */
  warnings: string[];
  /** -S; undefined = default / embedded. */
  socketPath: string | undefined;
  /** --embedded: always start the embedded server. */
  embedded: boolean;
  /** Named ports 1…n in order. */
  ports: string[];
  /** Attachment per port name. */
  attachments: Map<string, Attachment>;
  size: { cols: number; rows: number } | undefined;
  emergWrite: boolean;
  /** --queue-size: a power of two, or 'auto' (the default). */
  queueSize: number | 'auto';
  settleMs: number;
  /** --drop-blocked-output in ms; null = never. */
  dropBlockedOutputMs: number | null;
  /** --resize-order. */
  resizeOrder: ConsoleResizeOrder;
  quiet: boolean;
  /** Reconnect to a restarted server (default), unless --no-reconnect. */
  reconnect: boolean;
  /** --server-timeout in ms. */
  serverTimeoutMs: number;
}

/** How long a restarted server may take before the back-end gives up (issue 9 item 6). */
export const DEFAULT_SERVER_TIMEOUT_S = 60;

function parseIntStrict(text: string, what: string, min: number, max: number): number {
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`invalid ${what} '${text}' (expected a decimal integer)`);
  const v = Number(text);
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new UsageError(`${what} ${text} out of range ${min}…${max}`);
  return v;
}

function parseQueueSize(text: string): number | 'auto' {
  if (text === 'auto') return text;
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`invalid --queue-size '${text}' (expected auto or a power of two)`);
  const v = parseIntStrict(text, '--queue-size', 1, 32768);
  if ((v & (v - 1)) !== 0) throw new UsageError(`--queue-size ${v} is not a power of two`);
  return v;
}

function parseSizeArg(text: string): { cols: number; rows: number } {
  const m = /^([0-9]+)[xX]([0-9]+)$/.exec(text);
  if (!m) throw new UsageError(`invalid --size '${text}' (expected COLSxROWS, e.g. 80x24)`);
  return { cols: parseIntStrict(m[1], 'columns', 1, 0xffff), rows: parseIntStrict(m[2], 'rows', 1, 0xffff) };
}

function checkName(name: string, flag: string): string {
  const problem = portNameProblem(name);
  if (problem !== undefined) throw new UsageError(`${flag}: ${problem}`);
  return name;
}

function splitPair(text: string, flag: string, what: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0 || eq === text.length - 1) throw new UsageError(`invalid ${flag} '${text}' (expected NAME=${what})`);
  return [checkName(text.slice(0, eq), flag), text.slice(eq + 1)];
}

/** The long options, for --print-capabilities (deprecated spellings left out). */
export const LONG_OPTIONS = [
  '--server', '--embedded', '--port', '--port-socket', '--port-exec', '--size', '--emerg-write',
  '--queue-size', '--settle-ms', '--drop-blocked-output', '--resize-order',
  '--server-timeout', '--no-reconnect', '--quiet', '--print-capabilities', '--help',
];

export function parseCliArgs(argv: readonly string[]): BackendCliOptions {
  const { values } = parseCommandLine(argv, {
    server: { type: 'string', short: 'S' },
    socket: { type: 'string' }, // deprecated spelling of --server (issue 10: one CLI voice)
    embedded: { type: 'boolean' },
    port: { type: 'string', multiple: true },
    'port-socket': { type: 'string', multiple: true },
    'port-exec': { type: 'string', multiple: true },
    size: { type: 'string' },
    'emerg-write': { type: 'boolean' },
    'queue-size': { type: 'string' },
    'settle-ms': { type: 'string' },
    'drop-blocked-output': { type: 'string' },
    'resize-order': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    'server-timeout': { type: 'string' },
    'no-reconnect': { type: 'boolean' },
    'print-capabilities': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  const warnings: string[] = [];
  if (values.socket !== undefined) {
    if (values.server !== undefined) throw new UsageError('--server and --socket (its deprecated spelling) both given');
    warnings.push('--socket is deprecated: use -S/--server PATH (same meaning)');
  }
  const server = values.server ?? values.socket;
  if (server === '') throw new UsageError("option '--server' needs a non-empty value");
  if (server !== undefined && values.embedded === true) throw new UsageError('--server and --embedded exclude each other');

  const ports: string[] = [];
  const addPort = (name: string): void => {
    if (!ports.includes(name)) ports.push(name);
  };
  for (const n of values.port ?? []) {
    if (ports.includes(checkName(n, '--port'))) throw new UsageError(`--port ${n} given twice`);
    addPort(n);
  }
  const attachments = new Map<string, Attachment>();
  const attach = (name: string, a: Attachment, flag: string): void => {
    if (attachments.has(name)) throw new UsageError(`${flag}: port ${name} already has an attachment`);
    attachments.set(name, a);
    addPort(name);
  };
  for (const s of values['port-socket'] ?? []) {
    const [name, path] = splitPair(s, '--port-socket', 'PATH');
    attach(name, { kind: 'socket', path }, '--port-socket');
  }
  for (const s of values['port-exec'] ?? []) {
    const [name, command] = splitPair(s, '--port-exec', 'CMD');
    attach(name, { kind: 'exec', command }, '--port-exec');
  }
  if (ports.length > 63) throw new UsageError(`too many ports (${ports.length}); at most 63 named ports`);
  const socketPaths = [...attachments.values()].flatMap((a) => (a.kind === 'socket' ? [a.path] : []));
  if (new Set(socketPaths).size !== socketPaths.length) throw new UsageError('--port-socket: the same PATH given twice');

  const queueSize = parseQueueSize(values['queue-size'] ?? 'auto');
  const resizeOrder = values['resize-order'] ?? 'cols-rows';
  if (resizeOrder !== 'cols-rows' && resizeOrder !== 'rows-cols') throw new UsageError(`invalid --resize-order '${resizeOrder}' (expected cols-rows or rows-cols)`);
  // It describes the guest's kernel, not this command line: a launcher may pass it always and add
  // ports only sometimes. Without one it has no effect, which is said (a typo'd intent is heard).
  if (values['resize-order'] !== undefined && ports.length === 0) warnings.push('--resize-order has no effect without a named port (RESIZE messages exist only with MULTIPORT)');

  if (values['no-reconnect'] === true && values['server-timeout'] !== undefined) throw new UsageError('--server-timeout and --no-reconnect exclude each other');
  const st = values['server-timeout'];
  const serverTimeoutMs = (st === undefined ? DEFAULT_SERVER_TIMEOUT_S : parseIntStrict(st, '--server-timeout', 1, 86_400)) * 1000;

  return {
    help: values.help ?? false,
    printCapabilities: values['print-capabilities'] ?? false,
    warnings,
    socketPath: server,
    embedded: values.embedded ?? false,
    ports,
    attachments,
    size: values.size === undefined ? undefined : parseSizeArg(values.size),
    emergWrite: values['emerg-write'] ?? false,
    queueSize,
    settleMs: values['settle-ms'] === undefined ? 200 : parseIntStrict(values['settle-ms'], '--settle-ms', 0, 60_000),
    dropBlockedOutputMs: values['drop-blocked-output'] === undefined ? null : parseIntStrict(values['drop-blocked-output'], '--drop-blocked-output', 0, 3_600_000),
    resizeOrder,
    quiet: values.quiet ?? false,
    reconnect: values['no-reconnect'] !== true,
    serverTimeoutMs,
  };
}
