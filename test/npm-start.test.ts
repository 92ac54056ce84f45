/**
 * `npm start` (scripts/start.mjs) in a real terminal (tmux): a shell over shared memory answers
 * what is typed; quitting with `exit` or Ctrl-] q restores the terminal and leaves no processes,
 * sockets or temp files behind, and so does closing the terminal (SIGHUP); a window resize
 * reaches the shell's `stty size` (terminal → back-end SIZE → front-end → pty). A child that dies
 * by a signal ends it with one line and exit 1; without a terminal on stdin or without the build
 * it refuses in one line. (Runs the script directly: the `prestart` build is the test runner's
 * `pretest` build.)
 */
import { expect } from 'chai';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
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

async function expectClean(t: Tmux, sock: string, pids: number[], exitCode = 0): Promise<string> {
  const pane = await t.untilPane(/START-EXIT-\d+[\s\S]*icanon/);
  expect(pane).to.match(new RegExp(`START-EXIT-${exitCode}\\b`));
  expect(pane).to.match(/(^|\s)icanon(\s|$)/m); // cooked mode again
  expect(pane).to.match(/(^|\s)echo(\s|$)/m);
  expect(existsSync(sock)).to.equal(false);
  expect(existsSync(dirname(sock))).to.equal(false);
  expect(processesMentioning(sock)).to.deep.equal([]);
  expect(pids.filter(alive)).to.deep.equal([]);
  return pane;
}

/** The pid of the one process on `sock` whose command line names `bin`. */
function pidOf(sock: string, bin: string): number {
  const pids = processesMentioning(sock).filter((p) => readFileSync(`/proc/${p}/cmdline`, 'latin1').includes(bin));
  expect(pids, `${bin} on ${sock}`).to.have.length(1);
  return pids[0];
}

