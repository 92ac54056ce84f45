// Loaded by mocha (.mocharc.json "require"): every test run, and every daemon the tests start,
// publishes its vshm-inspect status files into a private temporary directory removed at exit,
// never into /tmp/vshm-UID, so the tests leave nothing in /tmp even when they SIGKILL a daemon.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

if (!process.env.VSHM_STATUS_DIR) {
  const dir = mkdtempSync(join(tmpdir(), 'vshm-status-test-'));
  process.env.VSHM_STATUS_DIR = join(dir, 'status');
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
}
