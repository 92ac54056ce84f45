/**
 * End to end on a real terminal (tmux pty): the default attachment puts the TTY in raw mode
 * (keystrokes reach the back-end without Enter), Ctrl-] q quits with status 0 and the terminal
 * mode is restored.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FRONTEND_BIN, useScratch } from './e2e-procs.js';
import { until } from './e2e-system.js';

// A private tmux server on a socket in a private dir (-S): the test owns both, kills the server
// and removes the dir, never touching other sessions or leaving /tmp/tmux-UID behind.
let tmuxDir: string | null = null;
function tmux(...args: string[]): string {
  tmuxDir ??= mkdtempSync(join(tmpdir(), 'vshm-tmux-'));
  return execFileSync('tmux', ['-S', join(tmuxDir, 'tmux.sock'), ...args], { encoding: 'utf8' });
}

describe('console front-end e2e: terminal (tmux)', function () {
  let session: string | null = null;
  afterEach(() => {
    if (session !== null) {
      try {
        tmux('kill-server');
      } catch {
        /* already gone */
      }
      session = null;
    }
    if (tmuxDir !== null) rmSync(tmuxDir, { recursive: true, force: true });
    tmuxDir = null;
  });
  const s = useScratch(this); // cleans up after the hook above

  it('raw mode, Ctrl-] q quits with 0 and restores the terminal', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const status = s.path('status');
    const stty = s.path('stty');
    const script = s.path('run.sh');
    writeFileSync(
      script,
      `"${process.execPath}" "${FRONTEND_BIN}" -S "${s.server}"; st=$?; stty -a > "${stty}"; echo $st > "${status}"; sleep 600\n`,
    );
    session = `vshm-fe-${process.pid}-${Date.now()}`;
    tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '40', `/bin/sh ${script}`);
    // Raw mode: a keystroke without Enter reaches the back-end (cooked mode would hold it).
    // Keep typing until the front-end is up and relays it.
    await until(() => {
      if (be.stdout.includes('k')) return true;
      tmux('send-keys', '-t', session as string, '-l', 'k');
      return false;
    }, 'a keystroke at the back-end');
    expect(be.stdout.toString()).to.not.include('\n');
    tmux('send-keys', '-t', session, 'C-]');
    tmux('send-keys', '-t', session, '-l', 'q');
    await until(() => existsSync(status) && readFileSync(status, 'utf8').endsWith('\n'), 'front-end exit');
    expect(readFileSync(status, 'utf8').trim()).to.equal('0');
    expect(readFileSync(stty, 'utf8')).to.match(/(^|\s)icanon(\s|$)/);
    expect(readFileSync(stty, 'utf8')).to.match(/(^|\s)echo(\s|$)/);
  });
});