/** Run the script with `stdin` as given (no terminal), in a scratch TMPDIR; its exit and stderr. */
async function runWithoutTerminal(s: Scratch, script: string, stdin: 'ignore' | 'pipe'): Promise<{ code: number | null; stderr: string }> {
  const p = s.spawn('start', script, [], { cwd: ROOT, env: { ...process.env, TMPDIR: s.dir }, stdio: [stdin, 'pipe', 'pipe'] });
  if (stdin === 'pipe') p.child.stdin!.end('echo typed-into-a-pipe\n');
  await until(() => !p.running, 'npm start to exit on its own');
  const { code } = await p.exited;
  expect(readdirSync(s.dir).filter((e) => e.startsWith('vshm-start-')), 'temp dirs left').to.deep.equal([]);
  return { code, stderr: p.stderr };
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
    // Its stderr is a pipe whose reader has gone (stdin and stdout stay the terminal): every line
    // it writes fails with EPIPE. Before the fix the first one ended it with an unheard 'error',
    // server socket and temp dir left behind — as a closed terminal (EIO) did when a child's line
    // was forwarded before the SIGHUP handler ran.
    const t = s.tmux(`cd ${ROOT} && TMPDIR=${s.dir} bash -c '${process.execPath} ${START_SCRIPT} 2>&1 >/dev/tty | true; echo START-EXIT-\${PIPESTATUS[0]}'`);
    const panePid = Number(t.run('display-message', '-p', '-t', t.name, '#{pane_pid}').trim());
    let sock = '';
    await until(() => {
      if (/START-EXIT-/.test(t.capture())) throw new Error('npm start ended before its children were up');
      const d = readdirSync(s.dir).find((e) => e.startsWith('vshm-start-'));
      if (d === undefined || !existsSync(join(s.dir, d, 'ivshmem.sock'))) return false;
      sock = join(s.dir, d, 'ivshmem.sock');
      return processesMentioning(sock).length >= 2; // back-end and front-end
    }, 'the server socket, back-end and front-end');
    const pids = processesMentioning(sock);
    const script = processesMentioning(START_SCRIPT).filter((p) => descendants(panePid).includes(p));
    expect(script).to.have.length(1);
    process.kill(script[0], 'SIGTERM');
    await t.untilPane(/START-EXIT-0\b/);
    expect(existsSync(dirname(sock)), 'the socket dir removed').to.equal(false);
    await until(() => pids.filter(alive).length === 0, 'every process gone');
  });

  it('a front-end that dies (SIGKILL) ends it with one line and a non-zero exit, terminal restored', async () => {
    const { t, sock, pids } = await start(s);
    const p = probe();
    t.type(p.cmd);
    await t.untilPane(p.answer);
    process.kill(pidOf(sock, 'vshm-console-frontend'), 'SIGKILL');
    const pane = await expectClean(t, sock, pids, 1);
    expect(pane).to.match(/vshm start: the front-end was killed \(SIGKILL\)/);
  });

  it('a back-end that dies (SIGKILL) ends it with one line and a non-zero exit, terminal restored', async () => {
    const { t, sock, pids } = await start(s);
    const p = probe();
    t.type(p.cmd);
    await t.untilPane(p.answer);
    process.kill(pidOf(sock, 'vshm-console-backend'), 'SIGKILL');
    const pane = await expectClean(t, sock, pids, 1);
    expect(pane).to.match(/vshm start: the back-end was killed \(SIGKILL\)/);
  });

  it("a back-end that dies (SIGKILL) leaves the user's own terminal settings, not stty's defaults", async () => {
    // The user's erase key is ^H (not the default ^?) and flow control is off (not the default).
    const t = s.tmux(`stty erase ^H -ixon; cd ${ROOT} && ${process.execPath} ${START_SCRIPT}; echo START-EXIT-$?; stty -a`);
    const pane = await t.untilPane(/over shared memory \((\S+)\) — quit with/);
    const sock = /over shared memory \((\S+)\)/.exec(pane)![1];
    await until(() => processesMentioning(sock).length >= 2, 'back-end and front-end up');
    const p = probe();
    t.type(p.cmd);
    await t.untilPane(p.answer);
    process.kill(pidOf(sock, 'vshm-console-backend'), 'SIGKILL');
    const after = await t.untilPane(/START-EXIT-\d+[\s\S]*icanon/);
    expect(after).to.match(/START-EXIT-1\b/);
    expect(after).to.match(/(^|\s)icanon(\s|$)/m);
    expect(after).to.match(/erase = \^H;/);
    expect(after).to.match(/(^|\s)-ixon(\s|$)/m);
  });

  it('without a terminal on stdin (< /dev/null, a pipe) it refuses in one line, exit 1, leaving nothing', async () => {
    // Before the fix it started, and then waited for ever: the console has no end of input.
    for (const stdin of ['ignore', 'pipe'] as const) {
      const r = await runWithoutTerminal(s, START_SCRIPT, stdin);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.match(/^vshm start: stdin is not a terminal: [^\n]+\n$/);
    }
  });

  it('without the compiled TypeScript it says so in one line, exit 1', async () => {
    // A copy of the script in a tree whose packages were never built: @vshm/transport resolves to
    // a package.json whose dist/ does not exist, and there are no console CLIs' dist/ either.
    const root = join(s.dir, 'unbuilt');
    mkdirSync(join(root, 'scripts'), { recursive: true });
    copyFileSync(START_SCRIPT, join(root, 'scripts/start.mjs'));
    const pkg = join(root, 'node_modules/@vshm/transport');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: '@vshm/transport', type: 'module', exports: { '.': './dist/index.js' } }));
    const r = await runWithoutTerminal(s, join(root, 'scripts/start.mjs'), 'ignore');
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stderr).to.match(/^vshm start: the TypeScript is not built \(run `npm run build:ts`\): \S+\/dist\/cli\.js is missing\n$/);
    // The console CLIs built, @vshm/transport not: the failed import is the one line.
    for (const cli of ['backend-console', 'frontend-console']) {
      mkdirSync(join(root, 'packages', cli, 'dist'), { recursive: true });
      writeFileSync(join(root, 'packages', cli, 'dist/cli.js'), '');
    }
    const r2 = await runWithoutTerminal(s, join(root, 'scripts/start.mjs'), 'ignore');
    expect(r2.code, r2.stderr).to.equal(1);
    expect(r2.stderr).to.match(/^vshm start: the TypeScript is not built \(run `npm run build:ts`\): Cannot find module \S+transport\/dist\/index\.js[^\n]*\n$/);
  });

  it('a temp dir it cannot create (TMPDIR missing) is one line, exit 1', async () => {
    const tmp = join(s.dir, 'no-such-dir');
    const t = s.tmux(`cd ${ROOT} && TMPDIR=${tmp} ${process.execPath} ${START_SCRIPT}; echo START-EXIT-$?`);
    const pane = await t.untilPane(/START-EXIT-\d+/);
    expect(pane).to.match(/START-EXIT-1\b/);
    const lines = pane.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('START-EXIT-'));
    expect(lines.join('').replace(/\s+/g, ' ')).to.match(/^vshm start: cannot create a temp dir in \S*no-such-dir: ENOENT/);
    expect(pane).to.not.match(/\n\s+at /); // no stack trace
  });

  it('a signal while the embedded server starts (SIGINT, SIGTERM) stops there: no session line, no child, nothing left', async () => {
    // The server's start() is held at its addon import (a preload), the signal sent, then the
    // start let go. Before the fix the script went on once start() resolved: it printed the
    // session line, spawned the back-end and exited under it, leaving it orphaned on the terminal.
    const hook = join(ROOT, 'test/fixtures/hold-server-start.mjs');
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const hold = mkdtempSync(join(s.dir, 'hold-'));
      const t = s.tmux(`cd ${ROOT} && TMPDIR=${s.dir} HOLD_DIR=${hold} ${process.execPath} --import ${hook} ${START_SCRIPT}; echo START-EXIT-$?`);
      await until(() => existsSync(join(hold, 'held')), 'the server start held at its addon import');
      expect(readFileSync(join(hold, 'held'), 'utf8')).to.match(/\/transport\/dist\/server\/server\.js$/);
      const panePid = Number(t.run('display-message', '-p', '-t', t.name, '#{pane_pid}').trim());
      const script = processesMentioning(START_SCRIPT).filter((p) => descendants(panePid).includes(p));
      expect(script).to.have.length(1);
      process.kill(script[0], sig);
      await until(() => existsSync(join(hold, 'signalled')), `${sig} handled`);
      writeFileSync(join(hold, 'release'), '');
      const pane = await t.untilPane(/START-EXIT-\d+/);
      expect(pane).to.match(/START-EXIT-0\b/);
      expect(processesMentioning(`${s.dir}/vshm-start-`), 'a child started after the signal').to.deep.equal([]);
      expect(pane).to.not.match(/over shared memory/);
      expect(pane).to.not.match(/\n\s+at /); // no stack trace
      expect(readdirSync(s.dir).filter((e) => e.startsWith('vshm-start-')), 'temp dirs left').to.deep.equal([]);
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
