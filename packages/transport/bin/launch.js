// Which module a vshm CLI launcher (every package's bin/*.js) imports: the bundle that
// scripts/bundle.mjs makes of the tsc output, or the tsc output itself.
//
// Why a bundle: a CLI's start loaded ~50 ESM modules of dist/ and of its workspace dependencies,
// and resolving, reading and compiling them one by one cost ~60–90 ms of CPU (issue 12 item 7);
// one file (plus a chunk per lazily loaded mode) costs a fraction of that. Why the check: a
// `tsc --build` (or `tsc --watch`) alone rebuilds dist/ without the bundle step, and the launcher
// must then run the new code, not a bundle of the old.
//
// Every launcher holds a verbatim copy of cliModule() below rather than importing this file:
// resolving `@vshm/transport/...` from another package and loading one more module cost ~10 ms
// of CPU at every start. This file is the reference copy, which packages/transport/test/launch.test.ts
// tests and test/cli-bundle.test.ts compares every launcher's copy with. Plain JavaScript, only
// `node:fs`: it runs before anything else is loaded.
import { statSync } from 'node:fs';

/**
 * The URL to import for the CLI module `entry` (a path inside the package's `dist/`, such as
 * `cli.js` or `server/cli.js`) of the launcher at `launcherUrl` (its `import.meta.url`, in the
 * package's `bin/`): the bundle `dist/bundle/<entry>` if it may stand in for `dist/<entry>`,
 * else `dist/<entry>`. Three `stat` calls. The bundle may stand in when both files exist (a
 * cleaned dist/ then fails as it always did, the import naming the missing file, rather than
 * running an orphaned bundle), and:
 * - where tsc builds (the project's `dist/.tsbuildinfo` exists), the bundle's mtime is at least
 *   that of `dist/<entry>` and of the build info (nanoseconds: two writes in the same millisecond
 *   still order). The build info counts because `tsc --build` rewrites it whenever the project
 *   or a project it references (the transport, the spec types) is rebuilt, even when
 *   `dist/<entry>` itself is not re-emitted;
 * - in a package installed from its tarball (no build info: the tarballs leave it out), always:
 *   the bundle was packed with the dist/ it was made from, and the mtimes say nothing there (npm
 *   sets them in extraction order).
 */
export function cliModule(launcherUrl, entry) {
  const dist = new URL('../dist/', launcherUrl);
  const plain = new URL(entry, dist);
  const bundle = new URL(`bundle/${entry}`, dist);
  const b = statSync(bundle, { bigint: true, throwIfNoEntry: false });
  const p = b && statSync(plain, { bigint: true, throwIfNoEntry: false });
  const i = p && statSync(new URL('.tsbuildinfo', dist), { bigint: true, throwIfNoEntry: false });
  return p && (!i || (p.mtimeNs <= b.mtimeNs && i.mtimeNs <= b.mtimeNs)) ? bundle.href : plain.href;
}
