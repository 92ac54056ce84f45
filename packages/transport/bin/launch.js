// How a vshm CLI launcher (every package's bin/*.js) starts its CLI: from the CommonJS bundle
// that scripts/bundle.mjs makes of the tsc output, compiled with the V8 code cache stored beside
// it, or from the tsc output itself.
//
// Why a bundle: a CLI's start loaded ~50 ESM modules of dist/ and of its workspace dependencies,
// and resolving, reading and compiling them one by one cost ~60–90 ms of CPU (issue 12 item 7).
// Why CommonJS: the launchers (bin/package.json makes them CommonJS) and the bundle then start
// without Node's ESM loader (~10 ms of CPU at every start). Why the code cache: Node 20 has no
// module compile cache; a `vm.Script` given the cache V8 made at build time skips most of the
// parsing and compiling. Why the freshness check: a `tsc --build` (or `tsc --watch`) alone
// rebuilds dist/ without the bundle step, and the launcher must then run the new code, not a
// bundle of the old.
//
// Every launcher requires a copy of this file that scripts/bundle.mjs writes beside its package's
// bundles (dist/bundle/launch.cjs): inside the package, so the require is one relative path that
// holds in every layout — resolving `@vshm/transport/...` from another package went through
// Node's package "exports" resolver, ~3.5 ms a start, against ~1 ms for this file. Without the
// copy (tsc output only) a launcher imports dist/ENTRY itself. This file is the one source:
// packages/transport/test/launch.test.ts tests it, test/cli-bundle.test.ts checks the copies,
// and scripts/bundle.mjs makes the code caches with its compileBundle(), so a cache is made for
// exactly the text a launcher compiles. Plain JavaScript, only Node built-ins: it runs before
// anything else is loaded.
'use strict';

module.exports = { cliModule, loadCli, compileBundle, bundleId };

/**
 * The file to run for the CLI module `entry` (a path inside the package's `dist/`, such as
 * `cli.js` or `server/cli.js`) of the launcher in `binDir` (its `__dirname`, the package's
 * `bin/`): the bundle `dist/bundle/<entry>` with `.cjs` for `.js` if it may stand in for
 * `dist/<entry>`, else `dist/<entry>`. Three `stat` calls. The bundle may stand in when both
 * files exist (a cleaned dist/ then fails as it always did, the import naming the missing file,
 * rather than running an orphaned bundle), and:
 * - where tsc builds (the project's `dist/.tsbuildinfo` exists), the bundle's mtime is at least
 *   that of `dist/<entry>` and of the build info (nanoseconds: two writes in the same millisecond
 *   still order). The build info counts because `tsc --build` rewrites it whenever the project
 *   or a project it references (the transport, the spec types) is rebuilt, even when
 *   `dist/<entry>` itself is not re-emitted;
 * - in a package installed from its tarball (no build info: the tarballs leave it out), always:
 *   the bundle was packed with the dist/ it was made from, and the mtimes say nothing there (npm
 *   sets them in extraction order).
 */
function cliModule(binDir, entry) {
  const { statSync } = require('node:fs');
  const { join } = require('node:path');
  const dist = join(binDir, '..', 'dist');
  const plain = join(dist, entry);
  const bundle = join(dist, 'bundle', entry.replace(/\.js$/, '.cjs'));
  const b = statSync(bundle, { bigint: true, throwIfNoEntry: false });
  const p = b && statSync(plain, { bigint: true, throwIfNoEntry: false });
  const i = p && statSync(join(dist, '.tsbuildinfo'), { bigint: true, throwIfNoEntry: false });
  return p && (!i || (p.mtimeNs <= b.mtimeNs && i.mtimeNs <= b.mtimeNs)) ? bundle : plain;
}

/**
 * Load the CLI module `entry` of the launcher in `binDir` (see cliModule()) and resolve with its
 * exports. The tsc output is an ES module: `import()`. The bundle is a CommonJS module, run as
 * Node's loader would (same wrapper, `require` from its own place, `__filename`), but compiled
 * here with its code cache `<bundle>.cache` when there is one made for this very bundle text: a
 * cache that is missing, made for another bundle, or that V8 rejects (another Node, other V8
 * flags) leaves a plain compile, silently. At exit the cache is replaced by one made by the run
 * when that holds more (refreshCacheAtExit). Under `--enable-source-maps` the bundle is required
 * instead (no cache), so that stack traces still lead to the TypeScript sources.
 */
