/**
 * `npm run fuzz` (scripts/fuzz.mjs): a short slice of every target in CI — the full 10^6-case run
 * is the same command without --cases. Also pins the runner's report and its argument errors.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../scripts/fuzz.mjs', import.meta.url));

function fuzz(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('npm run fuzz (scripts/fuzz.mjs)', () => {
  it('runs 1500 cases of each target (hostile device, hostile driver, queue operations) clean and reports the rate', async () => {
    const r = await fuzz(['--cases', '1500', '--workers', '2']);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    for (const t of ['device', 'driver', 'ops']) {
      expect(r.stdout).to.match(new RegExp(`^fuzz ${t}: 1500 cases \\(seeds 1…1500\\) in [\\d.]+ s, \\d+ cases/s, 0 failed$`, 'm'));
    }
  });

  it('a bad argument is one line and exit 2', async () => {
    const r = await fuzz(['--cases', 'many']);
    expect(r.code).to.equal(2);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/^fuzz: --cases needs an integer/);
  });
});
