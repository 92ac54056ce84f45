#!/usr/bin/env node
/**
 * `npm start`: a shell that lives on the other side of the shared memory (spec §7.1 scenario).
 *
 *   embedded IvshmemServer (-l 64K -n 2 -V 3 -P 0x8003, private socket in a temp dir)
 *   vshm-console-backend -S SOCK --quiet        peer 0, the device, on this terminal (raw mode)
 *   vshm-console-frontend -S SOCK -- /bin/sh -i peer 1, the driver, running the shell on a pty
 *
 * The front-end gives the shell a pty (echo, line editing, ^C to its job) sized from the console
 * device; a window resize reaches the shell along the same path a guest's would: the terminal's
 * SIGWINCH → the back-end (config SIZE update, §7.3) → the front-end → the pty (SIGWINCH to the
 * shell's job). Nothing here forwards it by hand.
 *
 * The back-end connects first (IDs are lowest-free, §1.4); the front-end starts once the server
 * saw peer 0. Quitting — the shell's `exit` (the front-end then exits) or Ctrl-] q (the back-end
 * exits) — stops the other side, the server (socket unlinked, memfd memory: no shm object) and
 * removes the temp dir. Closing the terminal (SIGHUP) cleans up the same way, and so does a signal
 * while the server is still starting (nothing else is started then). The terminal is the
 * back-end's to restore; if it died by a signal we run `stty sane` as a safety net.
 *
 * A child killed by a signal ends the session with one line saying so, exit 1 (one that exits with
 * a code has said why itself). Needs a terminal on stdin (the console has no end of input: `npm
 * start < /dev/null` would wait for ever) and the compiled TypeScript (the `prestart` script runs
 * `tsc --build`); without either it refuses in one line, exit 1, before creating anything.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BACKEND = join(ROOT, 'packages/backend-console/bin/vshm-console-backend.js');
const FRONTEND = join(ROOT, 'packages/frontend-console/bin/vshm-console-frontend.js');
/** What the two CLIs above load: without it they would fail with a stack trace of their own. */
const BUILT = [join(ROOT, 'packages/backend-console/dist/cli.js'), join(ROOT, 'packages/frontend-console/dist/cli.js')];
const SHELL = process.env.VSHM_START_SHELL ?? '/bin/sh';
/** Bound for the back-end to connect, and for a child to exit after being asked to. */
const CONNECT_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

const tty = process.stdout.isTTY === true;
/** Lines written while the back-end holds the terminal in raw mode need an explicit CR. */
const say = (line) => process.stderr.write(`${line}${tty ? '\r\n' : '\n'}`);

/** Copy a child's stderr to ours, with CRLF on a raw terminal. */
function forwardStderr(child) {
  child.stderr.on('data', (chunk) => {
    process.stderr.write(tty ? chunk.toString().replace(/\r?\n/g, '\r\n') : chunk);
  });
}

