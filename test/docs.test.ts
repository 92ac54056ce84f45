/**
 * The documentation machinery stays wired up without running anything heavy: the TypeDoc
 * configuration names packages and entry files that exist, covers every published package,
 * allows no hidden public types and fails on a warning, `npm run docs` exists and its output is not tracked, and
 * the README links every document.
 */
import { expect } from 'chai';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const json = (p: string): any => JSON.parse(readFileSync(join(repo, p), 'utf8'));

describe('docs: TypeDoc configuration and links', () => {
  const cfg = json('typedoc.json');
  const entryFiles: string[] = cfg.packageOptions.entryPoints;
  /** The package directories TypeDoc's `entryPoints` name: plain paths, or `dir/*` globs. */
  const packages: string[] = (cfg.entryPoints as string[]).flatMap((e) =>
    e.endsWith('/*')
      ? readdirSync(join(repo, e.slice(0, -2)), { withFileTypes: true })
          .filter((d) => d.isDirectory())
          .map((d) => `${e.slice(0, -2)}/${d.name}`)
      : [e],
  );

  it('names package directories that exist, each with its entry file', () => {
    expect(cfg.entryPointStrategy).to.equal('packages');
    expect(packages).to.include('packages/transport');
    for (const p of packages) {
      expect(existsSync(join(repo, p, 'package.json')), `${p}/package.json`).to.equal(true);
      for (const e of entryFiles) {
        expect(existsSync(join(repo, p, e)), `${p}/${e}: every package TypeDoc documents needs this public entry`).to.equal(true);
      }
    }
  });

  it('covers every TypeScript workspace package', () => {
    const typescript = (json('package.json').workspaces as string[]).filter((w) => existsSync(join(repo, w, 'tsconfig.json')));
    expect([...packages].sort()).to.deep.equal([...typescript].sort());
  });

  it('no package hides a type its public API uses, and a TypeDoc warning fails `npm run docs`', () => {
    expect(cfg.treatWarningsAsErrors).to.equal(true);
    expect(cfg.validation.notExported).to.equal(true);
    expect(cfg.intentionallyNotExported ?? []).to.deep.equal([]);
    for (const p of packages) {
      const f = join(repo, p, 'typedoc.json');
      if (!existsSync(f)) continue;
      expect(JSON.parse(readFileSync(f, 'utf8')).intentionallyNotExported ?? [], `${p}/typedoc.json`).to.deep.equal([]);
    }
  });

  it('`npm run docs` builds into docs/api, which git ignores', () => {
    expect(json('package.json').scripts.docs).to.match(/\btypedoc\b/);
    expect(cfg.out).to.equal('docs/api');
    expect(readFileSync(join(repo, '.gitignore'), 'utf8').split('\n')).to.include('docs/api/');
    expect(existsSync(join(repo, cfg.readme)), cfg.readme).to.equal(true);
  });

  it('the README links every document', () => {
    const readme = readFileSync(join(repo, 'README.md'), 'utf8');
    for (const doc of [
      'docs/protocol.md',
      'docs/guest.md',
      'docs/architecture.md',
      'docs/decisions.md',
      'docs/conformance.md',
      'packages/transport/README.md',
    ]) {
      expect(readme, doc).to.include(`](${doc}`);
    }
    expect(readme).to.include('npm run docs');
  });
});
