/**
 * The CLI bundles (scripts/bundle.mjs, issue 12 item 7): every bin/*.js of every workspace loads
 * its CLI through `cliModule()`, a verbatim copy of the one in packages/transport/bin/launch.js
 * (checked here), which picks dist/bundle/ENTRY while it is at least as new as dist/ENTRY and the
 * project's dist/.tsbuildinfo, else dist/ENTRY itself.
 * For each launcher: with the bundle fresh it runs the bundle; after a newer tsc output (the
 * entry, or the build info as `tsc --build` rewrites it when a referenced project changed) it
 * runs the tsc output; both print the same --help. Which module ran is read from a resolve hook
 * (fixtures/trace-dist-imports.mjs). The mtimes this test moves are put back before it ends.
 */
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TRACE = fileURLToPath(new URL('./fixtures/trace-dist-imports.mjs', import.meta.url));
const LAUNCH = join(ROOT, 'packages/transport/bin/launch.js');

/** The text of `function cliModule(…) {…}` in `source` (up to the first `}` alone on a line). */
function cliModuleText(source: string): string | undefined {
  return /^(?:export )?(function cliModule\(.*?\n\}\n)/ms.exec(source)?.[1];
}

interface Launcher {
  bin: string;
  /** Absolute path of the launcher script. */
  script: string;
  /** The package's dist/ directory. */
  dist: string;
  /** The module the launcher loads, relative to dist/ ("cli.js", "server/cli.js"). */
  entry: string;
}

/** Every bin of every workspace, with the entry its cliModule() call names. */
function launchers(): Launcher[] {
  const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
  const out: Launcher[] = [];
  for (const ws of root.workspaces) {
    const pkg = JSON.parse(readFileSync(join(ROOT, ws, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
    for (const [bin, file] of Object.entries(pkg.bin ?? {})) {
      const script = join(ROOT, ws, file);
      const m = /\bcliModule\(import\.meta\.url, '([^']+)'\)/.exec(readFileSync(script, 'utf8'));
      if (!m) throw new Error(`${ws}/${file} does not load its CLI through cliModule()`);
      out.push({ bin, script, dist: join(ROOT, ws, 'dist'), entry: m[1]! });
    }
  }
  return out;
}

/** `--help` of the launcher: its stdout and the dist/ modules its process resolved. */
function help(l: Launcher): { stdout: string; imported: string[] } {
  const r = spawnSync(process.execPath, ['--import', TRACE, l.script, '--help'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, DEBUG: '' } });
  expect(r.status, `${l.bin} --help exit status; stderr: ${r.stderr}`).to.equal(0);
  const imported = r.stderr
    .split('\n')
    .filter((line) => line.startsWith('vshm-import '))
    .map((line) => line.slice('vshm-import '.length));
  return { stdout: r.stdout, imported };
}

/** Run `fn` with `path`'s mtime set to one second after `after`'s, then restore `path`'s times. */
function withNewer<T>(path: string, after: string, fn: () => T): T {
  const saved = statSync(path);
  const later = statSync(after).mtimeMs / 1000 + 1;
  utimesSync(path, later, later);
  try {
    return fn();
  } finally {
    utimesSync(path, saved.atime, saved.mtime);
  }
}

describe('CLI bundles: each launcher runs its bundle only while it is fresh', function () {
  this.timeout(120_000);
  const all = launchers();

  it('covers every CLI: eight launchers in seven packages', () => {
    expect(all.map((l) => l.bin).sort()).to.deep.equal([
      'vshm-blk-backend',
      'vshm-blk-frontend',
      'vshm-console-backend',
      'vshm-console-frontend',
      'vshm-inspect',
      'vshm-rng-backend',
      'vshm-rng-frontend',
      'vshm-server',
    ]);
  });

  it('every launcher holds a verbatim copy of cliModule() from packages/transport/bin/launch.js', () => {
    const reference = cliModuleText(readFileSync(LAUNCH, 'utf8'));
    expect(reference, 'launch.js').to.be.a('string');
    for (const l of all) expect(cliModuleText(readFileSync(l.script, 'utf8')), l.bin).to.equal(reference);
  });

  for (const l of all) {
    it(`${l.bin}: the bundle when fresh, dist/${l.entry} after a newer tsc output; the same --help`, () => {
      const plainUrl = pathToFileURL(join(l.dist, l.entry)).href;
      const bundleUrl = pathToFileURL(join(l.dist, 'bundle', l.entry)).href;
      const bundle = join(l.dist, 'bundle', l.entry);

      const fresh = help(l);
      expect(fresh.imported, 'fresh bundle').to.include(bundleUrl).and.not.include(plainUrl);
      expect(fresh.stdout).to.match(/usage/i);

      const staleEntry = withNewer(join(l.dist, l.entry), bundle, () => help(l));
      expect(staleEntry.imported, 'entry newer than the bundle').to.include(plainUrl);
      expect(staleEntry.imported.some((u) => u.includes('/dist/bundle/')), 'no bundle module').to.equal(false);
      expect(staleEntry.stdout).to.equal(fresh.stdout);

      const staleInfo = withNewer(join(l.dist, '.tsbuildinfo'), bundle, () => help(l));
      expect(staleInfo.imported, 'build info newer than the bundle').to.include(plainUrl).and.not.include(bundleUrl);

      // The times were put back: the bundle is fresh again.
      expect(help(l).imported).to.include(bundleUrl);
    });
  }

  it('scripts/bundle.mjs --check: the bundles on disk are byte for byte what a build makes now', () => {
    const out = execFileSync(process.execPath, [join(ROOT, 'scripts/bundle.mjs'), '--check'], { encoding: 'utf8' });
    expect(out).to.match(/up to date/);
  });
});
