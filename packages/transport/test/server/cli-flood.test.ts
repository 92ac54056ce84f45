/**
 * vshm-server under a connect/close flood: clients that hang up before reading INIT make the
 * server warn (VSHM_ERR_INIT_SEND); without -v those warnings are rate limited per code, so the
 * log stays a handful of lines with one count, and the server keeps serving.
 */
import { expect } from 'chai';
import net from 'node:net';
import { useCliRig } from '../fixtures/server-cli-rig.js';

/** `total` connections, `parallel` at a time, each closed as soon as it is connected. */
function flood(path: string, total: number, parallel: number): Promise<void> {
  return new Promise((resolve) => {
    let started = 0;
    let closed = 0;
    const one = (): void => {
      started++;
      const s = net.connect(path);
      s.on('connect', () => s.destroy());
      s.on('error', () => undefined);
      s.on('close', () => {
        if (++closed === total) resolve();
        else if (started < total) one();
      });
    };
    for (let i = 0; i < parallel; i++) one();
  });
}

describe('vshm-server: warning flood (rate limit)', () => {
  const rig = useCliRig();

  it('1500 connect/close clients: at most 5 lines per warning code plus one summary each, then clean exit', async () => {
    const path = rig.sock();
    const srv = await rig.ready(['-S', path, '-l', '64K']);
    await flood(path, 1500, 20);
    // The server is still alive and serving: a real client gets its INIT.
    const c = rig.connect(path);
    await c.next();
    srv.proc.kill('SIGTERM');
    const { code } = await srv.exit;
    expect(code).to.equal(0);
    const warnings = srv.stderrLines().filter((l) => l.includes('warning:'));
    const summaries = warnings.filter((l) => /suppressed in \d+ s$/.test(l));
    // Hundreds of failed INIT sends came down to a handful of lines: at most 5 per warning code
    // (a code's lines are not tagged, so bound the total by the codes seen in any line) plus
    // one summary line per code that was cut.
    expect(warnings.length, warnings.join('\n')).to.be.below(30);
    // (With -n 2 and 20 clients at a time most newcomers find no free id: refusals are a kind too.)
    for (const s of summaries) expect(s).to.match(/^vshm-server: warning: \d+ more (VSHM_ERR_[A-Z_]+|refused-connection) warnings? suppressed in 10 s$/);
  });
});