/** How a child that ended by itself ended, for the one line that says why we stop. */
function howEnded(code, sig) {
  return sig !== null ? `was killed (${sig})` : `exited with code ${code}`;
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function running(child) {
  return child !== null && child.exitCode === null && child.signalCode === null;
}

/** Send `sig` to `child`, or to its process group; one that is gone already is no error. */
function signal(child, group, sig) {
  try {
    if (group) process.kill(-child.pid, sig);
    else child.kill(sig);
  } catch {
    // already gone
  }
}

/** Ask `child` (or its process group) to stop; escalate to SIGKILL after STOP_TIMEOUT_MS. */
async function stop(child, signals, group) {
  if (!running(child)) return;
  for (const s of signals) signal(child, group, s);
  const timer = setTimeout(() => signal(child, group, 'SIGKILL'), STOP_TIMEOUT_MS);
  await exited(child);
  clearTimeout(timer);
  // The shell may outlive the front-end in its group (an interactive sh ignores SIGTERM).
  if (group) signal(child, true, 'SIGKILL');
}

async function main() {
  // What we write ourselves is information; failing to write it must not stop the cleanup. A
  // closed terminal (EIO) or a broken stderr pipe (EPIPE) makes every write fail with an 'error'
  // that, unheard, ends the process at once — leaving the server's directory and socket behind
  // (the likely cause of a CI run where closing the terminal left them: a child's line forwarded
  // before our SIGHUP handler had run).
  for (const s of [process.stdout, process.stderr]) s.on('error', () => {});
  // Refusals come before anything is created: one line, exit 1, nothing to clean up.
  let IvshmemServer;
  try {
    const missing = BUILT.find((f) => !existsSync(f));
    if (missing !== undefined) throw new Error(`${missing} is missing`);
    ({ IvshmemServer } = await import('@vshm/transport'));
  } catch (err) {
    process.stderr.write(`vshm start: the TypeScript is not built (run \`npm run build:ts\`): ${String(err.message).split('\n')[0]}\n`);
    process.exit(1);
  }
  // The console carries no end of input: with stdin at EOF (< /dev/null, a pipe) the shell would
  // wait for a line for ever, and so would we.
  if (process.stdin.isTTY !== true) {
    process.stderr.write('vshm start: stdin is not a terminal: the shell over shared memory is interactive, run it in a terminal\n');
    process.exit(1);
  }
  let dir;
  try {
    dir = mkdtempSync(join(tmpdir(), 'vshm-start-'));
  } catch (err) {
    process.stderr.write(`vshm start: cannot create a temp dir in ${tmpdir()}: ${err.message}\n`);
    process.exit(1);
  }
  const socketPath = join(dir, 'ivshmem.sock');
  const server = new IvshmemServer({ socketPath, memorySize: 64 * 1024, maxPeers: 2, vectors: 3, protocol: 0x8003 });
  let be = null;
  let fe = null;
  let finishing = null;

  const finish = (code) => {
    finishing ??= (async () => {
      // Back-end first: it restores the terminal and leaves in order (State := RESET, disconnect).
      await stop(be, ['SIGTERM'], false);
      await stop(fe, ['SIGHUP', 'SIGTERM'], true);
      if (be !== null && be.signalCode !== null && process.stdin.isTTY) {
        spawnSync('stty', ['sane'], { stdio: 'inherit' });
      }
      await server.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
      process.exit(code);
    })();
    return finishing;
  };
  /**
   * A child ended by itself: the session is over. One that exited with a code said why on its
   * stderr (forwarded); one killed by a signal could not, so we say it. Exits we caused while
   * finishing are not news.
   */
  const childEnded = (name, code, sig) => {
    if (finishing === null && sig !== null) say(`vshm start: the ${name} ${howEnded(code, sig)}`);
    void finish(sig === null ? (code ?? 1) : 1);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => void finish(0));
  }
  // Last resort, should anything still end this process unplanned (an uncaught exception): what
  // can be undone synchronously is. The children are asked to stop (the back-end restores the
  // terminal on SIGTERM), the server is closed (stop() does its work before its first await) and
  // the directory goes.
  process.on('exit', () => {
    if (!existsSync(dir)) return; // finish() got there
    if (running(be)) signal(be, false, 'SIGTERM');
    if (running(fe)) signal(fe, true, 'SIGTERM');
    void server.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  try {
    await server.start();
  } catch (err) {
    // A signal meanwhile: finish() is cleaning up and exits; the failure is no news.
    if (finishing !== null) return;
    rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`vshm start: cannot start the server: ${err.message}\n`);
    process.exit(1);
  }
  // A signal while the server was starting (finish() waits for start() to end, then stops it and
  // exits): no session line, and above all no child — one spawned now would outlive us, orphaned
  // on the terminal, since finish() has already looked for children to stop.
  if (finishing !== null) return;

  say(`vshm: ${SHELL} -i over shared memory (${socketPath}) — quit with \`exit\` or Ctrl-] then q`);

  const backendUp = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the back-end did not connect')), CONNECT_TIMEOUT_MS);
    server.on('peer-connected', (id) => {
      if (id === 0) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  be = spawn(process.execPath, [BACKEND, '-S', socketPath, '--quiet'], { stdio: ['inherit', 'inherit', 'pipe'] });
  forwardStderr(be);
  be.once('exit', (code, sig) => childEnded('back-end', code, sig));
  be.once('error', (err) => {
    say(`vshm start: cannot run the back-end: ${err.message}`);
    void finish(1);
  });
  try {
    await backendUp;
  } catch (err) {
    say(`vshm start: ${err.message}`);
    await finish(1);
  }
  // Finishing already (a signal, the back-end gone): finish() may be past stopping the front-end.
  if (finishing !== null) return;

  // Own process group: terminal signals stay with the back-end, and cleanup reaches the shell.
  fe = spawn(process.execPath, [FRONTEND, '-S', socketPath, '--', SHELL, '-i'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  forwardStderr(fe);
  fe.once('exit', (code, sig) => childEnded('front-end', code, sig));
  fe.once('error', (err) => {
    say(`vshm start: cannot run the front-end: ${err.message}`);
    void finish(1);
  });
}

main().catch((err) => {
  process.stderr.write(`vshm start: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
