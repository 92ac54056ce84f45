#!/usr/bin/env node
// The packages as a consumer gets them: `npm pack` every workspace, check each tarball holds
// only what a consumer needs (no tests, no .tsbuildinfo, no sources of the TypeScript packages),
// install all tarballs into an empty project (the addon builds there), then run every CLI's
// --help and one console session (server, back-end, front-end running a command) from that
// project. Each CLI ships its bundle and the bundle's code cache (scripts/bundle.mjs) and,
// installed, runs them: the tarball holds dist/bundle/ENTRY (.cjs) and its .cache, the installed
// launcher picks the bundle and V8 takes the cache; esbuild is not installed. Prints
// one line per check and exits 1 on the first failure. Leaves nothing behind.
//
//   node scripts/pack-check.mjs        (after `npm run build`; CI runs it)
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const work = mkdtempSync(join(tmpdir(), 'vshm-pack-'));
const env = { ...process.env, npm_config_nodedir: process.env.npm_config_nodedir ?? '/usr', npm_config_audit: 'false', npm_config_fund: 'false' };

function ok(msg) {
  process.stdout.write(`pack-check: ok   ${msg}\n`);
}
function fail(msg) {
  process.stdout.write(`pack-check: FAIL ${msg}\n`);
  cleanup();
  process.exit(1);
}
function cleanup() {
  rmSync(work, { recursive: true, force: true });
}
const run = (cmd, args, cwd, timeout = 300_000) => execFileSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });

try {
  // 1. Pack every workspace.
  const tarballs = [];
  const bins = [];
  for (const ws of root.workspaces) {
    const pkg = JSON.parse(readFileSync(join(ROOT, ws, 'package.json'), 'utf8'));
    if (pkg.private) fail(`${pkg.name} is private: it cannot be published`);
    const out = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], join(ROOT, ws)));
    const { filename, files } = out[0];
    // The addon ships its C++ sources (it compiles at install); nobody ships tests or build state.
    const bad = files.map((f) => f.path).filter((p) => /(^|\/)test\/|\.test\.|\.tsbuildinfo$/.test(p));
    if (bad.length > 0) fail(`${pkg.name}: tarball holds files a consumer does not need: ${bad.slice(0, 5).join(', ')}`);
    tarballs.push(join(work, filename));
    for (const [b, file] of Object.entries(pkg.bin ?? {})) {
      const entry = /\bloadCli\(__dirname, '([^']+)'\)/.exec(readFileSync(join(ROOT, ws, file), 'utf8'))?.[1];
      if (!entry) fail(`${pkg.name}: ${file} does not load its CLI through loadCli()`);
      const bundle = `dist/bundle/${entry.replace(/\.js$/, '.cjs')}`;
      for (const need of [bundle, `${bundle}.cache`, 'bin/package.json']) {
        if (!files.some((f) => f.path === need)) fail(`${pkg.name}: tarball lacks ${need} (run npm run build:ts)`);
      }
      bins.push({ name: b, entry });
    }
    ok(`packed ${pkg.name} (${files.length} files)`);
  }
  // 2. An empty project installs them all (the addon compiles here).
  const proj = join(work, 'consumer');
  run('mkdir', ['-p', proj], work);
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
  run('npm', ['install', '--no-audit', '--no-fund', ...tarballs], proj, 600_000);
  ok(`installed ${tarballs.length} tarballs into an empty project`);
  if (existsSync(join(proj, 'node_modules', 'esbuild'))) fail('the consumer got esbuild installed: the bundles are built before packing');
  // 3. Every CLI runs its bundle and answers --help.
  const binDir = join(proj, 'node_modules', '.bin');
  // launch.js is the launchers' loader; each package carries a copy as dist/bundle/launch.cjs.
  const launch = await import(pathToFileURL(join(proj, 'node_modules/@vshm/transport/bin/launch.js')).href);
  for (const { name: b, entry } of bins) {
    const installedBin = dirname(realpathSync(join(binDir, b)));
    if (!existsSync(join(installedBin, '..', 'dist/bundle/launch.cjs'))) fail(`${b}: the installed package has no dist/bundle/launch.cjs: its launcher would not run the bundle`);
    const chosen = launch.cliModule(installedBin, entry);
    if (!chosen.endsWith(`/dist/bundle/${entry.replace(/\.js$/, '.cjs')}`)) fail(`${b}: the installed launcher would load ${chosen}, not its bundle`);
    const source = readFileSync(chosen, 'utf8');
    const head = `vshm-code-cache ${launch.bundleId(source)}\n`;
    const cache = readFileSync(`${chosen}.cache`);
    if (cache.toString('latin1', 0, head.length) !== head) fail(`${b}: the installed code cache is not made for the installed bundle`);
    if (launch.compileBundle(chosen, source, cache.subarray(head.length)).cachedDataRejected) fail(`${b}: V8 rejects the installed code cache`);
    const text = run(join(binDir, b), ['--help'], proj, 30_000);
    if (!/usage/i.test(text)) fail(`${b} --help printed no usage`);
    ok(`${b} --help (from its bundle, with its code cache)`);
  }
  // 4. A console session from the installed packages.
  const sock = join(work, 'vshm.sock');
  await session(binDir, sock);
  ok('console session: a front-end command reached the back-end through shared memory');
  cleanup();
  process.stdout.write('pack-check: all checks passed\n');
} catch (err) {
  fail(String(err?.stderr || err?.message || err).split('\n').slice(0, 6).join(' | '));
}

/** vshm-server + vshm-console-backend + `vshm-console-frontend -- sh -c 'echo …'`. */
function session(binDir, sock) {
  return new Promise((resolve, reject) => {
    const procs = [];
    const timer = setTimeout(() => finish(new Error('console session: no output within 60 s')), 60_000);
    const finish = (err) => {
      clearTimeout(timer);
      for (const p of procs) p.kill('SIGKILL');
      if (err) reject(err);
      else resolve();
    };
    const start = (name, args) => {
      const p = spawn(join(binDir, name), args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
      procs.push(p);
      p.stderrText = '';
      p.stderr.on('data', (d) => (p.stderrText += d));
      return p;
    };
    const server = start('vshm-server', ['-S', sock, '-l', '64K', '-n', '2', '-V', '3', '-P', '0x8003']);
    server.stderr.on('data', () => {
      if (!/listening on/.test(server.stderrText) || procs.length > 1) return;
      const be = start('vshm-console-backend', ['-S', sock]);
      let out = '';
      be.stdout.on('data', (d) => {
        out += d;
        if (out.includes('hello-from-the-tarballs')) finish();
      });
      be.stderr.on('data', () => {
        if (procs.length > 2 || !/as peer 0/.test(be.stderrText)) return;
        start('vshm-console-frontend', ['-S', sock, '--', 'sh', '-c', 'echo hello-from-the-tarballs; sleep 30']);
      });
    });
    for (const p of [server]) p.on('exit', (code) => code !== 0 && finish(new Error(`vshm-server exited ${code}: ${p.stderrText}`)));
  });
}
