/**
 * bin/launch.js: when a CLI launcher may run the bundle instead of the tsc output, and how it
 * runs a bundle with its code cache. On files in a temporary directory with mtimes set
 * explicitly (test/cli-bundle.test.ts runs the real launchers on the real bundles).
 */
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { bundleId, cliModule, compileBundle, loadCli } from '../bin/launch.js';

const LAUNCH = fileURLToPath(new URL('../bin/launch.js', import.meta.url));

describe('CLI launcher: bundle or tsc output (bin/launch.js)', () => {
  let dir: string;
  let dist: string;
  let bin: string;
  const T = 1_700_000_000; // seconds; each file gets T + an offset

  /** Write `rel` under dist/ with mtime T + `offset` seconds. */
  function file(rel: string, offset: number, text = ''): string {
    const p = join(dist, rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, text);
    utimesSync(p, T + offset, T + offset);
    return p;
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-launch-'));
    dist = join(dir, 'dist');
    bin = join(dir, 'bin');
    mkdirSync(bin);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('takes the bundle when it is newer than the entry and the build info', () => {
    file('cli.js', 0);
    file('.tsbuildinfo', 0.001);
    const b = file('bundle/cli.cjs', 0.002);
    expect(cliModule(bin, 'cli.js')).to.equal(b);
  });

  it('without a build info (a package npm installed from its tarball) takes the bundle, whatever the mtimes', () => {
    file('cli.js', 1); // npm extracts in tarball order: mtimes tell nothing there
    const b = file('bundle/cli.cjs', 0);
    expect(cliModule(bin, 'cli.js')).to.equal(b);
  });

  it('takes the bundle when all three have the same mtime', () => {
    const b = file('bundle/server/cli.cjs', 0);
    file('server/cli.js', 0);
    file('.tsbuildinfo', 0);
    expect(cliModule(bin, 'server/cli.js')).to.equal(b);
  });

  it('takes the entry when it is newer than the bundle (tsc ran after the bundle step)', () => {
    file('bundle/cli.cjs', 0);
    const plain = file('cli.js', 0.001);
    file('.tsbuildinfo', -1);
    expect(cliModule(bin, 'cli.js')).to.equal(plain);
  });

  it('takes the entry when only the build info is newer (tsc rebuilt a referenced project)', () => {
    const plain = file('cli.js', 0);
    file('bundle/cli.cjs', 1);
    file('.tsbuildinfo', 2);
    expect(cliModule(bin, 'cli.js')).to.equal(plain);
  });

  it('takes the entry when there is no bundle, or no entry (a cleaned dist/ fails on the entry)', () => {
    file('cli.js', 0);
    expect(cliModule(bin, 'cli.js')).to.equal(join(dist, 'cli.js'));
    file('bundle/other.cjs', 1);
    expect(cliModule(bin, 'other.js')).to.equal(join(dist, 'other.js'));
  });

  it('orders mtimes finer than a millisecond', () => {
    const plain = file('cli.js', 0);
    file('.tsbuildinfo', 0);
    file('bundle/cli.cjs', 0);
    utimesSync(plain, T + 0.0001, T + 0.0001); // 100 µs later than the bundle
    expect(cliModule(bin, 'cli.js')).to.equal(plain);
  });

  describe('loadCli(): the bundle with its code cache', () => {
    /**
     * Each vm.Script loadCli() makes while `fn` runs: was it given cached data, did V8 take it.
     * With source maps as `sourceMaps` says (tsx, which runs these tests, turns them on).
     */
    async function compiles<T>(fn: () => Promise<T>, sourceMaps = false): Promise<{ value: T; seen: { cached: boolean; rejected: boolean }[] }> {
      const seen: { cached: boolean; rejected: boolean }[] = [];
      const savedMaps = process.sourceMapsEnabled;
      process.setSourceMapsEnabled(sourceMaps);
      const Original = vm.Script;
      vm.Script = class extends Original {
        constructor(code: string, opts?: vm.ScriptOptions) {
          super(code, opts);
          seen.push({ cached: opts?.cachedData !== undefined, rejected: this.cachedDataRejected === true });
        }
      };
      try {
        return { value: await fn(), seen };
      } finally {
        vm.Script = Original;
        process.setSourceMapsEnabled(savedMaps);
      }
    }

    /** A CommonJS bundle whose module sees its own wrapper arguments and is strict. */
    function bundleText(id: string, marker: string): string {
      return [
        `// vshm-bundle ${id} test bundle`,
        '"use strict";',
        `exports.marker = ${JSON.stringify(marker)};`,
        'exports.filename = __filename;',
        'exports.resolvesFromItsPlace = require.resolve("./cli.cjs") === __filename;',
        'exports.strict = (function () { return this; })() === undefined;',
        'module.exports.same = module.exports === exports;',
        '',
      ].join('\n');
    }

    /** Write the bundle and a cache made for `cacheFor` (the text the cache was compiled from). */
    function writeBundle(text: string, cacheFor = text): string {
      file('cli.js', 0);
      const b = file('bundle/cli.cjs', 1, text);
      const data = compileBundle(b, cacheFor).createCachedData();
      writeFileSync(`${b}.cache`, Buffer.concat([Buffer.from(`vshm-code-cache ${bundleId(cacheFor)}\n`, 'latin1'), data]));
      return b;
    }

    it('runs the bundle as a strict CommonJS module, compiled with its cache, which V8 takes', async () => {
      file('cli.js', 0);
      const b = file('bundle/cli.cjs', 1, bundleText('0123456789abcdef', 'one'));
      // The cache made in another process, as a build makes it: within one, V8 would reuse what
      // it compiled there and never look at the cache.
      const make = `const l = require(${JSON.stringify(LAUNCH)}); const fs = require('node:fs'); const b = process.argv[1];
fs.writeFileSync(b + '.cache', Buffer.concat([Buffer.from('vshm-code-cache 0123456789abcdef\\n', 'latin1'), l.compileBundle(b, fs.readFileSync(b, 'utf8')).createCachedData()]));`;
      execFileSync(process.execPath, ['-e', make, b]);
      const { value, seen } = await compiles(() => loadCli(bin, 'cli.js'));
      expect(value).to.deep.equal({ marker: 'one', filename: b, resolvesFromItsPlace: true, strict: true, same: true });
      expect(seen).to.deep.equal([{ cached: true, rejected: false }]);
    });

    it('leaves a cache made for another bundle unused (V8 would compare only the length)', async () => {
      // Same length, other id and text: V8 alone would take the old code.
      writeBundle(bundleText('0123456789abcdef', 'two'), bundleText('fedcba9876543210', 'old'));
      const { value, seen } = await compiles(() => loadCli(bin, 'cli.js'));
      expect(value.marker).to.equal('two');
      expect(seen).to.deep.equal([{ cached: false, rejected: false }]);
    });

    it('compiles without a cache when it is missing, damaged, or the bundle has no id', async () => {
      const text = bundleText('0123456789abcdef', 'three');
      const b = writeBundle(text);
      rmSync(`${b}.cache`);
      let r = await compiles(() => loadCli(bin, 'cli.js'));
      expect(r.value.marker).to.equal('three');
      expect(r.seen).to.deep.equal([{ cached: false, rejected: false }]);

      // The right header, then bytes V8 cannot use: it rejects them and compiles. (Another text:
      // V8 keeps what this process compiled, and would not look at the cache for the same one.)
      writeFileSync(b, text.replace('three', 'four!'));
      writeFileSync(`${b}.cache`, Buffer.concat([Buffer.from(`vshm-code-cache 0123456789abcdef\n`, 'latin1'), Buffer.alloc(4096, 7)]));
      r = await compiles(() => loadCli(bin, 'cli.js'));
      expect(r.value.marker).to.equal('four!');
      expect(r.seen).to.deep.equal([{ cached: true, rejected: true }]);

      writeBundle(text.replace('// vshm-bundle 0123456789abcdef', '// no id here'));
      r = await compiles(() => loadCli(bin, 'cli.js'));
      expect(r.value.marker).to.equal('three');
      expect(r.seen).to.deep.equal([{ cached: false, rejected: false }]);
    });

    describe('the cache a run leaves behind (refreshCacheAtExit)', () => {
      /** A bundle whose `run()` calls functions V8 compiles only when they are first called. */
      const LAZY = [
        '// vshm-bundle 0123456789abcdef lazy test bundle',
        '"use strict";',
        ...Array.from({ length: 40 }, (_, i) => `function f${i}(a) { let s = 0; for (let k = 0; k < a; k++) s += (k * ${i + 1}) % 7; return s + ${i}; }`),
        `exports.run = () => [${Array.from({ length: 40 }, (_, i) => `f${i}(3)`).join(', ')}].reduce((x, y) => x + y, 0);`,
        '',
      ].join('\n');

      /** Run the launcher in a fresh Node (as a CLI start does, with `nodeFlags`): `call` the module's run() or not. */
      function start(call: boolean, nodeFlags: string[] = []): { stdout: string; stderr: string } {
        // A script file, as a bin is: `node -e` would put its code in process.execArgv.
        const script = join(dir, 'start.cjs');
        writeFileSync(script, `require(${JSON.stringify(LAUNCH)}).loadCli(process.argv[2], 'cli.js').then((m) => { ${call ? 'process.stdout.write(String(m.run()));' : ''} });`);
        const r = spawnSync(process.execPath, [...nodeFlags, script, bin], { encoding: 'utf8' });
        expect(r.status, r.stderr).to.equal(0);
        return { stdout: r.stdout, stderr: r.stderr };
      }

      /** The cache file: its header line and the size of V8's data after it. */
      function cacheOf(b: string): { head: string; bytes: number } {
        const data = readFileSync(`${b}.cache`);
        const nl = data.indexOf(10);
        return { head: data.toString('latin1', 0, nl), bytes: data.length - nl - 1 };
      }

      it('a run that compiled more than the cache held replaces it; V8 takes the new one; a shorter run leaves it', async () => {
        file('cli.js', 0);
        const b = file('bundle/cli.cjs', 1, LAZY);
        // The build's cache, made in another process: the top level only.
        const make = `const l = require(${JSON.stringify(LAUNCH)}); const fs = require('node:fs'); const b = process.argv[1];
fs.writeFileSync(b + '.cache', Buffer.concat([Buffer.from('vshm-code-cache 0123456789abcdef\\n', 'latin1'), l.compileBundle(b, fs.readFileSync(b, 'utf8')).createCachedData()]));`;
        execFileSync(process.execPath, ['-e', make, b]);
        const built = cacheOf(b);

        expect(start(true).stdout).to.equal(String(Array.from({ length: 40 }, (_, i) => ((i + 1) % 7) + ((2 * (i + 1)) % 7) + i).reduce((x, y) => x + y, 0)));
        const ran = cacheOf(b);
        expect(ran.head).to.equal('vshm-code-cache 0123456789abcdef');
        expect(ran.bytes, 'the run cache holds the functions run() compiled').to.be.greaterThan(built.bytes);
        const { value, seen } = await compiles(() => loadCli(bin, 'cli.js'));
        expect((value as { run(): number }).run()).to.be.a('number');
        expect(seen).to.deep.equal([{ cached: true, rejected: false }]);

        const before = readFileSync(`${b}.cache`);
        start(false); // compiles less than the cache holds: keeps it
        expect(readFileSync(`${b}.cache`).equals(before)).to.equal(true);
        expect(readdirSync(join(dist, 'bundle')).sort()).to.deep.equal(['cli.cjs', 'cli.cjs.cache']);
      });

      it('a bundle rebuilt while the CLI ran keeps the build\'s cache: the run does not write one for the text it replaced', () => {
        file('cli.js', 0);
        const b = file('bundle/cli.cjs', 1, LAZY);
        const next = LAZY.replace('0123456789abcdef', 'fedcba9876543210').replace('f0(3)', 'f0(4)');
        // The run, and meanwhile a build: the new bundle, then its cache (bundle.mjs's order).
        const script = join(dir, 'start.cjs');
        writeFileSync(script, `const l = require(${JSON.stringify(LAUNCH)}); const fs = require('node:fs');
l.loadCli(process.argv[2], 'cli.js').then((m) => {
  m.run();
  const b = process.argv[3];
  fs.writeFileSync(b, process.argv[4]);
  fs.writeFileSync(b + '.cache', Buffer.concat([Buffer.from('vshm-code-cache fedcba9876543210\\n', 'latin1'), l.compileBundle(b, process.argv[4]).createCachedData()]));
});`);
        const r = spawnSync(process.execPath, [script, bin, b, next], { encoding: 'utf8' });
        expect(r.status, r.stderr).to.equal(0);
        expect(cacheOf(b).head, 'the cache beside the new bundle names it').to.equal('vshm-code-cache fedcba9876543210');
        expect(readdirSync(join(dist, 'bundle')).sort()).to.deep.equal(['cli.cjs', 'cli.cjs.cache']);
      });

      it('a cache V8 rejects, and a start with Node flags, leave the cache as it is', () => {
        file('cli.js', 0);
        const b = file('bundle/cli.cjs', 1, LAZY);
        const damaged = Buffer.concat([Buffer.from('vshm-code-cache 0123456789abcdef\n', 'latin1'), Buffer.alloc(4096, 7)]);
        writeFileSync(`${b}.cache`, damaged);
        start(true);
        expect(readFileSync(`${b}.cache`).equals(damaged), 'rejected: kept').to.equal(true);
        rmSync(`${b}.cache`);
        start(true, ['--stack-size=2000']);
        expect(readdirSync(join(dist, 'bundle')), 'Node flags: none written').to.deep.equal(['cli.cjs']);
        start(true);
        expect(readdirSync(join(dist, 'bundle')).sort(), 'no cache, no flags: written').to.deep.equal(['cli.cjs', 'cli.cjs.cache']);
      });

      it('a temporary left by a launcher killed between its write and its rename goes at the next write; one of a live process stays', () => {
        file('cli.js', 0);
        const b = file('bundle/cli.cjs', 1, LAZY);
        // A pid that has been used and is gone (Linux hands pids out in increasing order: not reused here).
        const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
        expect(() => process.kill(gone, 0)).to.throw().with.property('code', 'ESRCH');
        const stale = [`cli.cjs.cache.${gone}.tmp`, `other.cjs.cache.${gone}.tmp`];
        const live = `cli.cjs.cache.${process.pid}.tmp`; // this test's own process: a writer that is alive
        for (const f of [...stale, live]) writeFileSync(join(dist, 'bundle', f), 'half a cache');
        writeFileSync(join(dist, 'bundle', 'notes.tmp'), 'not a cache temporary');
        const r = start(true); // compiles more than there is (no cache): writes one
        expect(r.stderr).to.equal('');
        expect(cacheOf(b).head).to.equal('vshm-code-cache 0123456789abcdef');
        expect(readdirSync(join(dist, 'bundle')).sort()).to.deep.equal(['cli.cjs', 'cli.cjs.cache', live, 'notes.tmp']);
      });

      it('a cache that cannot be written is skipped silently and leaves no temporary file', () => {
        file('cli.js', 0);
        const b = file('bundle/cli.cjs', 1, LAZY);
        mkdirSync(`${b}.cache`); // unreadable as a cache, and rename() cannot replace it
        const r = start(true);
        expect(r.stderr).to.equal('');
        expect(readdirSync(join(dist, 'bundle')).sort()).to.deep.equal(['cli.cjs', 'cli.cjs.cache']);
      });
    });

    it('with --enable-source-maps requires the bundle (Node maps traces only for its own loader)', async () => {
      file('cli.js', 0);
      const b = file('bundle/cli.cjs', 1, bundleText('0123456789abcdef', 'mapped'));
      const { value, seen } = await compiles(() => loadCli(bin, 'cli.js'), true);
      expect(value).to.deep.equal({ marker: 'mapped', filename: b, resolvesFromItsPlace: true, strict: true, same: true });
      expect(seen).to.deep.equal([]);
    });

    it('imports the tsc output (an ES module) when the bundle may not stand in', async () => {
      writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
      file('bundle/cli.cjs', 0, bundleText('0123456789abcdef', 'bundle'));
      file('cli.js', 1, 'export const marker = "tsc";\n');
      file('.tsbuildinfo', 1);
      const { value, seen } = await compiles(() => loadCli(bin, 'cli.js'));
      expect(value.marker).to.equal('tsc');
      expect(seen).to.deep.equal([]);
    });
  });
});
