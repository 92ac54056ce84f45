/**
 * The example at the top of packages/transport/README.md cannot rot: the README's first `ts`
 * block must be byte-identical to fixtures/readme-example.ts (which `npm run typecheck:tests`
 * type-checks against the package's public entry), and this test runs that file in a child
 * process and checks what it prints and what it leaves behind.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');
const repo = join(pkg, '..', '..');

/** The body of the first fenced ```ts block of a markdown text, or null. */
function firstTsBlock(markdown: string): string | null {
  const m = /^```ts\n([\s\S]*?)^```$/m.exec(markdown);
  return m === null ? null : m[1]!;
}

describe('packages/transport/README.md example', function () {
  it('is the code of fixtures/readme-example.ts, verbatim', () => {
    const block = firstTsBlock(readFileSync(join(pkg, 'README.md'), 'utf8'));
    expect(block, 'a ```ts block in the README').to.not.equal(null);
    expect(block).to.equal(readFileSync(join(here, 'fixtures', 'readme-example.ts'), 'utf8'));
  });

  it('runs: a device and a driver echo one request, and everything is cleaned up', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'vshm-readme-'));
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'readme-example.ts')], {
        cwd: repo,
        env: { ...process.env, TMPDIR: scratch, DEBUG: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code, `stderr: ${err}`).to.equal(0);
      expect(out).to.equal('hello over shared memory\n');
      // The server removed its socket on stop(); only tsx's cache directory may remain.
      expect(readdirSync(scratch).filter((f) => !f.startsWith('tsx-'))).to.deep.equal([]);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
