/**
 * The CLI bundles (scripts/bundle.mjs, issue 12 item 7): every bin/*.js of every workspace loads
 * its CLI through `loadCli()`, a verbatim copy of packages/transport/bin/launch.js from its
 * marker line on (checked here), which runs the CommonJS bundle dist/bundle/ENTRY (`.cjs`) with
 * its V8 code cache while it is at least as new as dist/ENTRY and the project's
 * dist/.tsbuildinfo, else imports dist/ENTRY itself.
 * For each launcher: with the bundle fresh it runs the bundle, compiled with its cache, which V8
 * takes; after a newer tsc output (the entry, or the build info as `tsc --build` rewrites it when
 * a referenced project changed) it runs the tsc output; all print the same --help. Which module
 * ran, and with which cache, is read from a preload (fixtures/trace-cli-load.mjs). The mtimes
 * this test moves are put back before it ends.
 */
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TRACE = fileURLToPath(new URL('./fixtures/trace-cli-load.mjs', import.meta.url));
const LAUNCH = join(ROOT, 'packages/transport/bin/launch.js');

const MARKER = '// ---- launcher: from here to the end, every bin/*.js holds a verbatim copy ----\n';

/** The launcher's shared part: from the marker line to the end of `source`. */
function sharedText(source: string): string | undefined {
  const at = source.indexOf(MARKER);
  return at < 0 ? undefined : source.slice(at);
}

interface Launcher {
  bin: string;
  /** Absolute path of the launcher script. */
  script: string;
  /** The package's dist/ directory. */
  dist: string;
  /** The module the launcher loads, relative to dist/ ("cli.js", "server/cli.js"); its bundle is ENTRY with .cjs. */
  entry: string;
}

/** Every bin of every workspace, with the entry its loadCli() call names. */
function launchers(): Launcher[] {
  const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
  const out: Launcher[] = [];
  for (const ws of root.workspaces) {
    const pkg = JSON.parse(readFileSync(join(ROOT, ws, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
    for (const [bin, file] of Object.entries(pkg.bin ?? {})) {
      const script = join(ROOT, ws, file);
      const m = /\bloadCli\(__dirname, '([^']+)'\)/.exec(readFileSync(script, 'utf8'));
      if (!m) throw new Error(`${ws}/${file} does not load its CLI through loadCli()`);
      out.push({ bin, script, dist: join(ROOT, ws, 'dist'), entry: m[1]! });
    }
  }
  return out;
}

/** `--help` of the launcher: its stdout, the dist/ modules its process resolved, the scripts it compiled, the dist/ modules it required. */
function help(l: Launcher, nodeArgs: string[] = []): { stdout: string; imported: string[]; compiled: string[]; required: string[] } {
  const r = spawnSync(process.execPath, [...nodeArgs, '--import', TRACE, l.script, '--help'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, DEBUG: '' } });
  expect(r.status, `${l.bin} --help exit status; stderr: ${r.stderr}`).to.equal(0);
  const imported = r.stderr
    .split('\n')
    .filter((line) => line.startsWith('vshm-import '))
    .map((line) => line.slice('vshm-import '.length));
  const compiled = r.stderr
    .split('\n')
    .filter((line) => line.startsWith('vshm-compile '))
    .map((line) => line.slice('vshm-compile '.length));
  const required = r.stderr
    .split('\n')
    .filter((line) => line.startsWith('vshm-require '))
    .map((line) => line.slice('vshm-require '.length));
  return { stdout: r.stdout, imported, compiled, required };
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

  it('every launcher holds a verbatim copy of packages/transport/bin/launch.js from its marker line on', () => {
    const reference = sharedText(readFileSync(LAUNCH, 'utf8'));
    expect(reference, 'launch.js').to.be.a('string').and.match(/function loadCli\(/);
    for (const l of all) expect(sharedText(readFileSync(l.script, 'utf8')), l.bin).to.equal(reference);
  });

  it('every launcher is CommonJS (bin/package.json), so a start needs no ESM loader', () => {
    for (const l of all) {
      const scope = JSON.parse(readFileSync(join(l.script, '..', 'package.json'), 'utf8')) as { type?: string };
      expect(scope.type, `${l.bin}: bin/package.json "type"`).to.equal('commonjs');
    }
  });

  for (const l of all) {
    it(`${l.bin}: the bundle with its cache when fresh, dist/${l.entry} after a newer tsc output, the bundle required under --enable-source-maps; the same --help`, () => {
      const plainUrl = pathToFileURL(join(l.dist, l.entry)).href;
      const bundle = join(l.dist, 'bundle', l.entry.replace(/\.js$/, '.cjs'));

      const fresh = help(l);
      expect(fresh.compiled, 'fresh bundle: compiled with its cache, taken').to.deep.equal([`${bundle} cache=accepted`]);
      expect(fresh.imported, 'fresh bundle: no dist/ module imported').to.deep.equal([]);
      expect(fresh.required, 'fresh bundle: no dist/ module required').to.deep.equal([]);
      expect(fresh.stdout).to.match(/usage/i);

      const staleEntry = withNewer(join(l.dist, l.entry), bundle, () => help(l));
      expect(staleEntry.imported, 'entry newer than the bundle').to.include(plainUrl);
      expect(staleEntry.imported.some((u) => u.includes('/dist/bundle/')), 'no bundle module').to.equal(false);
      expect(staleEntry.compiled, 'no bundle compiled').to.deep.equal([]);
      expect(staleEntry.stdout).to.equal(fresh.stdout);

      const staleInfo = withNewer(join(l.dist, '.tsbuildinfo'), bundle, () => help(l));
      expect(staleInfo.imported, 'build info newer than the bundle').to.include(plainUrl);
      expect(staleInfo.compiled, 'no bundle compiled').to.deep.equal([]);

      // The times were put back: the bundle is fresh again.
      expect(help(l).compiled).to.deep.equal([`${bundle} cache=accepted`]);

      // Stack traces through the source maps: Node's own loader requires the bundle, uncached.
      const mapped = help(l, ['--enable-source-maps']);
      expect(mapped.required, '--enable-source-maps').to.deep.equal([bundle]);
      expect(mapped.compiled, '--enable-source-maps').to.deep.equal([]);
      expect(mapped.stdout).to.equal(fresh.stdout);
    });
  }

  it('scripts/bundle.mjs --check: the bundles on disk are byte for byte what a build makes now, each cache made for its bundle', () => {
    const out = execFileSync(process.execPath, [join(ROOT, 'scripts/bundle.mjs'), '--check'], { encoding: 'utf8' });
    expect(out).to.match(/up to date/);
  });
});
