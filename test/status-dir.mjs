// Loaded by mocha (.mocharc.json "require"): every test run, and every daemon the tests start,
// publishes its vshm-inspect status files into a private temporary directory removed at exit,
// never into /tmp/vshm-UID, so the tests leave nothing in /tmp even when they SIGKILL a daemon.
// A run that is killed itself (a `| head`, a `timeout`) cannot remove its directory at exit: the
// name carries the run's pid, and the next run removes the directories of runs no longer alive.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PREFIX = 'vshm-status-test-';

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM'; // someone else's process: alive
  }
}

function sweepStale() {
  let names;
  try {
    names = readdirSync(tmpdir());
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^vshm-status-test-(\d+)-/.exec(name);
    if (m === null || alive(Number(m[1]))) continue;
    try {
      rmSync(join(tmpdir(), name), { recursive: true, force: true }); // not ours: EPERM, left
    } catch {
      // another user's, or removed meanwhile
    }
  }
}

if (!process.env.VSHM_STATUS_DIR) {
  sweepStale();
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}${process.pid}-`));
  process.env.VSHM_STATUS_DIR = join(dir, 'status');
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
}
