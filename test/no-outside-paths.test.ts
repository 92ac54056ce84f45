/**
 * Nothing in the repository may point outside it: every tracked file is scanned for references
 * to the pre-repository protocol and style documents (which a clone does not have) and to
 * absolute paths of the machine the project was written on. The protocol is docs/protocol.md;
 * its § numbers are what the code cites.
 *
 * The patterns are assembled from pieces so that this file does not match itself.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');

const SPEC_FILE = ['vshm', 'protocol'].join('-') + '\\.md';
const FORBIDDEN: readonly { what: string; re: RegExp }[] = [
  { what: 'a path to the shared folder', re: new RegExp(['\\.\\.', 'shared'].join('/')) },
  { what: 'an absolute path of the authoring machine', re: new RegExp(['', 'work', ''].join('/')) },
  { what: 'the outside spec folder', re: new RegExp(['shared', 'spec'].join('/')) },
  { what: 'the outside spec file', re: new RegExp(SPEC_FILE) },
  { what: 'the outside style file', re: new RegExp(['style', 'md'].join('\\.')) },
  { what: 'a section of the outside style file', re: new RegExp('\\bstyle ' + '§') },
];

/** `file:line: what — text` for every forbidden reference in `text`. */
function violationsIn(file: string, text: string): string[] {
  const out: string[] = [];
  text.split('\n').forEach((line, i) => {
    for (const f of FORBIDDEN) {
      if (f.re.test(line)) out.push(`${file}:${i + 1}: ${f.what} — ${line.trim().slice(0, 120)}`);
    }
  });
  return out;
}

function trackedFiles(): string[] | null {
  try {
    return execFileSync('git', ['ls-files', '-z'], { cwd: repo, encoding: 'utf8', maxBuffer: 64 << 20 })
      .split('\0')
      .filter((f) => f !== '');
  } catch {
    return null; // not a git checkout (e.g. an unpacked tarball)
  }
}

describe('no tracked file refers to a path outside the repository', function () {
  it('the patterns catch what they are meant to catch', () => {
    const bad = [
      'see ../' + 'shared/' + 'spec/x',
      'at /' + 'work/main',
      'vshm-' + 'protocol.md §4',
      'per style' + '.md',
      '(style ' + '§3)',
    ];
    for (const line of bad) expect(violationsIn('x.md', line), line).to.have.length.greaterThan(0);
    expect(violationsIn('x.md', 'see docs/protocol.md §4.10 and style of code')).to.deep.equal([]);
  });

  it('every tracked file is clean', function () {
    const files = trackedFiles();
    if (files === null) this.skip();
    const found: string[] = [];
    for (const f of files!) {
      let text: string;
      try {
        text = readFileSync(join(repo, f), 'utf8');
      } catch {
        continue; // deleted in the working tree
      }
      if (text.includes('\0')) continue; // binary
      found.push(...violationsIn(f, text));
    }
    expect(found, `references outside the repository:\n${found.join('\n')}\n`).to.deep.equal([]);
  });
});
