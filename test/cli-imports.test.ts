/**
 * No CLI loads `debug` at start unless DEBUG is set (stop 23, H4 item 2; the pattern of
 * packages/frontend-console/test/cli-imports.test.ts, issue 12 item 7). `debug` costs ~30 ms of
 * CPU at start-up through the ESM → CommonJS bridge, for output nobody sees without DEBUG: product
 * code logs through the transport's `createLogger`, which loads it only when DEBUG is set.
 *
 * Every bin/*.js of every workspace is covered — the module its `loadCli()` names, both as the
 * CommonJS bundle (dist/bundle/ENTRY.cjs, what a launcher runs) and as the tsc output
 * (dist/ENTRY, what it runs while the bundle is stale) — each imported in a fresh Node process,
 * and the CommonJS modules that process holds are read afterwards: no timing.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Every bin of every workspace: [bin name, tsc output module, bundle module]. */
function cliModules(): [string, string, string][] {
  const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
  const out: [string, string, string][] = [];
  for (const ws of root.workspaces) {
    const pkg = JSON.parse(readFileSync(join(ROOT, ws, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
    for (const [bin, file] of Object.entries(pkg.bin ?? {})) {
      const m = /\bloadCli\(__dirname, '([^']+)'\)/.exec(readFileSync(join(ROOT, ws, file), 'utf8'));
      if (!m) throw new Error(`${ws}/${file} does not load its CLI through loadCli()`);
      const entry = m[1]!;
      out.push([bin, join(ROOT, ws, 'dist', entry), join(ROOT, ws, 'dist', 'bundle', entry.replace(/\.js$/, '.cjs'))]);
    }
  }
  return out;
}

/** The CommonJS module paths a fresh `node` holds after importing module `cli` with `env`. */
function loadedModules(cli: string, env: NodeJS.ProcessEnv): string[] {
  const script = `import { createRequire } from 'node:module';
await import(${JSON.stringify(cli)});
process.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out) as string[];
}

const hasDebug = (mods: string[]): boolean => mods.some((m) => m.includes('/node_modules/debug/'));

describe('CLI module loading: debug only with DEBUG set', function () {
  this.timeout(120_000);
  const modules = cliModules();

  it('finds every CLI (seven bins)', () => {
    expect(modules.map(([bin]) => bin)).to.have.length.of.at.least(7);
  });

  for (const [bin, tsc, bundle] of modules) {
    for (const [form, cli] of [['bundle', bundle], ['tsc output', tsc]] as const) {
      it(`${bin} (${form}): without DEBUG, debug is not loaded; with DEBUG=vshm:* it is`, () => {
        expect(hasDebug(loadedModules(cli, { PATH: process.env.PATH, DEBUG: '' })), 'without DEBUG').to.equal(false);
        expect(hasDebug(loadedModules(cli, { PATH: process.env.PATH, DEBUG: 'vshm:*' })), 'with DEBUG').to.equal(true);
      });
    }
  }
});
