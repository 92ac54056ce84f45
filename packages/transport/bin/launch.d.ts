// Types of launch.js (plain JavaScript: it runs before any compiled module is loaded).
import type { Script } from 'node:vm';

/** The file a CLI launcher runs for `entry` (e.g. `cli.js`): its bundle (`dist/bundle/cli.cjs`) when that may stand in, else the tsc output. */
export function cliModule(binDir: string, entry: string): string;
/** Load the CLI module `entry` of the launcher in `binDir`: the bundle with its code cache, or the tsc output. */
export function loadCli(binDir: string, entry: string): Promise<Record<string, unknown>>;
/** The `vm.Script` of a bundle, wrapped as a CommonJS module, with V8's cached data if given. */
export function compileBundle(file: string, source: string, cachedData?: Buffer): Script;
/** The id on a bundle's first line, or undefined. */
export function bundleId(source: string): string | undefined;
