// The bench's C helper (native/floor.c), built with the system C compiler on first use into
// bench/build/ (gitignored; never /tmp, which the bench leaves as it found it). Rebuilt when the
// source is newer than the binary. The addon's build needs the same compiler, so it is there
// wherever vshm builds; without one the floor cases fail with a clear message.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('./native/floor.c', import.meta.url));
const DIR = fileURLToPath(new URL('./build/', import.meta.url));
const BIN = `${DIR}floor`;

/** Path of the built floor helper, compiling it first if needed. */
export function floorBinary() {
  if (existsSync(BIN) && statSync(BIN).mtimeMs >= statSync(SRC).mtimeMs) return BIN;
  mkdirSync(DIR, { recursive: true });
  const tmp = `${BIN}.${process.pid}`; // build beside, then rename: a concurrent run never sees half a file
  const errors = [];
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean)) {
    try {
      execFileSync(cc, ['-O2', '-std=gnu11', '-o', tmp, SRC], { stdio: ['ignore', 'ignore', 'pipe'] });
      renameSync(tmp, BIN);
      return BIN;
    } catch (e) {
      errors.push(`${cc}: ${e.code === 'ENOENT' ? 'not found' : (e.stderr?.toString().trim() || e.message)}`);
    }
  }
  throw new Error(`cannot build bench/native/floor.c (${errors.join('; ')})`);
}
