/**
 * Debug logging without its start-up cost. `debug` is a CommonJS package that pulls in `tty`,
 * `util` and `supports-color`; loading it through the ESM → CommonJS bridge took 25–90 ms of a
 * CLI's start (issue 12 item 7), for output nobody sees unless `DEBUG` is set. `createLogger`
 * therefore loads `debug` only when `DEBUG` is non-empty at the time a module creates its
 * logger (the moment `debug` itself reads it), and otherwise returns a no-op with
 * `enabled === false`. With `DEBUG` set the result IS a `debug` instance: same namespaces,
 * format strings and output.
 */
import { createRequire } from 'node:module';

/** A namespaced logger: `log('fmt %s', x)`; `enabled` says whether anything is written. */
export interface Logger {
  (formatter: unknown, ...args: unknown[]): void;
  readonly enabled: boolean;
  readonly namespace: string;
}

type DebugFactory = (namespace: string) => Logger;
let factory: DebugFactory | null = null;

/** A `debug` logger for `namespace` if `DEBUG` is set, else a no-op that never loads `debug`. */
export function createLogger(namespace: string): Logger {
  if (!process.env.DEBUG) {
    const off = (() => {}) as unknown as { enabled: boolean; namespace: string };
    off.enabled = false;
    off.namespace = namespace;
    return off as unknown as Logger;
  }
  factory ??= createRequire(import.meta.url)('debug') as DebugFactory;
  return factory(namespace);
}
