/**
 * bin/launch.js: when a CLI launcher may run the bundle instead of the tsc output, and how it
 * runs a bundle with its code cache. On files in a temporary directory with mtimes set
 * explicitly (test/cli-bundle.test.ts runs the real launchers on the real bundles).
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
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
