/**
 * Owner-only bridge listeners (local-socket.ts): the uid policy, the refusal seam with an injected
 * peer uid (so the policy is tested without a second user; test/bridge-sockets-owner.test.ts does
 * it with a real `nobody`), mode 0600 at umask 000, and errors that name the path and errno.
 */
import { expect } from 'chai';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenOwnerOnly, LocalSocketError, peerUidAllowed } from '../src/local-socket.js';

describe('owner-only local sockets (bridges)', function () {
  let dir = '';
  let server: Server | null = null;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-ls-'));
  });
  afterEach(async () => {
    if (server !== null) await new Promise((r) => server!.close(r));
    server = null;
    rmSync(dir, { recursive: true, force: true });
  });

  it('policy: our uid and root are allowed, anyone else is not', () => {
    expect(peerUidAllowed(1000, 1000)).to.equal(true);
    expect(peerUidAllowed(0, 1000)).to.equal(true);
    expect(peerUidAllowed(0, 0)).to.equal(true);
    expect(peerUidAllowed(1001, 1000)).to.equal(false);
    expect(peerUidAllowed(65534, 0)).to.equal(false);
  });

  it('creates the socket 0600 at umask 000 and serves our own uid', async () => {
    const path = join(dir, 'b.sock');
    const old = process.umask(0);
    try {
      server = await listenOwnerOnly(path, { onRefused: () => expect.fail('refused own uid') }, (s) => s.end('hello'));
    } finally {
      process.umask(old);
    }
    expect(statSync(path).mode & 0o777).to.equal(0o600);
    const got = await new Promise<string>((resolve) => {
      let t = '';
      connect(path).on('data', (c) => (t += c.toString())).on('close', () => resolve(t));
    });
    expect(got).to.equal('hello');
  });

  it('closes a peer whose uid is not ours, before the handler sees it, with one line', async () => {
    const path = join(dir, 'b.sock');
    const refused: string[] = [];
    let handled = 0;
    server = await listenOwnerOnly(path, {
      ownUid: 1000,
      credentials: () => ({ pid: 4242, uid: 1001, gid: 1001 }),
      onRefused: (l) => refused.push(l),
    }, () => handled++);
    await new Promise<void>((resolve) => {
      const c = connect(path);
      c.on('error', () => {});
      c.on('close', () => resolve());
    });
    expect(handled).to.equal(0);
    expect(refused).to.deep.equal([`refused a connection on ${path} from uid 1001 (pid 4242): only uid 1000 or root may connect`]);
  });

  it('our uid is the effective one, as SO_PEERCRED reports the peer\'s (here the real one differs)', async () => {
    const path = join(dir, 'b.sock');
    const refused: string[] = [];
    const { getuid, geteuid } = process;
    // A process whose real and effective uids differ (a setuid program, or setpriv --ruid):
    // faked here, so that the test needs no second user.
    process.getuid = () => 4001;
    process.geteuid = () => 4002;
    try {
      server = await listenOwnerOnly(path, { credentials: () => ({ pid: 4242, uid: 4002, gid: 4002 }), onRefused: (l) => refused.push(l) }, (s) => s.end('hello'));
    } finally {
      process.getuid = getuid;
      process.geteuid = geteuid;
    }
    const got = await new Promise<string>((resolve) => {
      let t = '';
      connect(path).on('data', (c) => (t += c.toString())).on('close', () => resolve(t));
    });
    expect(refused).to.deep.equal([]);
    expect(got).to.equal('hello');
  });

  it('refuses when credentials cannot be read', async () => {
    const path = join(dir, 'b.sock');
    const refused: string[] = [];
    server = await listenOwnerOnly(path, { credentials: () => null, onRefused: (l) => refused.push(l) }, () => expect.fail('handled'));
    await new Promise<void>((resolve) => connect(path).on('error', () => {}).on('close', () => resolve()));
    expect(refused).to.have.length(1);
    expect(refused[0]).to.include('peer credentials unavailable');
  });

  it('a failed accept (EMFILE) is reported and tried again: the waiting client is served, not dropped', async () => {
    const real = (await import('@vshm/addon')).default;
    let failures = 3;
    const binding = {
      ...real,
      socketAccept: (fd: number): number => {
        if (failures-- > 0) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE', errno: -24 });
        return real.socketAccept(fd);
      },
    };
    const path = join(dir, 'b.sock');
    const errors: NodeJS.ErrnoException[] = [];
    server = await listenOwnerOnly(path, { binding, onRefused: () => expect.fail('refused'), onAcceptError: (e) => errors.push(e) }, (s) => s.end('hello'));
    const got = await new Promise<string>((resolve) => {
      let t = '';
      connect(path).on('data', (c) => (t += c.toString())).on('close', () => resolve(t));
    });
    expect(got).to.equal('hello');
    expect(errors.map((e) => [e.code, e.syscall])).to.deep.equal([['EMFILE', 'accept'], ['EMFILE', 'accept'], ['EMFILE', 'accept']]);
  });

  it('close(): no connection accepted after it; the callback once the accepted ones closed (as net.Server)', async () => {
    const path = join(dir, 'b.sock');
    let held: import('node:net').Socket | null = null;
    const s = await listenOwnerOnly(path, { onRefused: () => {} }, (sock) => (held = sock.on('error', () => {})));
    const client = connect(path).on('error', () => {});
    await new Promise<void>((r) => client.once('connect', () => r()));
    while (held === null) await new Promise<void>((r) => setImmediate(r));
    let closed = false;
    const done = new Promise<void>((r) => s.close(() => ((closed = true), r())));
    const late = await new Promise<string>((r) => connect(path).on('error', (e: NodeJS.ErrnoException) => r(e.code ?? '')).on('connect', () => r('connected')));
    expect(late).to.be.oneOf(['ECONNREFUSED', 'ENOENT']);
    await new Promise<void>((r) => setImmediate(r));
    expect(closed).to.equal(false); // a connection it accepted is still open
    (held as unknown as import('node:net').Socket).destroy();
    await done;
    client.destroy();
  });

  it('close() a second time, before or after the first closed: its callback gets ERR_SERVER_NOT_RUNNING (as net.Server), never left pending', async () => {
    const path = join(dir, 'b.sock');
    const s = await listenOwnerOnly(path, { onRefused: () => {} }, () => {});
    const first = await new Promise<Error | undefined>((r) => s.close(r));
    expect(first).to.equal(undefined);
    // Each close() below must call back; one left pending would hang this test (mocha's timeout).
    const again = await new Promise<Error | undefined>((r) => s.close(r));
    expect(again).to.have.property('code', 'ERR_SERVER_NOT_RUNNING');
    const s2 = await listenOwnerOnly(join(dir, 'c.sock'), { onRefused: () => {} }, () => {});
    const both = await Promise.all([new Promise<Error | undefined>((r) => s2.close(r)), new Promise<Error | undefined>((r) => s2.close(r))]);
    expect(both[0]).to.equal(undefined);
    expect(both[1]).to.have.property('code', 'ERR_SERVER_NOT_RUNNING');
  });

  it('a path in a missing directory: LocalSocketError naming the path and errno', async () => {
    const path = join(dir, 'missing', 'b.sock');
    try {
      await listenOwnerOnly(path, { onRefused: () => {} }, () => {});
      expect.fail('listened');
    } catch (err) {
      expect(err).to.be.instanceOf(LocalSocketError);
      expect(err).to.have.property('code', 'VSHM_ERR_SOCKET');
      expect((err as Error).message).to.include(path).and.to.include('ENOENT');
    }
  });

  /** listenOwnerOnly's rejection (it must reject). */
  async function refusal(path: string, procNetUnix?: () => string): Promise<LocalSocketError> {
    try {
      server = await listenOwnerOnly(path, { onRefused: () => {}, ...(procNetUnix && { procNetUnix }) }, () => {});
    } catch (err) {
      expect(err).to.be.instanceOf(LocalSocketError);
      return err as LocalSocketError;
    }
    return expect.fail('listened');
  }

  it('a live listener at the path is refused (cause EADDRINUSE) without being connected to', async () => {
    const path = join(dir, 'live.sock');
    let connections = 0;
    const live = createServer(() => connections++);
    await new Promise<void>((r) => live.listen(path, r));
    try {
      const err = await refusal(path);
      expect(err.message).to.equal(`${path} is in use by another listener`);
      expect((err.cause as NodeJS.ErrnoException).code).to.equal('EADDRINUSE');
      // A probe connection would have been accepted by now: the check read /proc/net/unix instead.
      await new Promise<void>((r) => setImmediate(r));
      expect(connections).to.equal(0);
    } finally {
      await new Promise((r) => live.close(r));
    }
  });

  it('a stale socket is replaced; a regular file, a directory or a dangling link is refused (cause EEXIST) and kept', async () => {
    const stale = join(dir, 'stale.sock');
    // A listener closed without unlinking its file: what a killed process leaves behind.
    const b = (await import('@vshm/addon')).default;
    b.close(b.socketListen(stale, 0o600, 1));
    expect(lstatSync(stale).isSocket()).to.equal(true);
    server = await listenOwnerOnly(stale, { onRefused: () => {} }, () => {});
    await new Promise((r) => server!.close(r));
    server = null;
    const file = join(dir, 'plain');
    writeFileSync(file, 'x');
    const sub = join(dir, 'sub');
    mkdirSync(sub);
    const link = join(dir, 'dangling');
    symlinkSync(join(dir, 'nowhere'), link);
    for (const p of [file, sub, link]) {
      const err = await refusal(p);
      expect(err.message).to.equal(`${p} exists and is not a socket`);
      expect((err.cause as NodeJS.ErrnoException).code).to.equal('EEXIST');
    }
    expect(readFileSync(file, 'utf8')).to.equal('x');
    expect(lstatSync(link).isSymbolicLink()).to.equal(true);
  });

  it('a socket file whose liveness cannot be decided (no /proc/net/unix) is refused, not replaced', async () => {
    const path = join(dir, 'unknown.sock');
    const old = createServer();
    await new Promise<void>((r) => old.listen(path, r));
    try {
      const err = await refusal(path, () => {
        throw new Error('no /proc');
      });
      expect(err.message).to.equal(`cannot decide whether ${path} is in use (/proc/net/unix cannot be read: no /proc); refusing to replace it`);
      expect((err.cause as NodeJS.ErrnoException).code).to.equal('EADDRINUSE');
      expect(lstatSync(path).isSocket()).to.equal(true);
    } finally {
      await new Promise((r) => old.close(r));
    }
  });
});