function loadCli(binDir, entry) {
  const file = cliModule(binDir, entry);
  if (!file.endsWith('.cjs')) return import(require('node:url').pathToFileURL(file).href);
  // Node maps stack traces through the bundle's source map (to src/*.ts) only for what its own
  // loader compiled, never for a vm.Script: with --enable-source-maps, require() it, uncached.
  if (process.sourceMapsEnabled) return Promise.resolve(require(file));
  const { readFileSync } = require('node:fs');
  const source = readFileSync(file, 'utf8');
  let cachedData;
  const id = bundleId(source);
  if (id) {
    // The cache names the bundle it was made for: V8 itself compares only the source length.
    const head = `vshm-code-cache ${id}\n`;
    let data;
    try {
      data = readFileSync(`${file}.cache`);
    } catch {
      // No cache (never made, or removed): a plain compile.
    }
    if (data && data.length > head.length && data.toString('latin1', 0, head.length) === head) cachedData = data.subarray(head.length);
  }
  const module = { exports: {}, id: file, filename: file, loaded: false };
  const { dirname } = require('node:path');
  const script = compileBundle(file, source, cachedData);
  // Only where V8 took the cache or there was none, and with Node's default flags: a cache V8
  // rejects was made by another Node or under other V8 flags, and one made under this process's
  // flags would be rejected by every plain start after it.
  if (id && !script.cachedDataRejected && process.execArgv.length === 0) refreshCacheAtExit(script, file, id, cachedData?.length ?? 0);
  const fn = script.runInThisContext();
  fn.call(module.exports, module.exports, require('node:module').createRequire(file), module, file, dirname(file));
  module.loaded = true;
  return Promise.resolve(module.exports);
}

/**
 * At exit, replace the code cache of the bundle `file` (id `id`) with one made by this run when
 * that one is larger than the `loadedBytes` V8 took at start (0: there was none).
 *
 * Why: a cache made at build time holds only what compiling the bundle compiles, its top level;
 * V8 compiles every function lazily, at its first call, so each start still parsed and compiled
 * the whole start-up path (the §4.10 initialisation, the attachments): ~15 ms of a front-end's
 * start on the 2-vCPU VM (docs/decisions.md, "Start-up (stop 23)"). `createCachedData()`
 * after a run also holds every function compiled so far. Larger means the run compiled more
 * than the cache already had, so a short run (`--help`, a usage error) never replaces the cache
 * of a long one, and steady use stops writing. The check costs one `createCachedData()` (~4 ms
 * for the console front-end) at exit, never at start.
 *
 * Where: beside the bundle, the only place as trusted as the code itself (V8 runs cached bytecode
 * as it finds it, so a cache in a shared directory would let its writer run code in our
 * processes). A directory we may not write (a system-wide install) keeps the build's cache;
 * every failure is silent — a cache is an optimisation. Written to a temporary name and renamed,
 * so concurrent exits and readers never see half a file; the temporaries of writers killed before
 * their rename are removed first (removeStaleTemporaries). Not written when the bundle beside it is
 * no longer the one this run compiled (a build replaced it meanwhile: the build's cache stays).
 * A cache V8 rejected (another Node, other V8 flags) is left alone until the next build makes a
 * new one.
 */
function refreshCacheAtExit(script, file, id, loadedBytes) {
  process.once('exit', () => {
    const fs = require('node:fs');
    const tmp = `${file}.cache.${process.pid}.tmp`;
    try {
      const data = script.createCachedData();
      if (data.length <= loadedBytes) return;
      // A build may have replaced the bundle while we ran: its cache is the one to keep.
      if (!sameBundle(fs, file, id)) return;
      removeStaleTemporaries(fs, file);
      fs.writeFileSync(tmp, Buffer.concat([Buffer.from(`vshm-code-cache ${id}\n`, 'latin1'), data]));
      fs.renameSync(tmp, `${file}.cache`);
    } catch {
      try {
        fs.unlinkSync(tmp);
      } catch {
        // nothing was written
      }
    }
  });
}

/**
 * Remove the cache temporaries (`<bundle>.cache.<pid>.tmp`) beside the bundle `file` whose writer
 * is gone: a launcher killed between its write and its rename leaves one. A pid that exists
 * (`kill(pid, 0)` succeeds, or fails with EPERM: someone else's) may be a writer at work, so its
 * file stays. Called only when a run is about to write a cache, so a normal start or exit does no
 * directory scan; a leftover is still found, because a killed write left the cache it meant to
 * replace, and the next run that compiles as much writes — and cleans — again. Silent, and never
 * in the way of the write that follows.
 */
function removeStaleTemporaries(fs, file) {
  const { dirname, join } = require('node:path');
  const dir = dirname(file);
  let names;
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /\.cache\.([1-9][0-9]*)\.tmp$/.exec(name);
    if (m === null || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if (err.code !== 'ESRCH') continue;
      try {
        fs.unlinkSync(join(dir, name));
      } catch {
        // Removed meanwhile.
      }
    }
  }
}

/** Whether the bundle at `file` is still the one with id `id` (its first line; one short read). */
function sameBundle(fs, file, id) {
  const head = Buffer.alloc(64);
  const fd = fs.openSync(file, 'r');
  try {
    const n = fs.readSync(fd, head, 0, head.length, 0);
    return bundleId(head.toString('utf8', 0, n)) === id;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The `vm.Script` of the bundle `file` with text `source`, wrapped as Node wraps a CommonJS module
 * (on the first line, so line numbers stay those of the file), given V8's `cachedData` if any.
 */
function compileBundle(file, source, cachedData) {
  const { Script } = require('node:vm');
  return new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
}

/** The id scripts/bundle.mjs writes on a bundle's first line (a digest of its text), or undefined. */
function bundleId(source) {
  return /^\/\/ vshm-bundle ([0-9a-f]{16})\b/.exec(source.slice(0, 64))?.[1];
}
