/**
 * Owner-only bridge listeners (local-socket.ts): the uid policy, the refusal seam with an injected
 * peer uid (so the policy is tested without a second user; test/bridge-sockets-owner.test.ts does
 * it with a real `nobody`), mode 0600 at umask 000, and errors that name the path and errno.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect, type Server } from 'node:net';
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

  it('refuses when credentials cannot be read', async () => {
    const path = join(dir, 'b.sock');
    const refused: string[] = [];
    server = await listenOwnerOnly(path, { credentials: () => null, onRefused: (l) => refused.push(l) }, () => expect.fail('handled'));
    await new Promise<void>((resolve) => connect(path).on('error', () => {}).on('close', () => resolve()));
    expect(refused).to.have.length(1);
    expect(refused[0]).to.include('peer credentials unavailable');
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
});
