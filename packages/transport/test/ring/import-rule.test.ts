/**
 * The ring engine's import rule (docs/architecture.md): files in src/ring/ import only each other,
 * Node built-ins, `virtio-spec-types` and the error family (src/errors.ts, which itself imports
 * nothing relative) — never ivshmem/, virtio/, server/, testing/ or the addon. Checked on the
 * source text, so a new file or a new import is caught without anyone updating a list.
 */
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');
const RING = path.join(SRC, 'ring');
const ERRORS = path.join(SRC, 'errors.ts');

/** Every module specifier of `text`: static imports/exports (also type-only and side-effect) and import(). */
export function importSpecifiers(text: string): string[] {
  const specs: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])([^'"]+)\1/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) specs.push(m[2]);
  return specs;
}

/** Why `spec`, imported by a file in `dir`, breaks the ring rule; null when it is allowed. */
export function ringImportViolation(dir: string, spec: string): string | null {
  if (spec.startsWith('node:') || spec === 'virtio-spec-types') return null;
  if (!spec.startsWith('.')) return `package '${spec}'`;
  const target = path.resolve(dir, spec);
  if (path.dirname(target) === RING) return null;
  if (target.replace(/\.js$/, '.ts') === ERRORS) return null;
  return `'${spec}' leaves ring/`;
}

describe('ring/ import rule', () => {
  const files = readdirSync(RING).filter((f) => f.endsWith('.ts'));

  it('finds the ring sources', () => {
    expect(files).to.include.members(['memory.ts', 'ring-layout.ts', 'validation.ts', 'chain.ts', 'device-queue.ts', 'driver-queue.ts', 'index.ts']);
  });

  it('ring/*.ts import nothing outside ring/ but node:, virtio-spec-types and ../errors.js', () => {
    const bad: string[] = [];
    for (const f of files) {
      const text = readFileSync(path.join(RING, f), 'utf8');
      for (const spec of importSpecifiers(text)) {
        const why = ringImportViolation(RING, spec);
        if (why !== null) bad.push(`${f}: ${why}`);
      }
    }
    expect(bad).to.deep.equal([]);
  });

  it('errors.ts, which ring/ may import, imports nothing relative or from a package', () => {
    const specs = importSpecifiers(readFileSync(ERRORS, 'utf8')).filter((s) => !s.startsWith('node:'));
    expect(specs).to.deep.equal([]);
  });

  it('the checker itself rejects what the rule forbids', () => {
    // So the test above cannot pass by matching nothing.
    const sample = [
      "import { IvshmemDevice } from '../ivshmem/device.js';",
      "import type { HeaderView } from '../virtio/header.js';",
      "export * from '../server/server.js';",
      "import binding from '@vshm/addon';",
      "const m = await import('../testing/index.js');",
      "import './chain.js';",
      "import { RingError } from '../errors.js';",
      "import os from 'node:os';",
      "import { VIRTQ_DESC_F_NEXT } from 'virtio-spec-types';",
    ].join('\n');
    const verdicts = importSpecifiers(sample).map((s) => ringImportViolation(RING, s) !== null);
    expect(verdicts).to.deep.equal([true, true, true, true, true, false, false, false, false]);
  });
});
