/**
 * Every "§N.M" in the repository points into docs/protocol.md: each section reference in a
 * tracked file (source comments, error texts, help texts, documents) must name a heading of
 * protocol.md, or an item of a numbered list under one ("§6.3.3" = item 3 of §6.3). A reference
 * labelled "VIRTIO 1.2 §…" names the OASIS specification and is not checked here; the label
 * carries over a list or range ("VIRTIO 1.2 §2.7.7–2.7.10", "VIRTIO 1.2 §5.2, §5.3").
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Section numbers protocol.md defines: its numbered headings and their numbered list items. */
export function definedSections(protocol: string): Set<string> {
  const out = new Set<string>();
  let current: string | null = null;
  for (const line of protocol.split('\n')) {
    const heading = /^#{2,6}\s+(\d+(?:\.\d+)*)\.?\s/.exec(line);
    if (heading !== null) {
      current = heading[1]!;
      out.add(current);
      continue;
    }
    if (/^#{1,6}\s/.test(line)) {
      current = null; // an unnumbered heading (Conventions, appendices) ends the section
      continue;
    }
    const item = /^(\d+)\.\s/.exec(line);
    if (item !== null && current !== null) out.add(`${current}.${item[1]}`);
  }
  return out;
}

const REF = '\\d+(?:\\.\\d+)*';
/** One run of references sharing a label: "§7.2, §7.3", "§6.1–§6.3", "VIRTIO 1.2 §2.7.7–2.7.10". */
const RUN = new RegExp(
  `(VIRTIO 1\\.2\\s+)?§(${REF})((?:\\s*[–-]\\s*§?${REF}|\\s*(?:,|and|or)\\s*§${REF})*)`,
  'g',
);

/** The unlabelled section numbers `text` cites; comment prefixes at line starts are ignored. */
export function citedSections(text: string): string[] {
  // Join wrapped comment lines so a label at the end of one line reaches the § on the next.
  const flat = text.replace(/\n[ \t]*(?:\*(?!\/)|\/\/+|#+|>)?[ \t]*/g, ' ');
  const out: string[] = [];
  for (const m of flat.matchAll(RUN)) {
    if (m[1] !== undefined) continue;
    out.push(m[2]!);
    for (const more of m[3]!.matchAll(new RegExp(REF, 'g'))) out.push(more[0]);
  }
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

describe('every § reference points into docs/protocol.md', () => {
  const protocol = readFileSync(join(repo, 'docs/protocol.md'), 'utf8');
  const defined = definedSections(protocol);

  it('reads the headings and numbered items of protocol.md', () => {
    for (const s of ['0', '1', '1.8', '4.10', '6.3', '6.3.1', '6.3.7', '8', '8.1']) {
      expect(defined.has(s), s).to.equal(true);
    }
    expect(defined.has('4.11')).to.equal(false);
    expect(defined.has('6.3.8')).to.equal(false);
  });

  it('finds references, skips labelled VIRTIO ones, follows lists and ranges', () => {
    const s = '§';
    expect(citedSections(`see ${s}4.10 and ${s}7.2, ${s}7.3.`)).to.deep.equal(['4.10', '7.2', '7.3']);
    expect(citedSections(`(${s}6.1–${s}6.3)`)).to.deep.equal(['6.1', '6.3']);
    expect(citedSections(`(VIRTIO 1.2 ${s}2.7.7–2.7.10, spec ${s}4.4)`)).to.deep.equal(['4.4']);
    expect(citedSections(` * (OASIS VIRTIO 1.2\n * ${s}2.7, spec ${s}6.1)`)).to.deep.equal(['6.1']);
    expect(citedSections(`unlabelled ${s}2.7.5.3`)).to.deep.equal(['2.7.5.3']);
  });

  it('no tracked file cites a section protocol.md lacks', function () {
    const files = trackedFiles();
    if (files === null) this.skip();
    const bad: string[] = [];
    for (const f of files!) {
      if (f.startsWith('docs/api/')) continue; // generated
      let text: string;
      try {
        text = readFileSync(join(repo, f), 'utf8');
      } catch {
        continue; // deleted in the working tree
      }
      if (text.includes('\0') || !text.includes('§')) continue;
      for (const s of citedSections(text)) if (!defined.has(s)) bad.push(`${f}: §${s}`);
    }
    expect(bad, `references to sections docs/protocol.md does not have (label OASIS ones "VIRTIO 1.2 §…"):\n${bad.join('\n')}\n`)
      .to.deep.equal([]);
  });
});
