/**
 * A termination signal while a command waits at exit for its output (`exitAfterOutput` of the CLI
 * kit): the wait ends at once and the process exits with the status it was exiting with — not by
 * the signal, and not after the wait's bound — whether or not the command has a handler of its own
 * for that signal still registered (which does not run: the command is already exiting).
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { ROOT, useScratch } from './e2e-procs.js';

const FIXTURE = join(ROOT, 'test/fixtures/exit-wait-signal.mjs');

describe('exitAfterOutput: a termination signal during the exit wait', function () {
  // The fixture's bound is 600 s: a wait the signal does not end fails by this timeout.
  const s = useScratch(this, 30_000);

  for (const sig of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const) {
    it(`${sig} ends the wait: exit status 3 (the command's), not the signal`, async () => {
      const p = s.spawn('exit-wait', FIXTURE, []);
      await p.untilStdout(/WAITING\n/);
      p.child.kill(sig);
      expect(await p.exited).to.deep.equal({ code: 3, signal: null });
    });

    it(`${sig} ends the wait with a handler of the command's own registered; that handler does not run`, async () => {
      const p = s.spawn('exit-wait', FIXTURE, ['--own-handler', sig]);
      await p.untilStdout(/WAITING\n/);
      p.child.kill(sig);
      expect(await p.exited).to.deep.equal({ code: 3, signal: null });
      expect(p.stdoutText).to.equal('WAITING\n');
    });
  }
});
