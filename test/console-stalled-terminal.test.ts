/**
 * The console CLIs on a terminal that stops taking output (node-pty, its master side no longer
 * read: an ssh session whose network stalled, a frozen terminal emulator). Node writes to a
 * terminal synchronously unless told otherwise; a stalled one then held the whole process in
 * write(2): its input, its quit key, its other ports, `--drop-blocked-output`. Here the
 * terminal pushes back like a pipe: the drop option applies, the quit key works and the exit is
 * bounded; a terminal that reads again in time still gets every line.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { openConsole, type Console, type ConsolePort } from '@vshm/frontend-console';
import { BACKEND_BIN, FRONTEND_BIN, SERVER_BIN, until, useScratch } from './e2e-procs.js';
import { alive } from './e2e-system.js';
import { PtyProc } from './e2e-pty.js';

const NOBODY = 65534;
const canSwitchUid = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

/** How long the CLIs wait at exit for a terminal to take what is queued (exitAfterOutput's default). */
const EXIT_OUTPUT_WAIT_MS = 2000;
/** Far more than a paused terminal holds (the kernel's pty buffers, some 64 KiB). */
const FLOOD = 1 << 20;

/** Resolves once `port` took all of `data` and the device used every byte (fails after `timeoutMs`). */
async function delivered(port: ConsolePort, data: Buffer, timeoutMs = 30_000): Promise<void> {
  let written = false;
  port.write(data, () => (written = true));
  await until(() => written && port.pendingTransmitBytes === 0, 'every byte written to the console port used by the back-end', timeoutMs);
}

/**
 * Ctrl-] q typed into `p`'s stalled terminal (the script echoes `TAG-EXIT-$?`, then `stty -a`):
 * the CLI `pid` must be gone within the exit's bound (plus room for a loaded machine; a blocked
 * one never exits at all), and — once the terminal reads again — have exited 0 with the
 * terminal cooked again.
 */
async function quitWithinBound(p: PtyProc, pid: number, tag: string, who: string): Promise<void> {
  const t0 = Date.now();
  p.type('\x1dq');
  await p.until(() => !alive(pid), `${who} to exit after Ctrl-] q`, 30_000);
  const took = Date.now() - t0;
  p.resume();
  await p.untilOutput(new RegExp(`${tag}-EXIT-\\d+[\\s\\S]*icanon`));
  expect(p.output).to.match(new RegExp(`${tag}-EXIT-0`));
  expect(p.output).to.match(/(^|\s)icanon(\s|$)/m);
  expect(p.output).to.match(/(^|\s)echo(\s|$)/m);
  expect(took).to.be.below(EXIT_OUTPUT_WAIT_MS + 8000);
}

