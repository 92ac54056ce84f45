/**
 * Command-line parsing for `vshm-server` (spec §1.9). getopt-style, like the ivshmem2-server:
 * single-letter flags, clustering (`-vF`), values separate or attached (`-l 64K`, `-l64K`), `--`
 * ends the options. The long options of the one vshm CLI voice are aliases: `--help` (-h),
 * `--server PATH` / `--server=PATH` (-S), `--verbose` (-v). Pure: returns the resolved options or
 * throws ArgumentError (one line; the CLI adds "(try --help)").
 */
import { ArgumentError } from '../errors.js';
import {
  DEFAULT_SOCKET_PATH,
  parseNumber,
  parseSize,
  parseUidList,
  resolveServerOptions,
  type ServerOptions,
  type ServerOptionsInput,
} from './options.js';

export type ServerArgs = { help: true } | { help: false; options: ServerOptions };

const FLAGS = new Set(['h', 'v', 'F']);
const WITH_VALUE = new Set(['p', 'S', 'M', 'm', 'l', 'o', 'n', 'V', 'P']);

/**
 * Long options (aliases of single letters); `takesValue` as in WITH_VALUE. `--peer-uids` has no
 * letter of its own (the ivshmem2-server's letters are QEMU's to assign): its key 'U' is internal
 * and not in WITH_VALUE, so `-U` stays an unknown option.
 */
const LONG: ReadonlyMap<string, { short: string; takesValue: boolean }> = new Map([
  ['help', { short: 'h', takesValue: false }],
  ['verbose', { short: 'v', takesValue: false }],
  ['server', { short: 'S', takesValue: true }],
  ['peer-uids', { short: 'U', takesValue: true }],
]);

export const SERVER_USAGE = `Usage: vshm-server [OPTION]...
  -h, --help         show this help and exit
  -v, --verbose      print connections and departures to stderr
  -F                 foreground (accepted; vshm-server always runs in the foreground)
  -p PATH            write a pid file at PATH (default: none)
  -S, --server PATH  listening socket path (default: ${DEFAULT_SOCKET_PATH})
  -M NAME            POSIX shared memory object NAME, created if absent (unlinked at exit)
  -m DIR             an unlinked file in DIR (e.g. a hugetlbfs mount)
  -l SIZE            memory size, rounded up to a power of two (default: 4M)
  -o SIZE            output section size per peer, a multiple of 4096 (default: 0)
  -n N               maximum number of peers, 1-1024 (default: 2)
  -V N               vectors (eventfds) per peer, 1-64 (default: 1)
  -P N               16-bit protocol; >= 0x8000 is virtio and needs -n 2 (default: 0)
  --peer-uids LIST   serve clients of these uids too (comma-separated, or any); without it
                     $VSHM_PEER_UIDS, else only our own uid and root: a client of another
                     uid (SO_PEERCRED) is closed before any message, with a warning line
SIZE: decimal with optional K, M or G (powers of 1024). N: decimal, 0x hex or 0 octal.
Without -M or -m the memory is an anonymous sealed memfd; of -M/-m the last one wins.
Exit status: 0 after --help or SIGINT/SIGTERM/SIGHUP, 1 on runtime failures, 2 on bad arguments.`;

/** Parse `argv` (without node and script). Throws ArgumentError on the first problem. */
export function parseServerArgs(argv: readonly string[]): ServerArgs {
  const input: ServerOptionsInput = {};
  // `spelled`: the option as the user wrote it (`--server` or `-S`), for the error message.
  const apply = (opt: string, value: string, spelled = `-${opt}`): void => {
    // `--peer-uids ''` is a list of none (our uid and root only, whatever VSHM_PEER_UIDS says).
    if (value.length === 0 && opt !== 'U') throw new ArgumentError(`option '${spelled}' needs a non-empty value`);
    switch (opt) {
      case 'p':
        input.pidFile = value;
        break;
      case 'S':
        input.socketPath = value;
        break;
      case 'M':
        input.memory = { kind: 'shm', name: value };
        break;
      case 'm':
        input.memory = { kind: 'tmpfile', dir: value };
        break;
      case 'l':
        input.memorySize = parseSize(value, 'memory size (-l)');
        if (input.memorySize === 0) throw new ArgumentError(`memory size (-l) must not be 0`);
        break;
      case 'o':
        input.outputSectionSize = parseSize(value, 'output section size (-o)');
        break;
      case 'n':
        input.maxPeers = parseNumber(value, 'max peers (-n)');
        break;
      case 'V':
        input.vectors = parseNumber(value, 'vectors (-V)');
        break;
      case 'P':
        input.protocol = parseNumber(value, 'protocol (-P)');
        break;
      case 'U':
        input.peerUids = parseUidList(value, spelled);
        break;
    }
  };

  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      i++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      const long = LONG.get(name);
      if (long === undefined) throw new ArgumentError(`unknown option '--${name}'`);
      if (!long.takesValue) {
        if (eq >= 0) throw new ArgumentError(`option '--${name}' takes no value`);
        if (long.short === 'h') return { help: true };
        input.verbose = true;
        continue;
      }
      let value: string;
      if (eq >= 0) value = arg.slice(eq + 1);
      else if (i + 1 < argv.length) value = argv[++i];
      else throw new ArgumentError(`option '--${name}' needs a value`);
      apply(long.short, value, `--${name}`);
      continue;
    }
    for (let j = 1; j < arg.length; j++) {
      const c = arg[j];
      // `-v=1`: the long form's '=' after a flag, not a cluster with an option '-='.
      if (c === '=' && j > 1) throw new ArgumentError(`option '-${arg[j - 1]}' takes no value (in '${arg}')`);
      if (FLAGS.has(c)) {
        if (c === 'h') return { help: true };
        if (c === 'v') input.verbose = true;
        continue; // -F: accepted, no effect (§1.9)
      }
      if (!WITH_VALUE.has(c)) throw new ArgumentError(`unknown option '-${c}'`);
      let value: string;
      if (j + 1 < arg.length) {
        value = arg.slice(j + 1);
        // getopt would take `-S=/x` as the path "=/x", which no one means; the attached form has no '='.
        if (value.startsWith('=')) {
          const long = [...LONG].find(([, l]) => l.short === c)?.[0];
          throw new ArgumentError(`write '-${c} VALUE'${long === undefined ? '' : ` or '--${long}=VALUE'`}, not '-${c}${value}'`);
        }
      } else {
        if (i + 1 >= argv.length) throw new ArgumentError(`option '-${c}' needs a value`);
        value = argv[++i];
      }
      apply(c, value);
      break;
    }
  }
  if (i < argv.length) throw new ArgumentError(`unexpected argument '${argv[i]}'`);
  return { help: false, options: resolveServerOptions(input) };
}
