// Types of launch.js (plain JavaScript: it runs before any compiled module is loaded).

/** The URL a CLI launcher imports for `entry` (e.g. `cli.js`): its bundle when that may stand in, else the tsc output. */
export function cliModule(launcherUrl: string, entry: string): string;
