/**
 * The documentation machinery stays wired up without running anything heavy: the TypeDoc
 * configuration names packages and entry files that exist, covers every published package,
 * allows no hidden public types and fails on a warning, `npm run docs` exists and its output is not tracked, and
 * the README links every document. And what the prose says about the code, against the code's
 * text: every option a command's --help lists is named in its README and in its synopsis there,
 * no README names an option no command has, the public door's name count is the real one,
 * every repository path a README names exists, every relative link and #anchor resolves, every
 * VSHM_* name the docs use is in the code, conformance.md names exactly the conformance files,
 * guest.md's queue-size table is the code's, and the tests have the one `until()` that
 * architecture.md promises.
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

// ------------------------------------------------------------------------------------------
// Claims the prose makes about the code, checked against the code's own text (no process is
// started, so this file stays in `npm run test:unit`).
// ------------------------------------------------------------------------------------------

/** The string constant `name` in a source text (a template or quoted literal), as written: `${…}` stays as is. */
export function stringConstant(source: string, name: string): string {
  const start = new RegExp(`\\bconst ${name} = ([\`'"])`).exec(source);
  if (start === null) throw new Error(`no string constant ${name}`);
  const quote = start[1]!;
  let out = '';
  for (let i = start.index + start[0].length; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      out += source[++i] ?? '';
      continue;
    }
    if (c === quote) return out;
    out += c;
  }
  throw new Error(`unterminated string constant ${name}`);
}

/** One option of a usage text: its spellings (`-S`, `--server`). */
export interface UsageOption {
  short?: string;
  long?: string;
}

/** The options a usage text lists, one per line that starts with an option ("  -S, --server PATH"). */
export function usageOptions(usage: string): UsageOption[] {
  const out: UsageOption[] = [];
  for (const line of usage.split('\n')) {
    const m = /^ {1,4}(?:(-[A-Za-z])(?=[,\s]|$),?\s*)?(--[a-z][a-z0-9-]*)?/.exec(line);
    if (m === null || (m[1] === undefined && m[2] === undefined)) continue;
    out.push({ ...(m[1] !== undefined && { short: m[1] }), ...(m[2] !== undefined && { long: m[2] }) });
  }
  return out;
}

/** Whether `text` mentions the option spelling `flag` as a word of its own (`--port` is not `--port-exec`). */
export function mentions(text: string, flag: string): boolean {
  return new RegExp(`(?<![\\w-])${flag.replace(/[-]/g, '\\-')}(?![\\w-])`).test(text);
}

/**
 * The synopsis of `cli` in a README: a fenced-code line that starts with the command's name and
 * has an optional option (`[-`), with the indented lines that continue it. Empty when the README
 * has none.
 */
export function synopsis(markdown: string, cli: string): string {
  const lines = markdown.split('\n');
  let inCode = false;
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.startsWith('```')) {
      inCode = !inCode;
      continue;
    }
    if (!inCode || !lines[i]!.startsWith(`${cli} `) || !lines[i]!.includes('[-')) continue;
    const block = [lines[i]!];
    for (let j = i + 1; j < lines.length && /^\s+\S/.test(lines[j]!); j++) block.push(lines[j]!);
    return block.join('\n');
  }
  return '';
}

/** Every vshm command: where its usage text is, and the README that documents it. */
const CLIS = [
  { cli: 'vshm-server', source: 'packages/transport/src/server/cli-args.ts', constant: 'SERVER_USAGE', readme: 'README.md' },
  { cli: 'vshm-console-backend', source: 'packages/backend-console/src/cli-args.ts', constant: 'USAGE', readme: 'packages/backend-console/README.md' },
  { cli: 'vshm-console-frontend', source: 'packages/frontend-console/src/cli-args.ts', constant: 'USAGE', readme: 'packages/frontend-console/README.md' },
  { cli: 'vshm-blk-backend', source: 'packages/backend-blk/src/cli-args.ts', constant: 'USAGE', readme: 'packages/backend-blk/README.md' },
  { cli: 'vshm-blk-frontend', source: 'packages/frontend-blk/src/cli-args.ts', constant: 'USAGE', readme: 'packages/frontend-blk/README.md' },
  { cli: 'vshm-inspect', source: 'packages/inspect/src/cli.ts', constant: 'USAGE', readme: 'packages/inspect/README.md' },
  { cli: 'vshm-rng-backend', source: 'examples/virtio-rng/src/cli.ts', constant: 'BACKEND_USAGE', readme: 'examples/virtio-rng/README.md' },
  { cli: 'vshm-rng-frontend', source: 'examples/virtio-rng/src/cli.ts', constant: 'FRONTEND_USAGE', readme: 'examples/virtio-rng/README.md' },
];

