/**
 * bin/launch.js: when a CLI launcher may run the bundle instead of the tsc output. On files in a
 * temporary directory with mtimes set explicitly (test/cli-bundle.test.ts runs the real
 * launchers).
 */
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cliModule } from '../bin/launch.js';

describe('CLI launcher: bundle or tsc output (bin/launch.js)', () => {
  let dir: string;
  let dist: string;
  const T = 1_700_000_000; // seconds; each file gets T + an offset

  /** Write `rel` under dist/ with mtime T + `offset` seconds. */
  function file(rel: string, offset: number): string {
    const p = join(dist, rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, '');
    utimesSync(p, T + offset, T + offset);
    return p;
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-launch-'));
    dist = join(dir, 'dist');
    mkdirSync(join(dir, 'bin'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const launcher = (): string => pathToFileURL(join(dir, 'bin', 'x.js')).href;

  it('takes the bundle when it is newer than the entry and the build info', () => {
    file('cli.js', 0);
    file('.tsbuildinfo', 0.001);
    file('bundle/cli.js', 0.002);
    expect(cliModule(launcher(), 'cli.js')).to.equal(pathToFileURL(join(dist, 'bundle/cli.js')).href);
  });

  it('without a build info (a package npm installed from its tarball) takes the bundle, whatever the mtimes', () => {
    file('cli.js', 1); // npm extracts in tarball order: mtimes tell nothing there
    file('bundle/cli.js', 0);
    expect(cliModule(launcher(), 'cli.js')).to.equal(pathToFileURL(join(dist, 'bundle/cli.js')).href);
  });

  it('takes the bundle when all three have the same mtime', () => {
    const b = file('bundle/server/cli.js', 0);
    file('server/cli.js', 0);
    file('.tsbuildinfo', 0);
    expect(cliModule(launcher(), 'server/cli.js')).to.equal(pathToFileURL(b).href);
  });

  it('takes the entry when it is newer than the bundle (tsc ran after the bundle step)', () => {
    file('bundle/cli.js', 0);
    file('cli.js', 0.001);
    file('.tsbuildinfo', -1);
    expect(cliModule(launcher(), 'cli.js')).to.equal(pathToFileURL(join(dist, 'cli.js')).href);
  });

  it('takes the entry when only the build info is newer (tsc rebuilt a referenced project)', () => {
    file('cli.js', 0);
    file('bundle/cli.js', 1);
    file('.tsbuildinfo', 2);
    expect(cliModule(launcher(), 'cli.js')).to.equal(pathToFileURL(join(dist, 'cli.js')).href);
  });

  it('takes the entry when there is no bundle, or no entry (a cleaned dist/ fails on the entry)', () => {
    file('cli.js', 0);
    expect(cliModule(launcher(), 'cli.js')).to.equal(pathToFileURL(join(dist, 'cli.js')).href);
    file('bundle/other.js', 1);
    expect(cliModule(launcher(), 'other.js')).to.equal(pathToFileURL(join(dist, 'other.js')).href);
  });

  it('orders mtimes finer than a millisecond', () => {
    const plain = file('cli.js', 0);
    file('.tsbuildinfo', 0);
    file('bundle/cli.js', 0);
    utimesSync(plain, T + 0.0001, T + 0.0001); // 100 µs later than the bundle
    expect(cliModule(launcher(), 'cli.js')).to.equal(pathToFileURL(plain).href);
  });
});