describe('console CLIs on a terminal that stops reading (node-pty)', function () {
  const ptys: PtyProc[] = [];
  let con: Console | null = null;
  afterEach(async () => {
    await con?.close();
    con = null;
    for (const p of ptys.splice(0)) await p.kill();
  });
  const s = useScratch(this); // cleans up after the hook above

  /**
   * `sh -c SCRIPT` on a new pty; the script's "$@" is `node BIN ARGS…`. A script that prints after
   * the command ends with `read`: node-pty may drop what a process printed just before it exited.
   */
  function onPty(name: string, script: string, bin: string, args: string[], env: NodeJS.ProcessEnv = {}): PtyProc {
    const p = new PtyProc(name, '/bin/sh', ['-c', script, 'sh', process.execPath, bin, ...args], { env });
    ptys.push(p);
    return p;
  }

  it('--drop-blocked-output applies to a terminal stdout (stderr to a file): the line comes while it is stalled, the front-end is not held, and it catches up', async () => {
    await s.startServer();
    const errFile = s.path('backend.err');
    const stderr = (): string => (existsSync(errFile) ? readFileSync(errFile, 'utf8') : '');
    const be = onPty('backend', 'exec "$@" 2>"$ERR_FILE"', BACKEND_BIN, ['-S', s.server, '--drop-blocked-output', '200'], { ERR_FILE: errFile });
    await be.until(() => /serving the console on .*quit with Ctrl-\] q/.test(stderr()), 'the serving line');
    con = await openConsole({ socketPath: s.server });
    await con.whenReady();
    const port = con.driver.port(0) as ConsolePort;
    be.pause();
    const sent = delivered(port, Buffer.alloc(FLOOD, 0x78));
    await be.until(() => /port 0: the host side has pushed back for 200 ms; discarding the front-end's output until it has taken what waits/.test(stderr()), `the dropping line; stderr: ${stderr()}`);
    await sent;
    be.resume();
    await be.until(() => /port 0: the host side has caught up; \d+ bytes of output were discarded/.test(stderr()), `the caught-up line; stderr: ${stderr()}`);
    expect(Number(/caught up; (\d+) bytes/.exec(stderr())![1])).to.be.greaterThan(0);
  });

  it('--drop-blocked-output with stderr on the same stalled terminal: its lines wait for the terminal, the process does not', async () => {
    await s.startServer();
    const be = onPty('backend', 'exec "$@"', BACKEND_BIN, ['-S', s.server, '--drop-blocked-output', '200']);
    await be.untilOutput(/serving the console on .*quit with Ctrl-\] q/);
    con = await openConsole({ socketPath: s.server });
    await con.whenReady();
    const port = con.driver.port(0) as ConsolePort;
    be.pause();
    // The dropping line is written while the terminal takes nothing: it must not hold the back-end.
    await delivered(port, Buffer.alloc(FLOOD, 0x78));
    be.resume();
    await be.untilOutput(/port 0: the host side has pushed back for 200 ms[^\n]*\n[\s\S]*port 0: the host side has caught up; \d+ bytes of output were discarded/);
  });

  it('vshm-console-backend without the drop option: Ctrl-] q still quits while its terminal is stalled, exit 0 within the bound, terminal restored', async () => {
    await s.startServer();
    const be = onPty('backend', '"$@"; echo BE-EXIT-$?; stty -a; read wait', BACKEND_BIN, ['-S', s.server]);
    await be.untilOutput(/serving the console on .*quit with Ctrl-\] q/);
    const pid = be.childRunning(BACKEND_BIN);
    con = await openConsole({ socketPath: s.server });
    await con.whenReady();
    const port = con.driver.port(0) as ConsolePort;
    be.pause();
    port.write(Buffer.alloc(FLOOD, 0x78));
    await be.until(() => be.full(), 'the terminal full of the front-end\'s output');
    await quitWithinBound(be, pid, 'BE', 'the back-end');
  });

  it('vshm-console-frontend: Ctrl-] q still quits while its terminal is stalled, exit 0 within the bound, terminal restored', async () => {
    await s.startServer();
    const back = await s.startBackend();
    const fe = onPty('frontend', '"$@"; echo FE-EXIT-$?; stty -a; read wait', FRONTEND_BIN, ['-S', s.server]);
    await back.untilStderr(/front-end connected/);
    const pid = fe.childRunning(FRONTEND_BIN);
    fe.pause();
    // The back-end's input is the front-end's terminal output.
    back.write(Buffer.alloc(FLOOD, 0x78));
    await fe.until(() => fe.full(), 'the terminal full of the back-end\'s console input');
    await quitWithinBound(fe, pid, 'FE', 'the front-end');
  });

  it('a terminal the back-end may not open anew stays synchronous: with --drop-blocked-output it warns that the option cannot apply', async function () {
    if (!canSwitchUid) this.skip();
    // As nobody on root's pty (mode 620): libuv cannot reopen it, so it cannot be made non-blocking.
    const be = onPty('backend', 'exec setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups "$@"', BACKEND_BIN, ['--embedded', '--drop-blocked-output', '200'], { NOBODY: String(NOBODY) });
    await be.untilOutput(/serving the console on/);
    expect(be.output).to.match(/vshm-console-backend: warning: --drop-blocked-output cannot apply to this terminal: cannot reopen \/dev\/pts\/\d+: EACCES \(permission denied\); a terminal that stalls blocks the whole back-end\r?\n/);
    be.pty.kill('SIGTERM');
    expect((await be.exited).exitCode).to.equal(0);
  });

  it('a terminal that reads again within the bound gets the lines written at exit', async () => {
    const server = s.spawn('server', SERVER_BIN, ['-v', '-l', '64K', '-n', '2', '-V', '3', '-P', '0x8003', '-S', s.server]);
    await server.untilStderr(/listening on/);
    const be = onPty('backend', '"$@"; echo BE-EXIT-$?; read wait', BACKEND_BIN, ['-S', s.server]);
    await be.untilOutput(/serving the console on .*quit with Ctrl-\] q/);
    await be.stall();
    // No front-end: the 5 typed bytes are never delivered, which the back-end says as it exits.
    be.type('hello\x1dq');
    // The back-end has left the server: what remains is its last lines and the exit.
    await server.untilStderr(/peer 0 gone/);
    be.resume();
    await be.untilOutput(/BE-EXIT-\d+/);
    expect(be.output).to.match(/vshm-console-backend: 5 bytes of console input were never delivered \(no front-end took them\)\r?\n[\s\S]*BE-EXIT-0/);
  });
});
