/**
 * `npm run test:unit`: the in-process suites only, for the edit-compile loop (`npm test` still
 * runs everything). A test file is left out when it, or a file it imports by a relative path
 * (transitively, test helpers and sources alike), starts processes: child_process, spawn, fork,
 * execFile or tmux. The list is computed, so moved or renamed tests need no edit here.
 */
'use strict';
const { readFileSync, readdirSync, existsSync } = require('node:fs');
const { dirname, join, normalize, relative } = require('node:path');

const base = require('./.mocharc.json');
const ROOT = __dirname;
const TEST_DIRS = ['addon/test', 'test', ...['packages', 'examples'].flatMap((top) =>
  readdirSync(join(ROOT, top)).map((d) => `${top}/${d}/test`))].filter((d) => existsSync(join(ROOT, d)));
const STARTS_PROCESSES = /\bchild_process\b|\bspawn(Sync)?\(|\bfork\(|\bexecFile(Sync)?\(|\btmux\b/;
const RELATIVE_IMPORT = /(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

function resolve(from, spec) {
  const p = normalize(join(dirname(from), spec));
  for (const c of [p, p.replace(/\.js$/, '.ts'), p.replace(/\.mjs$/, '.mts'), `${p}.ts`]) {
    if (existsSync(c) && !c.endsWith('/')) return c;
  }
  return null;
}

const memo = new Map();
function startsProcesses(file, stack = new Set()) {
  if (memo.has(file)) return memo.get(file);
  if (stack.has(file)) return false;
  stack.add(file);
  const text = readFileSync(file, 'utf8');
  let hit = STARTS_PROCESSES.test(text);
  for (const m of text.matchAll(RELATIVE_IMPORT)) {
    if (hit) break;
    const dep = resolve(file, m[1]);
    if (dep !== null) hit = startsProcesses(dep, stack);
  }
  stack.delete(file);
  memo.set(file, hit);
  return hit;
}

const spec = TEST_DIRS.flatMap((d) =>
  readdirSync(join(ROOT, d), { recursive: true })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => join(ROOT, d, f)))
  .filter((f) => !startsProcesses(f))
  .map((f) => relative(ROOT, f))
  .sort();

module.exports = { ...base, spec };
