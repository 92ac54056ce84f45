/**
 * End to end: vshm-console-frontend argument errors (exit 2, one line), a missing server (exit 1,
 * one clear line), the start-order error (front-end first → exit 1 with the documented line) and
 * `--wait` (retries until the back-end holds peer 0).
 */
import { expect } from 'chai';
import { lstatSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { FRONTEND_BIN, useScratch } from './e2e-procs.js';

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0);
}

describe('console front-end e2e: CLI errors and start order', function () {
  const s = useScratch(this);

  // The argument table is checked in-process (packages/frontend-console/test/cli-args.test.ts);
  // here only that the binary prints that one line and exits 2.
  for (const [args, line] of [
    [['--bogus'], "vshm-console-frontend: unknown option '--bogus' (try --help)"],
    [['--socket', 'x', '--', 'cat'], 'vshm-console-frontend: --bridge and -- COMMAND exclude each other (try --help)'],
  ] as const) {
    it(`exits 2 with one stderr line for ${JSON.stringify(args)}`, async () => {
      const fe = s.spawn('frontend', FRONTEND_BIN, [...args]);
      const { code } = await fe.exited;
      expect(code).to.equal(2);
      expect(lines(fe.stderr)).to.deep.equal([line]);
    });
  }

  it('--help prints the usage and exits 0', async () => {
    const fe = s.startFrontend(['--help']);
    const { code } = await fe.exited;
    expect(code).to.equal(0);
    expect(fe.stdout.toString()).to.match(/^Usage: vshm-console-frontend/);
  });

  it('a missing server is one clear line and exit 1', async () => {
    const fe = s.startFrontend([]);
    const { code } = await fe.exited;
    expect(code).to.equal(1);
    expect(lines(fe.stderr)).to.deep.equal([`vshm-console-frontend: cannot connect to ${s.server}: ENOENT (no such file or directory); start vshm-server first`]);
  });

  it('front-end first: one line saying to start the back-end first, exit 1', async () => {
    await s.startServer();
    const fe = s.startFrontend([]);
    const { code } = await fe.exited;
    expect(code).to.equal(1);
    expect(lines(fe.stderr)).to.have.length(1);
    expect(fe.stderr).to.match(/^vshm-console-frontend: connected as peer 0 \(back-end role, protocol 0xC003\): start the back-end first/);
  });

  it('--bridge at a dangling symbolic link: one line saying it is not a socket (not EADDRINUSE), exit 1; the link stays', async () => {
    await s.startServer();
    await s.startBackend();
    const bridge = s.path('bridge.sock');
    symlinkSync(s.path('nowhere'), bridge);
    const fe = s.startFrontend(['--bridge', bridge]);
    const { code } = await fe.exited;
    expect(code).to.equal(1);
    expect(lines(fe.stderr)).to.deep.equal([`vshm-console-frontend: ${bridge} exists and is not a socket`]);
    expect(lstatSync(bridge).isSymbolicLink()).to.equal(true);
  });

  it('--bridge where another program listens: one line saying it is in use, exit 1, and that listener never sees a connection', async () => {
    await s.startServer();
    await s.startBackend();
    const bridge = s.path('taken.sock');
    let connections = 0;
    const other = createServer((c) => {
      connections++;
      c.destroy();
    });
    await new Promise<void>((r) => other.listen(bridge, r));
    try {
      const fe = s.startFrontend(['--bridge', bridge]);
      const { code } = await fe.exited;
      expect(code).to.equal(1);
      expect(lines(fe.stderr)).to.deep.equal([`vshm-console-frontend: ${bridge} is in use by another listener`]);
      expect(connections).to.equal(0); // decided from /proc/net/unix, not by a probe connection
    } finally {
      await new Promise((r) => other.close(r));
    }
  });

  it('--port NAME on a back-end without named ports (no MULTIPORT): one line, exit 1, not a silent wait', async () => {
    await s.startServer();
    await s.startBackend();
    const fe = s.startFrontend(['--port', 'logs']);
    const { code } = await fe.exited;
    expect(code).to.equal(1);
    expect(lines(fe.stderr)).to.deep.equal(['vshm-console-frontend: --port logs: the back-end offers no named ports (no MULTIPORT); start it with --port logs']);
  });

  it('--wait: retries until the back-end is there, then works', async () => {
    await s.startServer();
    const fe = s.startFrontend(['--wait', '--no-pty', '--', '/bin/sh', '-c', 'echo waited'], { env: { ...process.env, DEBUG: 'vshm:console-fe' } });
    await fe.untilStderr(/retrying/);
    // While the front-end probes it briefly holds peer 0: a back-end connecting at that very
    // moment gets peer 1 and refuses (documented). Start back-ends until one holds peer 0.
    let be = null;
    for (let attempt = 0; attempt < 20 && be === null; attempt++) {
      try {
        be = await s.startBackend([], { name: `backend-${attempt}` });
      } catch {
        be = null;
      }
    }
    expect(be).to.not.equal(null);
    const { code } = await fe.exited;
    expect(code).to.equal(0);
    await be!.until(() => be!.stdout.toString().includes('waited\n'), 'command output');
  });
});
