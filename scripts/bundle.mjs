#!/usr/bin/env node
// One CommonJS bundle per CLI, made from the tsc output, and its V8 code cache (issue 12 item 7:
// start-up time). A CLI's start loaded ~50 modules of dist/ and of its workspace dependencies one
// by one; the bundle is one file. CommonJS, so that a start needs no ESM loader (the launchers
// are CommonJS too); a module the CLI imports lazily (the console front-end's attachments) stays
// lazy inside it: its code runs, and its imports (node-pty) are required, only when it is
// imported. Each bundle gets the code cache V8 makes when compiling it (`<bundle>.cache`), so a
// launcher need not parse and compile it again (Node 20 has no module compile cache). Every
// package's bin/*.js launcher runs the bundle only while it is at least as new as the tsc output
// (cliModule() of packages/transport/bin/launch.js), so a `tsc --build` without this step runs the
// new code unbundled, never a stale bundle.
//
//   node scripts/bundle.mjs          after `tsc --build` (npm run build:ts does both)
//   node scripts/bundle.mjs --check  exit 1 unless the bundles on disk are what a build makes now
//                                    and each code cache is made for its bundle and taken by V8
//   node scripts/bundle.mjs --clean  remove every dist/bundle/
//
// Which modules: every `loadCli(__dirname, 'ENTRY')` of every bin/*.js of every workspace; a bin
// without one is an error, so no CLI is left unbundled by accident. `dist/ENTRY` becomes
// `dist/bundle/ENTRY` with `.cjs` for `.js`. What goes in: the package's dist/ and the
// TypeScript workspaces it imports (the transport, the spec types), and in place of @vshm/addon's
// ES module a CommonJS equivalent that requires the addon's `.node` from the installed package.
// What stays outside, required at run time from node_modules: everything else — the addon's
// `.node`, node-pty (native), `debug`. Each such package must be a declared dependency of the
// package whose bundle needs it (checked here): the bundle, not the transport, now requires it.
// A bundle must not keep a dynamic import() (a launcher runs it in a vm.Script, which cannot)
// nor draw an esbuild warning (an `import.meta` other than `.url`): both fail the build.
//
// The bundle's first line carries an id, a digest of its text; the cache file starts with a line
// naming that id, and a launcher uses a cache only for the bundle it names (V8 checks the source
// length only). The cache is made with launch.js's compileBundle(), the launcher's own compile.
// Output is deterministic for the bundles (the same dist/ gives the same bytes); V8's caches are
// not byte-stable between processes, so --check checks what they are made for and that V8 takes them.
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { builtinModules } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import launch from '../packages/transport/bin/launch.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LAUNCH = /\bloadCli\(__dirname, '([^']+)'\)/;
/** Stands in for the id on a bundle's first line until the digest of its text is known. */
const NO_ID = '0'.repeat(16);

/**
 * Requires that esbuild cannot see (a `createRequire(import.meta.url)(name)` call), by input
 * file: the bundle makes them from its own place, so they count as its imports too. An input
 * with a createRequire that is not listed here is an error.
 */
const HIDDEN_REQUIRES = { 'packages/transport/dist/log.js': ['debug'] };

const ADDON = '@vshm/addon';
/** esbuild's namespace of the CommonJS stand-in for @vshm/addon (addonPlugin()). */
const ADDON_NS = 'vshm-addon-cjs';

const mode = process.argv[2] ?? 'build';
if (!['build', '--check', '--clean'].includes(mode)) {
  process.stderr.write('usage: node scripts/bundle.mjs [--check | --clean]\n');
  process.exit(2);
}

const t0 = performance.now();
const workspaces = readJson(join(ROOT, 'package.json')).workspaces.map((dir) => ({ dir, pkg: readJson(join(ROOT, dir, 'package.json')) }));
// Inlined: the TypeScript workspaces (a tsconfig.json); the addon is native and stays outside.
const inline = new Set(workspaces.filter((w) => existsSync(join(ROOT, w.dir, 'tsconfig.json'))).map((w) => w.pkg.name));
const clis = workspaces.filter((w) => w.pkg.bin).map((w) => ({ ...w, entries: entriesOf(w) }));

if (mode === '--clean') {
  for (const w of clis) rmSync(join(ROOT, w.dir, 'dist/bundle'), { recursive: true, force: true });
  process.exit(0);
}

const errors = [];
const results = await Promise.all(clis.map((w) => bundle(w)));
if (mode === '--check') {
  for (const { w, files } of results) {
    const dir = join(ROOT, w.dir, 'dist/bundle');
    const onDisk = existsSync(dir) ? listFiles(dir) : [];
    const made = new Set(files.map((f) => f.path));
    for (const f of files) {
      if (!existsSync(f.path)) errors.push(`${relative(ROOT, f.path)}: missing`);
      else if (!readFileSync(f.path).equals(Buffer.from(f.contents))) errors.push(`${relative(ROOT, f.path)}: differs from a build of dist/ now`);
      else if (f.path.endsWith('.cjs')) checkCache(f.path);
    }
    for (const p of onDisk) if (!made.has(p) && !made.has(p.replace(/\.cache$/, ''))) errors.push(`${relative(ROOT, p)}: not made by a build now`);
  }
} else if (errors.length === 0) {
  for (const { w, files } of results) {
    // Rewritten every time, even when unchanged: the launcher compares mtimes with the tsc output.
    const dir = join(ROOT, w.dir, 'dist/bundle');
    rmSync(dir, { recursive: true, force: true });
    for (const f of files) {
      mkdirSync(dirname(f.path), { recursive: true });
      writeFileSync(f.path, f.contents);
    }
    // The caches last: one is only ever read beside the bundle it names.
    for (const f of files) if (f.path.endsWith('.cjs')) writeFileSync(`${f.path}.cache`, codeCache(f.path, Buffer.from(f.contents).toString('utf8')));
  }
}
if (errors.length > 0) {
  for (const e of errors) process.stderr.write(`bundle: ${e}\n`);
  process.exit(1);
}
const n = results.reduce((sum, r) => sum + r.w.entries.length, 0);
const what = mode === '--check' ? 'up to date' : 'written';
process.stdout.write(`bundle: ${n} CLI modules of ${clis.length} packages ${what}, with their code caches (${Math.round(performance.now() - t0)} ms)\n`);

/** The dist/ modules the package's launchers load through loadCli(), one each. */
function entriesOf(w) {
  const entries = new Set();
  for (const [name, file] of Object.entries(w.pkg.bin)) {
    const m = LAUNCH.exec(readFileSync(join(ROOT, w.dir, file), 'utf8'));
    if (!m) fail(`${w.dir}/${file} (bin ${name}) does not load its CLI through loadCli(__dirname, 'ENTRY')`);
    entries.add(m[1]);
  }
  return [...entries].sort();
}

/** Build the package's bundles in memory; check the imports they leave outside. */
async function bundle(w) {
  const dist = join(ROOT, w.dir, 'dist');
  for (const e of w.entries) if (!existsSync(join(dist, e))) fail(`${w.dir}/dist/${e} is missing: run \`tsc --build\` first`);
  const res = await build({
    absWorkingDir: ROOT, // paths in comments and source maps are repo-relative: the same in any checkout
    entryPoints: w.entries.map((e) => ({ in: join(dist, e), out: e.replace(/\.js$/, '') })),
    outdir: join(dist, 'bundle'),
    outExtension: { '.js': '.cjs' },
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    // The one `import.meta` the sources use: the module's own URL, for createRequire() and the
    // server's "run directly?" check. The bundle's own URL stands in (a module of the package).
    define: { 'import.meta.url': '__vshm_import_meta_url' },
    // Strict like the ES modules it is made of: the directive first (esbuild's own comes later).
    banner: {
      js: `// vshm-bundle ${NO_ID} generated by scripts/bundle.mjs from ${w.dir}/dist/ and the workspaces it imports: do not edit.\n"use strict";\nvar __vshm_import_meta_url = require("node:url").pathToFileURL(__filename).href;`,
    },
    sourcemap: 'linked', // chained to the tsc maps, so to src/*.ts (read with --enable-source-maps)
    sourcesContent: false,
    legalComments: 'none',
    metafile: true,
    write: false,
    logLevel: 'silent',
    plugins: [addonPlugin(w), outsidePlugin()],
  }).catch((err) => fail(`${w.dir}: ${err.message}`));
  for (const warning of res.warnings) errors.push(`${w.dir}: esbuild: ${warning.text}${warning.location ? ` (${warning.location.file}:${warning.location.line})` : ''}`);
  const deps = new Set(Object.keys(w.pkg.dependencies ?? {}));
  const needed = new Set();
  for (const [name, out] of Object.entries(res.metafile.outputs)) {
    for (const imp of out.imports) {
      if (imp.kind === 'dynamic-import') errors.push(`${name}: keeps import('${imp.path}'): a launcher runs the bundle in a vm.Script, where import() cannot run`);
      if (imp.external && !isBuiltin(imp.path)) needed.add(packageName(imp.path));
    }
  }
  for (const input of Object.keys(res.metafile.inputs)) {
    const hidden = HIDDEN_REQUIRES[input];
    if (hidden) for (const name of hidden) needed.add(name);
    else if (input.startsWith(ADDON_NS)) needed.add(ADDON);
    else if (/\bcreateRequire\(/.test(readFileSync(join(ROOT, input), 'utf8'))) {
      errors.push(`${input} calls createRequire(): list what it requires in HIDDEN_REQUIRES (scripts/bundle.mjs)`);
    }
  }
  for (const name of [...needed].sort()) {
    if (!deps.has(name)) errors.push(`${w.dir}: its bundle requires '${name}' at run time: add it to "dependencies" of ${w.pkg.name}`);
  }
  const files = res.outputFiles.map((f) => ({ path: f.path, contents: f.path.endsWith('.cjs') ? withId(f.text) : f.contents }));
  return { w, files: files.sort((a, b) => (a.path < b.path ? -1 : 1)) };
}

/** The bundle text with its id (the digest of the text with NO_ID in its place) on the first line. */
function withId(text) {
  const id = createHash('sha256').update(text).digest('hex').slice(0, NO_ID.length);
  const out = text.replace(`// vshm-bundle ${NO_ID} `, `// vshm-bundle ${id} `);
  if (launch.bundleId(out) !== id) fail('the bundle id did not land on the first line');
  return Buffer.from(out);
}

/** The code cache file for the bundle `file` with text `source`: a line naming the bundle's id, then V8's data. */
function codeCache(file, source) {
  const data = launch.compileBundle(file, source).createCachedData();
  return Buffer.concat([Buffer.from(`vshm-code-cache ${launch.bundleId(source)}\n`, 'latin1'), data]);
}

/** --check: the cache beside `file` names the bundle's id and V8 takes it. */
function checkCache(file) {
  const rel = relative(ROOT, `${file}.cache`);
  if (!existsSync(`${file}.cache`)) return errors.push(`${rel}: missing`);
  const source = readFileSync(file, 'utf8');
  const head = `vshm-code-cache ${launch.bundleId(source)}\n`;
  const data = readFileSync(`${file}.cache`);
  if (data.toString('latin1', 0, head.length) !== head) return errors.push(`${rel}: not made for the bundle beside it`);
  const script = launch.compileBundle(file, source, data.subarray(head.length));
  if (script.cachedDataRejected) errors.push(`${rel}: V8 rejects it (made by another Node?): run node scripts/bundle.mjs`);
}

/**
 * @vshm/addon is an ES module whose whole job is to require its `.node` from its own directory.
 * The bundle holds a CommonJS equivalent instead (an ES module cannot be required without the
 * ESM loader): it finds the installed addon package and requires the binding from there, with
 * the addon's own error when the binding is not built (keep in step with addon/index.js).
 */
function addonPlugin(w) {
  return {
    name: 'vshm-addon',
    setup(b) {
      b.onResolve({ filter: /^@vshm\/addon$/ }, () => ({ path: ADDON, namespace: ADDON_NS }));
      b.onLoad({ filter: /.*/, namespace: ADDON_NS }, () => ({
        resolveDir: join(ROOT, w.dir),
        loader: 'js',
        contents: `// @vshm/addon for a CommonJS bundle (scripts/bundle.mjs): the binding, required from the installed package.
const { existsSync } = require('node:fs');
const { dirname, join } = require('node:path');
// The package's directory: the first node_modules on Node's lookup path that holds it. Not
// require.resolve(): its package "exports" resolution loaded and ran Node's ESM resolver, ~4 ms
// of a front-end's start. It stays the fallback (and names the failure) when the walk finds nothing.
// (The name in a variable: it is resolved at run time, not by esbuild.)
const name = '${ADDON}';
function addonDir() {
  for (const dir of require.resolve.paths(name) ?? []) {
    const candidate = join(dir, name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
  }
  return dirname(require.resolve(name));
}
let binding;
try {
  binding = require(join(addonDir(), 'build/Release/vshm.node'));
} catch (err) {
  const e = new Error(\`@vshm/addon: native binding not built (\${err && err.message}); run "npm rebuild @vshm/addon"\`);
  e.code = 'VSHM_ERR_ADDON_MISSING';
  throw e;
}
export default binding;
`,
      }));
    },
  };
}

/** Bare imports of anything but the TypeScript workspaces stay imports (node_modules, at run time). */
function outsidePlugin() {
  return {
    name: 'vshm-outside',
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, (args) => {
        if (isBuiltin(args.path) || inline.has(packageName(args.path))) return undefined;
        return { path: args.path, external: true };
      });
    },
  };
}

function isBuiltin(spec) {
  return spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0]);
}

function packageName(spec) {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function listFiles(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath ?? d.path, d.name));
}

function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

function fail(msg) {
  process.stderr.write(`bundle: ${msg}\n`);
  process.exit(1);
}
