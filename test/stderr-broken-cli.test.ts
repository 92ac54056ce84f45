/**
 * A daemon whose stderr breaks after its ready line — `2>&1 | head -1` once head has its line,
 * or a closed terminal — loses its later lines but keeps working, and still stops in order. Before,
 * the first line after the break (EPIPE, unheard) ended it: a back-end vanished mid-session, a
 * server left its socket file.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { BACKEND_BIN, SERVER_BIN, useScratch } from './e2e-procs.js';
import { until } from './e2e-system.js';

/** Spawn `bin`; resolve once its stderr matched `ready`, then close our end of that pipe. */
async function startThenBreakStderr(bin: string, args: string[], ready: RegExp): Promise<{ child: ChildProcess; stdout: () => string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (ready.test(err)) resolve();
    });
    void exited.then((code) => reject(new Error(`${bin} exited (${String(code)}) before ${ready}: ${err}`)));
  });
  child.stderr!.destroy(); // what head does once it has its line
  return { child, stdout: () => out, exited };
}

describe('a daemon whose stderr breaks keeps working', function () {
  const s = useScratch(this);
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  it('vshm-server -v: peers come and go (lines it cannot write), then SIGTERM: exit 0, socket removed', async () => {
    const srv = await startThenBreakStderr(SERVER_BIN, ['-v', '-l', '64K', '-n', '2', '-V', '3', '-P', '0x8003', '-S', s.server], /listening on/);
    children.push(srv.child);
    // Each connection and departure is a verbose line onto the broken pipe.
    const be = await s.startBackend([]);
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo through-the-server']);
    await be.untilStdout(/through-the-server/);
    expect((await fe.exited).code).to.equal(0);
    expect(srv.child.exitCode, 'the server still runs').to.equal(null);
    srv.child.kill('SIGTERM');
    expect(await srv.exited).to.equal(0);
    expect(existsSync(s.server)).to.equal(false);
  });

  it('vshm-console-backend: serves a front-end (connected / left lines lost), then SIGTERM: exit 0', async () => {
    await s.startServer();
    const be = await startThenBreakStderr(BACKEND_BIN, ['-S', s.server], /serving the console/);
    children.push(be.child);
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo to-the-backend']);
    await until(() => be.stdout().includes('to-the-backend'), 'the bytes on the back-end');
    expect((await fe.exited).code).to.equal(0);
    // 'front-end left' was written (and lost) as the front-end reset the device: still there?
    const fe2 = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo once-more']);
    await until(() => be.stdout().includes('once-more'), 'a second front-end served');
    expect((await fe2.exited).code).to.equal(0);
    be.child.kill('SIGTERM');
    expect(await be.exited).to.equal(0);
  });
});