const read = (p: string): string => readFileSync(join(repo, p), 'utf8');
const usageOf = (c: (typeof CLIS)[number]): string => stringConstant(read(c.source), c.constant);

describe('docs: what the prose says about the code', () => {
  it('reads every usage text and its options', () => {
    for (const c of CLIS) {
      const opts = usageOptions(usageOf(c));
      expect(opts.map((o) => o.long), c.cli).to.include('--help');
      expect(opts.length, c.cli).to.be.at.least(4);
    }
    expect(usageOptions('  -S, --server PATH  x\n  -F    y\n  --embedded  z\n  -- COMMAND\n      (--socket PATH: old)')).to.deep.equal([
      { short: '-S', long: '--server' },
      { short: '-F' },
      { long: '--embedded' },
    ]);
    expect(mentions('`--port-exec NAME`', '--port')).to.equal(false);
    for (const c of CLIS.filter((x) => ['vshm-console-backend', 'vshm-console-frontend', 'vshm-blk-frontend'].includes(x.cli))) {
      expect(synopsis(read(c.readme), c.cli), `${c.readme} has a synopsis`).to.match(/\[-/);
    }
    expect(synopsis('```\nvshm-inspect --pid 1 | jq \'.q[]\'\n```\n', 'vshm-inspect')).to.equal('');
    expect(mentions('--cache=writethrough', '--cache')).to.equal(true);
  });

  it("each command's README names every option of its --help (the long spelling where there is one)", () => {
    const missing: string[] = [];
    for (const c of CLIS) {
      const readme = read(c.readme);
      for (const o of usageOptions(usageOf(c))) {
        const flag = o.long ?? o.short!;
        if (!mentions(readme, flag)) missing.push(`${c.readme}: ${c.cli} ${flag}`);
      }
    }
    expect(missing, `options the --help lists and the README never names:\n${missing.join('\n')}\n`).to.deep.equal([]);
  });

  it("a README's synopsis of a command lists every option of its --help", () => {
    const missing: string[] = [];
    for (const c of CLIS) {
      const syn = synopsis(read(c.readme), c.cli);
      if (syn === '') continue;
      for (const o of usageOptions(usageOf(c))) {
        if (![o.long, o.short].some((f) => f !== undefined && mentions(syn, f))) missing.push(`${c.readme}: ${o.long ?? o.short}`);
      }
    }
    expect(missing, `options missing from a synopsis:\n${missing.join('\n')}\n`).to.deep.equal([]);
  });

  it('every --option the READMEs and docs/ (but for decisions.md) name exists in some usage text', () => {
    // tsc --build, node --import tsx, and the mocha options of conformance.md's command
    const known = new Set<string>(['--build', '--import', '--no-config', '--extension', '--timeout', '--exit']);
    for (const text of [...CLIS.map(usageOf), stringConstant(read('bench/run.mjs'), 'USAGE')]) {
      for (const m of text.matchAll(/--[a-z][a-z0-9-]*/g)) known.add(m[0]);
    }
    const docs = ['README.md', 'docs/guest.md', 'docs/protocol.md', 'docs/architecture.md', 'docs/conformance.md', ...readmesUnder('packages'), ...readmesUnder('examples')];
    const stale: string[] = [];
    for (const d of docs) {
      for (const m of read(d).matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)) if (!known.has(m[0])) stale.push(`${d}: ${m[0]}`);
    }
    expect([...new Set(stale)], `options no vshm command (nor the bench) has:\n${stale.join('\n')}\n`).to.deep.equal([]);
  });

  it("the count of the public door's runtime names is the real one", async () => {
    const count = Object.keys(await import('@vshm/transport')).length;
    for (const d of ['README.md', 'docs/architecture.md']) {
      const m = /(\d+) runtime names/.exec(read(d));
      expect(m, `${d} states how many runtime names @vshm/transport has`).to.not.equal(null);
      expect(Number(m![1]), d).to.equal(count);
    }
  });

  it('every repository path a README names exists (or is a build output git ignores)', () => {
    const tracked = workingTreePaths(); // not `git ls-files`: no process, and an unpacked tarball works too
    const ignored = readFileSync(join(repo, '.gitignore'), 'utf8').split('\n').filter((l) => l !== '' && !l.includes('*'));
    const tops = new Set([...tracked].filter((p) => !p.includes('/')));
    const packageDirs = new Set(readdirSync(join(repo, 'packages')));
    const bad: string[] = [];
    for (const d of ['README.md', 'bench/README.md', ...readmesUnder('packages'), ...readmesUnder('examples')]) {
      for (const m of read(d).matchAll(/`([\w.*/-]+\/[\w.*/-]*)`|\]\(([\w./-]+)(?:#[^)]*)?\)/g)) {
        const p = (m[1] ?? m[2]!).replace(/\/$/, '');
        const first = p.split('/')[0]!;
        if (!tops.has(first) && !packageDirs.has(first) && !first.startsWith('.')) continue; // not a repository path
        const candidates = [p, join(dirname(d), p)];
        const pattern = (c: string): RegExp =>
          new RegExp(`^${c.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/NN/g, '\\d\\d')}$`);
        const found = candidates.some((c) => tracked.has(c) || [...tracked].some((t) => pattern(c).test(t)));
        const built = candidates.some((c) => ignored.some((i) => c === i.replace(/\/$/, '') || c.startsWith(i.endsWith('/') ? i : `${i}/`)));
        if (!found && !built) bad.push(`${d}: ${p}`);
      }
    }
    expect(bad, `paths that name nothing in the repository:\n${bad.join('\n')}\n`).to.deep.equal([]);
  });
});

describe('docs: links, names and files the prose points at', () => {
  /** Every user-facing markdown file: the README, docs/, the bench's and every package's README. */
  const markdown = (): string[] => [
    'README.md',
    'bench/README.md',
    ...readdirSync(join(repo, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
    ...readmesUnder('packages'),
    ...readmesUnder('examples'),
  ];
  /** The same, minus docs/decisions.md: a record of what was decided, which may name what is gone. */
  const describing = (): string[] => markdown().filter((d) => d !== 'docs/decisions.md');

  it('finds headings the way GitHub anchors them', () => {
    expect([...headingAnchors('# A b\n```\n# not one\n```\n### 7.3 Back-end\n## `x.y` — z\n## A b\n')]).to.deep.equal([
      'a-b',
      '73-back-end',
      'xy--z',
      'a-b-1',
    ]);
    expect(markdownLinks('[a](b.md#c) `[d](e.md)` [f](https://x/y)\n```\n[g](h.md)\n```\n')).to.deep.equal(['b.md#c']);
  });

  it('every relative link resolves, and its #anchor names a heading of the target', () => {
    const bad: string[] = [];
    for (const d of markdown()) {
      for (const href of markdownLinks(read(d))) {
        const [path, anchor] = href.split('#') as [string, string | undefined];
        const target = path === '' ? d : join(dirname(d), path);
        if (!existsSync(join(repo, target))) {
          bad.push(`${d}: ${href} (no ${target})`);
        } else if (anchor !== undefined && target.endsWith('.md') && !headingAnchors(read(target)).has(anchor)) {
          bad.push(`${d}: ${href} (no heading #${anchor} in ${target})`);
        }
      }
    }
    expect(bad, `links that lead nowhere:\n${bad.join('\n')}\n`).to.deep.equal([]);
  });

  it('every VSHM_* environment variable and VSHM_ERR_* code the docs name is in the code', () => {
    const code = codeTexts().join('\n');
    const bad: string[] = [];
    for (const d of describing()) {
      for (const name of new Set(read(d).match(/\bVSHM_[A-Z0-9_]*[A-Z0-9]\b/g) ?? [])) {
        if (!new RegExp(`\\b${name}\\b`).test(code)) bad.push(`${d}: ${name}`);
      }
    }
    expect(bad, `names no source, test, script or bench file uses:\n${bad.join('\n')}\n`).to.deep.equal([]);
  });

  it('docs/conformance.md names every conformance test file, and only files that exist', () => {
    const files = readdirSync(join(repo, 'packages')).flatMap((p) => {
      const dir = join(repo, 'packages', p, 'test', 'conformance');
      return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.test.ts')) : [];
    });
    expect(files.length).to.be.at.least(42);
    const named = new Set(read('docs/conformance.md').match(/\b\d\d-[a-z0-9-]+\.test\.ts\b/g) ?? []);
    expect([...named].filter((f) => !files.includes(f)), 'named in docs/conformance.md, but no such file').to.deep.equal([]);
    expect(files.filter((f) => !named.has(f)), 'conformance files docs/conformance.md does not name').to.deep.equal([]);
  });
});

describe('docs/guest.md: the console queue sizes by region', () => {
  it("the table is what ConsoleDevice's queueSize 'auto' offers", async () => {
    const { autoQueueSize, linuxReceiveQueues, AUTO_QUEUE_MIN, AUTO_QUEUE_MIN_MULTIPORT } = await import('@vshm/backend-console');
    const section = read('docs/guest.md').split('**What the console offers by region size.**')[1]!;
    const rows = [...section.matchAll(/^\| (\d+)([KM])\b[^|]*\| *(\d+) *\| *(\d+) *\|$/gm)];
    expect(rows.length, 'rows of the table').to.be.at.least(6);
    for (const [row, n, unit, plain, onePort] of rows) {
      const rwSize = Number(n) * (unit === 'K' ? 1024 : 1024 * 1024) - 4096; // -o 0: all but the state table
      expect(autoQueueSize({ rwSize }, linuxReceiveQueues(false, 0), AUTO_QUEUE_MIN), row).to.equal(Number(plain));
      // One named port: max_nr_ports 2 (port 0 and it), so 3 receive queues.
      expect(autoQueueSize({ rwSize }, linuxReceiveQueues(true, 2), AUTO_QUEUE_MIN_MULTIPORT), row).to.equal(Number(onePort));
    }
  });
});

describe('docs/architecture.md: what it says about the tests', () => {
  it('"there is one wait, until()": no test file defines a polling wait of its own', () => {
    const shared = ['packages/transport/test/fixtures/until.ts', 'test/e2e-system.ts', 'addon/test/helpers.ts'];
    const own = [...workingTreePaths()]
      .filter((p) => /^(packages|examples)\/[^/]+\/test\/|^test\/|^addon\/test\//.test(p) && /\.(ts|mts|mjs)$/.test(p) && !shared.includes(p))
      // A top-level definition; a rig's own method of that name (a wait for bytes on a socket it
      // holds, like `untilStderr`) is not a second generic wait.
      .filter((p) => /^(?:export\s+)?(?:async\s+)?(?:function\s+until\s*\(|(?:const|let)\s+until\s*=)/m.test(readFileSync(join(repo, p), 'utf8')));
    expect(read('docs/architecture.md')).to.include('There is one wait, `until()`');
    for (const f of shared) expect(read(f), f).to.match(/export async function until\(/);
    expect(own, 'test files with an until() of their own instead of the shared one').to.deep.equal([]);
  });
});

/** The relative link targets of a markdown text, outside code spans and fenced blocks. */
function markdownLinks(markdown: string): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```$/gm, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((h) => !/^[a-z][a-z0-9+.-]*:/i.test(h));
}

/** The anchors GitHub gives the headings of a markdown text: lower case, punctuation dropped, spaces to dashes, repeats numbered. */
function headingAnchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let inCode = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) inCode = !inCode;
    const m = inCode ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (m === null) continue;
    const base = m[1]!.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(base);
    seen.set(base, (n ?? -1) + 1);
    out.add(n === undefined ? base : `${base}-${n + 1}`);
  }
  return out;
}

/** The text of every source, test, script and bench file (TypeScript, JavaScript, C, C++, shell) but this one. */
function codeTexts(): string[] {
  return [...workingTreePaths()]
    .filter((p) => (/\.(ts|mts|mjs|cjs|js|c|cc|h|sh)$/.test(p) || p === '.ci/run') && p !== 'test/docs.test.ts')
    .map((p) => readFileSync(join(repo, p), 'utf8'));
}

/** `DIR/*\/README.md` that exist. */
function readmesUnder(dir: string): string[] {
  return readdirSync(join(repo, dir))
    .map((d) => `${dir}/${d}/README.md`)
    .filter((p) => existsSync(join(repo, p)));
}

/** Every file and directory in the working tree, repository-relative (node_modules, dist and build outputs left out). */
function workingTreePaths(): Set<string> {
  const out = new Set<string>();
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(repo, rel), { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name === 'dist' || e.name === '.git' || e.name === 'build') continue;
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      out.add(p);
      if (e.isDirectory()) walk(p);
    }
  };
  walk('');
  return out;
}
