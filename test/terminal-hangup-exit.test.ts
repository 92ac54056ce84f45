/**
 * A command whose terminal goes away (its window closed, its ssh session ended): the kernel hangs
 * the terminal up and sends SIGHUP, which the vshm commands take as a request to stop, and they
 * exit with status 0 — not by SIGABRT with a core dump. Node 20 restores the terminal settings of
 * fds 0–2 at exit and aborts when that fails with EIO on a hung-up terminal (nodejs/node#51519);
 * `exitAfterOutput` (the CLI kit) closes such descriptors first, which Node then leaves alone.
 */
import { expect } from 'chai';
import { PtyProc } from './e2e-pty.js';
import { BACKEND_BIN, SERVER_BIN, useScratch } from './e2e-procs.js';

describe('a command whose terminal hangs up (node-pty master closed)', function () {
  const s = useScratch(this);
  let p: PtyProc | null = null;
  afterEach(async () => {
    await p?.kill();
    p = null;
  });

  /** Start `args` on a pty, wait for `ready`, close the master; resolves with how it exited. */
  async function hangUp(name: string, args: string[], ready: RegExp): Promise<{ exitCode: number; signal?: number }> {
    p = new PtyProc(name, process.execPath, args, { cwd: s.path('.') });
    await p.untilOutput(ready);
    p.hangUp(); // SIGHUP to the command, EIO on its descriptors
    return p.exited;
  }

  it('vshm-server exits 0', async () => {
    const exit = await hangUp('vshm-server', [SERVER_BIN, '-v', '-S', s.server, '-l', '64K'], /listening on/);
    expect(exit).to.deep.include({ exitCode: 0 });
    expect(exit.signal ?? 0, 'killed by a signal (6: SIGABRT)').to.equal(0);
  });

  it('vshm-console-backend (terminal in raw mode) exits 0', async () => {
    await s.startServer();
    const exit = await hangUp('vshm-console-backend', [BACKEND_BIN, '-S', s.server], /serving the console on/);
    expect(exit).to.deep.include({ exitCode: 0 });
    expect(exit.signal ?? 0, 'killed by a signal (6: SIGABRT)').to.equal(0);
  });
});
