/**
 * End to end (issue 9 item 6): both console daemons survive a server restart. vshm-server is
 * killed with SIGKILL and started again at the same socket path; vshm-console-backend and
 * vshm-console-frontend reconnect, re-initialise the device on the new memory and data flows
 * both ways again — what was written while the server was away included, nothing twice. A server
 * that stays away longer than --server-timeout ends each daemon with one line and exit 1;
 * --no-reconnect keeps the old behaviour (one line, exit 1 at once). Waits for lines and exits
 * only: nothing is timed.
 */
import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { BACKEND_BIN, BOUND_MS, useScratch, type Proc } from './e2e-procs.js';

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0);
}

/** The CLI's own lines (debug lines, which ignore -q, left out). */
function cliLines(s: string, prog: string): string[] {
  return lines(s).filter((l) => l.startsWith(`${prog}:`));
}

interface BridgeClient {
  sock: Socket;
  received: () => string;
  /** Resolves once `text` was received (woken by the socket's data; bounded). */
  until: (text: string) => Promise<void>;
}

/** A client of the front-end's bridge socket, collecting what it receives. */
async function bridgeClient(path: string): Promise<BridgeClient> {
  const sock = connect(path);
  let got = '';
  let wake: (() => void) | null = null;
  sock.on('data', (c: Buffer) => {
    got += c.toString();
    wake?.();
  });
  const until = async (text: string): Promise<void> => {
    const deadline = Date.now() + BOUND_MS;
    while (!got.includes(text)) {
      const left = deadline - Date.now();
      if (left <= 0 || sock.closed) throw new Error(`bridge client: ${JSON.stringify(text)} not received; got ${JSON.stringify(got)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(t);
          wake = null;
          resolve();
        };
      });
    }
  };
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  return { sock, received: () => got, until };
}

/** Count of `needle` in `hay`. */
function count(hay: string, needle: string): number {
  return hay.split(needle).length - 1;
}

describe('console e2e: server restart (issue 9 item 6)', function () {
  const s = useScratch(this, 300_000);

  async function restartable(feArgs: string[] = [], beArgs: string[] = []): Promise<{ server: Proc; be: Proc; fe: Proc; bridge: string }> {
    const server = await s.startServer();
    // -q also silences the "serving" line startBackend() waits for: with -q wait for the
    // transport's debug line instead (debug output is not the CLI's voice and ignores -q).
    const quiet = beArgs.includes('-q');
    const be = quiet
      ? s.spawn('backend', BACKEND_BIN, ['-S', s.server, '--settle-ms', '0', ...beArgs], { env: { ...process.env, DEBUG: 'vshm:virtio:be' } })
      : await s.startBackend(['--settle-ms', '0', ...beArgs]);
    if (quiet) await be.untilStderr(/header initialised/);
    const bridge = s.path('bridge.sock');
    const fe = s.startFrontend(['--bridge', bridge, ...feArgs]);
    await fe.untilStderr(/listening on/);
    if (!quiet) await be.untilStderr(/front-end connected/);
    return { server, be, fe, bridge };
  }

  it('SIGKILL of the server, then a new server: both daemons reconnect, data flows both ways, nothing duplicated', async () => {
    const { server, be, fe, bridge } = await restartable();
    const client = await bridgeClient(bridge);
    client.sock.write('fe-1\n');
    be.write('be-1\n');
    await be.until(() => be.stdoutText.includes('fe-1\n'), 'fe-1 at the back-end');
    await client.until('be-1\n');

    await server.kill('SIGKILL');
    await be.untilStderr(/server lost, reconnecting/);
    await fe.untilStderr(/server lost, reconnecting/);
    // Written while there is no server: waits for the new session on either side.
    client.sock.write('fe-2\n');
    be.write('be-2\n');
    await s.startServer();
    await be.untilStderr(/server back/);
    await fe.untilStderr(/server back/);
    await be.untilStderr(/front-end connected[^\n]*\n[^]*front-end connected/);
    client.sock.write('fe-3\n');
    be.write('be-3\n');
    await be.until(() => be.stdoutText.includes('fe-3\n'), 'fe-3 at the back-end');
    await client.until('be-3\n');
    expect(be.stdoutText).to.equal('fe-1\nfe-2\nfe-3\n');
    expect(client.received()).to.equal('be-1\nbe-2\nbe-3\n');
    expect(be.running && fe.running).to.equal(true);
    // The link-state lines, once each, in order.
    const beLink = lines(be.stderr).filter((l) => /server (lost|back)/.test(l));
    expect(beLink).to.deep.equal(['vshm-console-backend: server lost, reconnecting', 'vshm-console-backend: server back']);
    const feLink = lines(fe.stderr).filter((l) => /server (lost|back)/.test(l));
    expect(feLink).to.deep.equal(['vshm-console-frontend: server lost, reconnecting', 'vshm-console-frontend: server back']);
    client.sock.destroy();
  });

  it('two restarts in a row, -q: silent, and still serving', async () => {
    const { server, be, fe, bridge } = await restartable(['-q'], ['-q']);
    const client = await bridgeClient(bridge);
    let srv = server;
    for (let i = 1; i <= 2; i++) {
      await srv.kill('SIGKILL');
      srv = await s.startServer();
      client.sock.write(`fe-${i}\n`);
      be.write(`be-${i}\n`);
      await be.until(() => be.stdoutText.includes(`fe-${i}\n`), `fe-${i} at the back-end`);
      await client.until(`be-${i}\n`);
    }
    expect(count(be.stdoutText, 'fe-1\n')).to.equal(1);
    expect(client.received()).to.equal('be-1\nbe-2\n');
    expect(cliLines(be.stderr, 'vshm-console-backend')).to.deep.equal([]);
    expect(lines(fe.stderr).filter((l) => !l.includes('listening on'))).to.deep.equal([]);
    client.sock.destroy();
  });

  it('--server-timeout: a server that does not come back ends each daemon with one line, exit 1', async () => {
    const { server, be, fe } = await restartable(['-q', '--server-timeout', '1'], ['-q', '--server-timeout', '1']);
    await server.kill('SIGKILL');
    const [b, f] = await Promise.all([be.exited, fe.exited]);
    expect(b.code).to.equal(1);
    expect(f.code).to.equal(1);
    expect(cliLines(be.stderr, 'vshm-console-backend')).to.have.length(1);
    expect(cliLines(be.stderr, 'vshm-console-backend')[0]).to.match(
      new RegExp(`^vshm-console-backend: server at ${s.server.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} gone for more than 1 s; giving up \\(last attempt: cannot connect to .+: ECONNREFUSED \\(connection refused\\)\\)$`),
    );
    expect(lines(fe.stderr).filter((l) => !l.includes('listening on'))).to.deep.equal([
      `vshm-console-frontend: server at ${s.server} gone for more than 1 s; giving up`,
    ]);
  });

  it('--no-reconnect: the server going away ends each daemon at once, one line, exit 1', async () => {
    const { server, be, fe } = await restartable(['-q', '--no-reconnect'], ['-q', '--no-reconnect']);
    await server.kill('SIGKILL');
    const [b, f] = await Promise.all([be.exited, fe.exited]);
    expect(b.code).to.equal(1);
    expect(f.code).to.equal(1);
    expect(cliLines(be.stderr, 'vshm-console-backend')).to.deep.equal([`vshm-console-backend: server at ${s.server} went away`]);
    expect(lines(fe.stderr).filter((l) => !l.includes('listening on'))).to.deep.equal([`vshm-console-frontend: server at ${s.server} went away`]);
  });

  it('--server-timeout and --no-reconnect exclude each other (exit 2, one line)', async () => {
    await s.startServer();
    const be = s.spawn('backend', BACKEND_BIN, ['-S', s.server, '--no-reconnect', '--server-timeout', '5']);
    const fe = s.startFrontend(['--no-reconnect', '--server-timeout', '5']);
    const [b, f] = await Promise.all([be.exited, fe.exited]);
    expect([b.code, f.code]).to.deep.equal([2, 2]);
    expect(lines(be.stderr)).to.deep.equal(['vshm-console-backend: --server-timeout and --no-reconnect exclude each other (try --help)']);
    expect(lines(fe.stderr)).to.deep.equal(['vshm-console-frontend: --server-timeout and --no-reconnect exclude each other (try --help)']);
  });
});
