// Test helpers for the addon: fd accounting, syscall-error assertions and child processes for
// behaviour that kills a process (faults on protected mappings).
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'chai';

/** Number of open fds of this process (the readdir's own fd is closed before it returns). */
export function countFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Runs `fn` and asserts it throws a SyscallError with this code, errno and syscall. */
export function expectSyscallError(
  fn: () => unknown,
  code: string,
  errno: number,
  syscall: string,
): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a SyscallError').to.be.instanceOf(Error);
  const e = caught as Error & { code?: unknown; errno?: unknown; syscall?: unknown };
  expect(e.code).to.equal(code);
  expect(e.errno).to.equal(errno);
  expect(e.syscall).to.equal(syscall);
}

/**
 * The addon tests' one wait: resolves once `cond()` holds, re-checking every 2 ms (what it waits
 * for is mostly another process's state in /proc, which no event announces); rejects naming
 * `what` past `boundMs`, a safety net on a loaded machine, never a success condition.
 */
export async function until(cond: () => boolean, what: string, boundMs = 20_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** file:// URL of the addon entry point, for child scripts. */
export const ADDON_URL = pathToFileURL(fileURLToPath(new URL('../index.js', import.meta.url))).href;

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs an ESM script in a fresh node process; `binding` is in scope as the addon. */
export function runChild(body: string, nodeArgs: string[] = []): Promise<ChildResult> {
  const script = `import binding from ${JSON.stringify(ADDON_URL)};\n${body}\n`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
