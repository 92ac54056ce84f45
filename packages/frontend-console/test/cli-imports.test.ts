/**
 * What the CLI's module graph loads (issue 12 item 7: start to DRIVER_OK). `debug` is loaded
 * only when DEBUG is set, and `node-pty` only for `-- COMMAND` with a pty: in any other start
 * they were tens of ms of module loading for nothing. Checked in a fresh Node process on the
 * built output, by the CommonJS modules it holds after importing the CLI module — no timing —
 * for both modules the bin may load: the tsc output dist/cli.js and its CommonJS bundle
 * dist/bundle/cli.cjs (scripts/bundle.mjs). The CLI imports every attachment statically (so the
 * bundle can leave out what it does not use); the pty attachment requires node-pty at its first
 * spawn.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MODULES = {
  'dist/cli.js (tsc output)': fileURLToPath(new URL('../dist/cli.js', import.meta.url)),
  'dist/bundle/cli.cjs (bundle)': fileURLToPath(new URL('../dist/bundle/cli.cjs', import.meta.url)),
};

/** The CommonJS module paths a fresh `node` holds after importing the CLI module `cli` with `env`. */
function loadedModules(cli: string, env: NodeJS.ProcessEnv): string[] {
  const script = `import { createRequire } from 'node:module';
await import(${JSON.stringify(cli)});
process.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8' });
  return JSON.parse(out) as string[];
}

const has = (mods: string[], pkg: string): boolean => mods.some((m) => m.includes(`/node_modules/${pkg}/`));

for (const [name, cli] of Object.entries(MODULES)) {
  describe(`vshm-console-frontend module loading: ${name}`, () => {
    it('without DEBUG loads neither debug nor node-pty', () => {
      const mods = loadedModules(cli, { PATH: process.env.PATH, DEBUG: '' });
      expect(has(mods, 'debug'), 'debug').to.equal(false);
      expect(has(mods, 'node-pty'), 'node-pty').to.equal(false);
    });

    it('with DEBUG set loads debug (the logging still works), still not node-pty', () => {
      const mods = loadedModules(cli, { PATH: process.env.PATH, DEBUG: 'vshm:console-fe' });
      expect(has(mods, 'debug'), 'debug').to.equal(true);
      expect(has(mods, 'node-pty'), 'node-pty').to.equal(false);
    });
  });
}
