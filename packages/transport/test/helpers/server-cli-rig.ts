/**
 * Shared setup for the `vshm-server` CLI tests (§1.9; §8 items 8–12): run() starts the CLI in a
 * child process and turns its stderr into awaitable lines; useCliRig() (inside a describe block)
 * tracks children, clients and paths and cleans them up after each test. Waits are on stderr
 * lines, exits or messages — never a sleep.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import binding from '@vshm/addon';
import { RawClient, removeIfExists, tmpPath } from './raw-client.js';

const CLI = fileURLToPath(new URL('../../src/server/cli.ts', import.meta.url));
const TIMEOUT = 30000;

export interface Child {
  proc: ChildProcess;
  stdout: () => string;
  stderrLines: () => string[];
  /** Resolves with the first stderr line matching `re` (already seen or future). */
  line(re: RegExp): Promise<string>;
  /** Resolves once at least `n` stderr lines match `re`. */
  lines(re: RegExp, n: number): Promise<string>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function run(args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DEBUG: '' },
  });
  let out = '';
  let err = '';
  let waiters: { test: () => string | undefined; resolve: (s: string) => void }[] = [];
  const lines = (): string[] => err.split('\n').filter((l) => l.length > 0);
  const check = (): void => {
    waiters = waiters.filter((w) => {
      const hit = w.test();
      if (hit !== undefined) w.resolve(hit);
      return hit === undefined;
    });
  };
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    check();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const wait = (what: string, test: () => string | undefined): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no stderr ${what} within ${TIMEOUT} ms; got: ${err}`)), TIMEOUT);
      const w = {
        test,
        resolve: (s: string) => {
          clearTimeout(timer);
          resolve(s);
        },
      };
      waiters.push(w);
      check();
      void exit.then(() => {
        check();
        if (waiters.includes(w)) {
          waiters = waiters.filter((x) => x !== w);
          clearTimeout(timer);
          reject(new Error(`server exited before printing ${what}; stderr: ${err}`));
        }
      });
    });
  return {
    proc,
    stdout: () => out,
    stderrLines: lines,
    exit,
    line: (re) => wait(String(re), () => lines().find((l) => re.test(l))),
    lines: (re, n) => wait(`${n}× ${re}`, () => {
      const hits = lines().filter((l) => re.test(l));
      return hits.length >= n ? hits[n - 1] : undefined;
    }),
  };
}

export interface CliRig {
  /** Paths removed after each test. */
  readonly paths: string[];
  /** A fresh socket path, removed after the test. */
  sock(): string;
  /** Start the CLI (killed after the test if still running). */
  server(args: string[]): Child;
  /** Start the CLI and wait for its "listening on" line. */
  ready(args: string[]): Promise<Child>;
  connect(path: string): RawClient;
  /** Close every client so far (a test that cycles clients). */
  closeClients(): void;
}

export function useCliRig(): CliRig {
  const children: Child[] = [];
  const clients: RawClient[] = [];
  const paths: string[] = [];

  const sock = (): string => {
    const p = tmpPath('cli');
    paths.push(p);
    return p;
  };
  const server = (args: string[]): Child => {
    const c = run(args);
    children.push(c);
    return c;
  };
  const ready = async (args: string[]): Promise<Child> => {
    const c = server(args);
    await c.line(/listening on/);
    return c;
  };
  const connect = (path: string): RawClient => {
    const c = RawClient.connect(binding, path);
    clients.push(c);
    return c;
  };
  const closeClients = (): void => {
    for (const c of clients.splice(0)) c.close();
  };

  afterEach(async () => {
    closeClients();
    for (const c of children.splice(0)) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) {
        c.proc.kill('SIGKILL');
        await c.exit;
      }
    }
    for (const p of paths.splice(0)) removeIfExists(p);
  });

  return { paths, sock, server, ready, connect, closeClients };
}
