/**
 * `npm start` (scripts/start.mjs) in a real terminal (tmux): a shell over shared memory answers
 * what is typed; quitting with `exit` or Ctrl-] q restores the terminal and leaves no processes,
 * sockets or temp files behind, and so does closing the terminal (SIGHUP); a window resize
 * reaches the shell's `stty size` (terminal → back-end SIZE → front-end → pty). (Runs the script directly: the `prestart` build is the test
 * runner's `pretest` build.)
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { START_SCRIPT, ROOT, useScratch, type Scratch } from './e2e-procs.js';
import { alive, descendants, processesMentioning, until, type Tmux } from './e2e-system.js';

/** Start the script in tmux; returns the pane, the server socket and the processes it runs. */
async function start(s: Scratch): Promise<{ t: Tmux; sock: string; pids: number[] }> {
  const t = s.tmux(`cd ${ROOT} && ${process.execPath} ${START_SCRIPT}; echo START-EXIT-$?; stty -a`);
  const pane = await t.untilPane(/over shared memory \((\S+)\) — quit with `exit` or Ctrl-\] then q/);
  const sock = /over shared memory \((\S+)\)/.exec(pane)![1];
  const panePid = Number(t.run('display-message', '-p', '-t', t.name, '#{pane_pid}').trim());
  // The script (with the server), back-end, front-end and the shell on the front-end's pty.
  let pids: number[] = [];
  await until(() => (pids = descendants(panePid)).length >= 4 && processesMentioning(sock).length >= 2, 'all processes up');
  return { t, sock, pids };
}

function probe(): { cmd: string; answer: RegExp } {
  const a = 1000 + Math.floor(Math.random() * 9000);
  const b = 1000 + Math.floor(Math.random() * 9000);
  return { cmd: `echo hello-$((${a}+${b})) marker`, answer: new RegExp(`hello-${a + b} marker`) };
}

async function expectClean(t: Tmux, sock: string, pids: number[]): Promise<void> {
  const pane = await t.untilPane(/START-EXIT-\d+[\s\S]*icanon/);
  expect(pane).to.match(/START-EXIT-0/);
  expect(pane).to.match(/(^|\s)icanon(\s|$)/m); // cooked mode again
  expect(pane).to.match(/(^|\s)echo(\s|$)/m);
  expect(existsSync(sock)).to.equal(false);
  expect(existsSync(dirname(sock))).to.equal(false);
  expect(processesMentioning(sock)).to.deep.equal([]);
  expect(pids.filter(alive)).to.deep.equal([]);
}

describe('npm start (scripts/start.mjs)', function () {
  const s = useScratch(this);

  it('runs a shell that answers, and `exit` leaves nothing behind', async () => {
    const { t, sock, pids } = await start(s);
    const p = probe();
    t.type(p.cmd);
    await t.untilPane(p.answer);
    t.type('exit');
    await expectClean(t, sock, pids);
  });

  it('quits with Ctrl-] q, leaving nothing behind', async () => {
    const { t, sock, pids } = await start(s);
    const p = probe();
    t.type(p.cmd);
    await t.untilPane(p.answer);
    t.send('C-]');
    t.send('q');
    await expectClean(t, sock, pids);
  });

  it('closing the terminal (SIGHUP) leaves nothing behind', async () => {
    const { t, sock, pids } = await start(s);
    const p = probe();
    t.type(p.cmd);
    await t.untilPane(p.answer);
    // kill-server closes the pane's pty: the kernel hangs up its session (SIGHUP).
    t.kill();
    expect(existsSync(dirname(t.socket)), 'the private tmux dir removed').to.equal(false);
    await until(() => !existsSync(dirname(sock)), 'the socket dir removed');
    await until(() => processesMentioning(sock).length === 0 && pids.filter(alive).length === 0, 'every process gone');
  });

  it('cleans up even when its own stderr is broken (a write error does not end it early)', async () => {
    // Its stderr is a pipe nobody reads: every line it writes fails with EPIPE. Before the fix the
    // first one ended it with an unheard 'error', server socket and temp dir left behind — as a
    // closed terminal (EIO) did when a child's line was forwarded before the SIGHUP handler ran.
    const child = spawn(process.execPath, [START_SCRIPT], { cwd: ROOT, env: { ...process.env, TMPDIR: s.dir }, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stderr.destroy();
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let running = true;
    void exited.then(() => (running = false));
    try {
      let sock = '';
      await until(() => {
        if (!running) throw new Error('npm start ended before its children were up');
        const d = readdirSync(s.dir).find((e) => e.startsWith('vshm-start-'));
        if (d === undefined || !existsSync(join(s.dir, d, 'ivshmem.sock'))) return false;
        sock = join(s.dir, d, 'ivshmem.sock');
        return processesMentioning(sock).length >= 2; // back-end and front-end
      }, 'the server socket, back-end and front-end');
      const pids = processesMentioning(sock);
      child.kill('SIGTERM');
      expect(await exited).to.equal(0);
      expect(existsSync(dirname(sock)), 'the socket dir removed').to.equal(false);
      await until(() => pids.filter(alive).length === 0, 'every process gone');
    } finally {
      if (running) child.kill('SIGKILL');
    }
  });

  it('a window resize reaches the shell (stty size)', async () => {
    const { t } = await start(s);
    t.type('stty size');
    await t.untilPane(/^40 120$/m);
    t.run('resize-window', '-t', t.name, '-x', '100', '-y', '30');
    // Keep asking until the new size went terminal → back-end → front-end → pty.
    await until(() => {
      if (/^30 100$/m.test(t.capture())) return true;
      t.type('stty size');
      return false;
    }, 'the new size in the shell');
  });
});
