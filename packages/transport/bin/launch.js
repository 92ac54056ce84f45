// Which module a vshm CLI launcher (every package's bin/*.js) imports: the one-file bundle that
// scripts/bundle.mjs makes of the tsc output, or the tsc output itself.
//
// Why a bundle: a CLI's start loads ~50 ESM modules of dist/ and its workspace dependencies, and
// resolving, reading and compiling them one by one cost ~100 ms of CPU (issue 12 item 7); one
// file (plus a chunk per lazily loaded mode) loads in a fraction of that. Why the check: a
// `tsc --build` (or `tsc --watch`) alone rebuilds dist/ without the bundle step, and the launcher
// must then run the new code, not a bundle of the old. Plain JavaScript and only `node:fs`:
// this runs before anything else is loaded.
import { statSync } from 'node:fs';

/**
 * The URL to import for the CLI module `entry` (a path inside the package's `dist/`, such as
 * `cli.js` or `server/cli.js`) of the launcher at `launcherUrl` (its `import.meta.url`, in the
 * package's `bin/`): `dist/bundle/<entry>` when that bundle is fresh (see {@link bundleIsFresh})
 * against `dist/<entry>` and the project's `dist/.tsbuildinfo`, else `dist/<entry>`.
 */
export function cliModule(launcherUrl, entry) {
  const dist = new URL('../dist/', launcherUrl);
  const plain = new URL(entry, dist);
  const bundle = new URL(`bundle/${entry}`, dist);
  return bundleIsFresh(bundle, plain, new URL('.tsbuildinfo', dist)) ? bundle.href : plain.href;
}

/**
 * Whether the bundle at `bundle` may stand in for the tsc output `plain`. Both must exist: a
 * cleaned dist/ then fails as it always did, the import naming the missing file, instead of
 * running an orphaned bundle. Then:
 * - In a tree where tsc builds (`buildInfo`, the project's `.tsbuildinfo`, exists), the bundle's
 *   mtime must be at least that of `plain` and of `buildInfo` (nanoseconds: two writes in the
 *   same millisecond still order). The build info counts because `tsc --build` rewrites it
 *   whenever the project or a project it references (the transport, the spec types) is rebuilt,
 *   even when `plain` itself is not re-emitted.
 * - In a package installed from its tarball (no build info: the tarballs leave it out) the
 *   bundle was packed with the dist/ it was made from, and the mtimes say nothing (npm sets them
 *   in extraction order), so the bundle is taken.
 *
 * Three `stat` calls.
 */
export function bundleIsFresh(bundle, plain, buildInfo) {
  const b = statSync(bundle, { bigint: true, throwIfNoEntry: false });
  const p = b && statSync(plain, { bigint: true, throwIfNoEntry: false });
  if (!b || !p) return false;
  const i = statSync(buildInfo, { bigint: true, throwIfNoEntry: false });
  return !i || (p.mtimeNs <= b.mtimeNs && i.mtimeNs <= b.mtimeNs);
}
