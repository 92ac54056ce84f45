/**
 * `asyncTerminalOutput` (the CLI kit) on a real terminal (node-pty): the terminal's stdout is
 * made non-blocking on an open file description of this process's own, never on the one it
 * shares with the shell and every other process on the terminal. When libuv cannot open the
 * terminal anew (here: a user who may not open it), the stream stays synchronous and says why.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ROOT } from './e2e-procs.js';
import { descendants } from './e2e-system.js';
import { PtyProc } from './e2e-pty.js';

const O_NONBLOCK = 0o4000;
const NOBODY = 65534;
const canSwitchUid = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

/** Prints `RESULT <what asyncTerminalOutput returned>`, then waits for a line of input. */
const SCRIPT = [
  "import { asyncTerminalOutput } from '@vshm/transport/cli';",
  'const r = asyncTerminalOutput("probe");',
  'process.stdout.write(`RESULT ${JSON.stringify(r)}\\n`);',
  'process.stdin.once("data", () => process.exit(0));',
].join('\n');

/** The file status flags of descriptor `fd` of process `pid`. */
function flags(pid: number, fd: number): number {
  return parseInt(/^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1], 8);
}

describe('asyncTerminalOutput on a terminal (node-pty)', function () {
  this.timeout(60_000);
  let p: PtyProc | null = null;
  afterEach(async () => {
    await p?.kill();
    p = null;
  });

  /** Run SCRIPT under `wrap` in a shell on a new pty; its result, and its stdout's flags and the shell's. */
  async function probe(wrap: string[]): Promise<{ result: { stdout: string | null; stderr: string | null }; own: number; shell: number }> {
    const t = (p = new PtyProc('probe', '/bin/sh', ['-c', '"$@"; echo PROBE-EXIT-$?', 'sh', ...wrap, process.execPath, '--input-type=module', '-e', SCRIPT], { cwd: ROOT }));
    await t.untilOutput(/RESULT (.*)\r?\n/);
    const result = JSON.parse(/RESULT (.*)\r?\n/.exec(t.output)![1]) as { stdout: string | null; stderr: string | null };
    const node = descendants(t.pty.pid).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('asyncTerminalOutput'))!;
    const own = flags(node, 1);
    const shell = flags(t.pty.pid, 1);
    t.type('\r');
    await t.untilOutput(/PROBE-EXIT-0/);
    return { result, own, shell };
  }

  it("makes stdout and stderr non-blocking on the process's own open of the terminal; the shell's stays blocking", async () => {
    const { result, own, shell } = await probe([]);
    expect(result).to.deep.equal({ stdout: null, stderr: null });
    expect(own & O_NONBLOCK, 'our stdout').to.equal(O_NONBLOCK);
    expect(shell & O_NONBLOCK, "the shell's stdout").to.equal(0);
  });

  it('leaves a terminal the user may not open again synchronous, and says why', async function () {
    if (!canSwitchUid) this.skip();
    const { result, own, shell } = await probe(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups']);
    // Its stdout is the shell's open file description: non-blocking there would be everyone's.
    expect(shell & O_NONBLOCK, "the shell's stdout").to.equal(0);
    expect(own & O_NONBLOCK, 'our stdout').to.equal(0);
    expect(result.stdout).to.match(/^cannot reopen \/dev\/pts\/\d+: EACCES \(permission denied\)$/);
    expect(result.stderr).to.match(/^cannot reopen \/dev\/pts\/\d+: EACCES \(permission denied\)$/);
  });
});
