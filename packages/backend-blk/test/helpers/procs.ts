/**
 * Child processes for the CLI tests: the bin shims run over the compiled dist (built by
 * `npm test`'s pretest). Waits on stderr lines and exits only — no sleeps.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const repo = (p: string): string => fileURLToPath(new URL(`../../../../${p}`, import.meta.url));
export const SERVER = repo('packages/transport/bin/vshm-server.js');
export const BACKEND = repo('packages/backend-blk/bin/vshm-blk-backend.js');
const BOUND = 30000;

export interface Proc {
  proc: ChildProcess;
  out(): string;
  err(): string;
  /** Resolves when stderr matches `re` (now or later); rejects if the process exits first or after the bound. */
  stderrLine(re: RegExp): Promise<void>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startProc(script: string, args: string[], env: Record<string, string> = {}): Proc {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBUG: '', ...env } });
  let out = '';
  let err = '';
  let exited = false;
  const watchers = new Set<() => void>();
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of [...watchers]) w();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('close', (code, signal) => {
      exited = true;
      for (const w of [...watchers]) w();
      resolve({ code, signal });
    }),
  );
  return {
    proc,
    out: () => out,
    err: () => err,
    exit,
    stderrLine: (re) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no stderr ${re} within ${BOUND} ms: ${err}`)), BOUND);
        const check = (): void => {
          if (re.test(err)) {
            clearTimeout(timer);
            watchers.delete(check);
            resolve();
          } else if (exited) {
            clearTimeout(timer);
            watchers.delete(check);
            reject(new Error(`${script} exited before ${re}: ${err}`));
          }
        };
        watchers.add(check);
        check();
      }),
  };
}

/** Run to completion (for usage-error and capability checks). */
export async function runProc(script: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const p = startProc(script, args);
  const { code } = await p.exit;
  return { code, out: p.out(), err: p.err() };
}

export async function stopProc(p: Proc | undefined): Promise<void> {
  if (p === undefined || p.proc.exitCode !== null || p.proc.signalCode !== null) return;
  p.proc.kill('SIGTERM');
  await p.exit;
}
