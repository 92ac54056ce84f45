// Types of launch.js (plain JavaScript: it runs before any compiled module is loaded).

/** The URL a CLI launcher imports for `entry` (e.g. `cli.js`): its bundle when fresh, else the tsc output. */
export function cliModule(launcherUrl: string, entry: string): string;

/** Whether `bundle` and `plain` exist and, where `buildInfo` exists (a tsc build tree), `bundle` is at least as new as both. */
export function bundleIsFresh(bundle: URL | string, plain: URL | string, buildInfo: URL | string): boolean;
