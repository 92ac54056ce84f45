#!/usr/bin/env node
// One ESM bundle per CLI, made from the tsc output (issue 12 item 7: start-up time). A CLI's
// start loaded ~50 modules of dist/ and of its workspace dependencies one by one; the bundle is
// one file, plus one chunk per module the CLI imports lazily (the console front-end's
// attachments, so node-pty still loads only with a pty). Every package's bin/*.js launcher picks
// the bundle only while it is at least as new as the tsc output (cliModule() of
// packages/transport/bin/launch.js), so a `tsc --build` without this step runs the new code
// unbundled, never a stale bundle.
//
//   node scripts/bundle.mjs          after `tsc --build` (npm run build:ts does both)
//   node scripts/bundle.mjs --check  exit 1 unless the bundles on disk are what a build makes now
//   node scripts/bundle.mjs --clean  remove every dist/bundle/
//
// Which modules: every `cliModule(import.meta.url, 'ENTRY')` of every bin/*.js of every
// workspace; a bin without one is an error, so no CLI is left unbundled by accident. What goes
// in: the package's dist/ and the TypeScript workspaces it imports (the transport, the spec
// types). What stays outside, imported at run time from node_modules: everything else — the
// native addon (@vshm/addon and its .node), node-pty (native), `debug`. Each such import must be
// a declared dependency of the package whose bundle makes it (checked here): the bundle, not the
// transport, now makes it. Output is deterministic: the same dist/ gives the same bytes.
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LAUNCH = /\bcliModule\(import\.meta\.url, '([^']+)'\)/;

/**
 * Requires that esbuild cannot see (a `createRequire(import.meta.url)(name)` call), by input
 * file: the bundle makes them from its own place, so they count as its imports too. An input
 * with a createRequire that is not listed here is an error.
 */
const HIDDEN_REQUIRES = { 'packages/transport/dist/log.js': ['debug'] };

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
    }
    for (const p of onDisk) if (!made.has(p)) errors.push(`${relative(ROOT, p)}: not made by a build now`);
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
  }
}
if (errors.length > 0) {
  for (const e of errors) process.stderr.write(`bundle: ${e}\n`);
  process.exit(1);
}
const n = results.reduce((sum, r) => sum + r.w.entries.length, 0);
const what = mode === '--check' ? 'up to date' : 'written';
process.stdout.write(`bundle: ${n} CLI modules of ${clis.length} packages ${what} (${Math.round(performance.now() - t0)} ms)\n`);

/** The dist/ modules the package's launchers load through cliModule(), one each. */
function entriesOf(w) {
  const entries = new Set();
  for (const [name, file] of Object.entries(w.pkg.bin)) {
    const m = LAUNCH.exec(readFileSync(join(ROOT, w.dir, file), 'utf8'));
    if (!m) fail(`${w.dir}/${file} (bin ${name}) does not load its CLI through cliModule(import.meta.url, 'ENTRY')`);
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
    bundle: true,
    splitting: true, // a lazily imported module stays lazy: its own chunk, loaded by import()
    chunkNames: 'chunks/[name]-[hash]',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked', // chained to the tsc maps, so to src/*.ts (read with --enable-source-maps)
    sourcesContent: false,
    legalComments: 'none',
    banner: { js: `// Generated by scripts/bundle.mjs from ${w.dir}/dist/ and the workspaces it imports: do not edit.` },
    metafile: true,
    write: false,
    logLevel: 'silent',
    plugins: [outsidePlugin()],
  }).catch((err) => fail(`${w.dir}: ${err.message}`));
  const deps = new Set(Object.keys(w.pkg.dependencies ?? {}));
  const needed = new Set();
  for (const out of Object.values(res.metafile.outputs)) {
    for (const imp of out.imports) if (imp.external && !isBuiltin(imp.path)) needed.add(packageName(imp.path));
  }
  for (const input of Object.keys(res.metafile.inputs)) {
    const hidden = HIDDEN_REQUIRES[input];
    if (hidden) for (const name of hidden) needed.add(name);
    else if (/\bcreateRequire\(/.test(readFileSync(join(ROOT, input), 'utf8'))) {
      errors.push(`${input} calls createRequire(): list what it requires in HIDDEN_REQUIRES (scripts/bundle.mjs)`);
    }
  }
  for (const name of [...needed].sort()) {
    if (!deps.has(name)) errors.push(`${w.dir}: its bundle imports '${name}' at run time: add it to "dependencies" of ${w.pkg.name}`);
  }
  // Chunks first, the entry modules (what a launcher checks and imports) last: a build stopped
  // half-way leaves no entry that imports a chunk not written yet.
  const entries = new Set(w.entries.map((e) => join(dist, 'bundle', e)));
  const rank = (f) => (entries.has(f.path) ? 1 : 0);
  const files = res.outputFiles.map((f) => ({ path: f.path, contents: f.contents }));
  return { w, files: files.sort((a, b) => rank(a) - rank(b) || (a.path < b.path ? -1 : 1)) };
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
