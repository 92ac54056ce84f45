/**
 * The server's side of the uid rule (decisions.md "console, server and CLI-kit leftovers
 * (stop 23)"): the socket is 0600, but a mode can be widened (chmod, an ACL, a socket handed to
 * another user), and the peers already check the server's SO_PEERCRED (VSHM_SERVER_UIDS). So the
 * server reads each accepted client's SO_PEERCRED and closes a client of another uid (root and
 * our own uid excepted) before it sends anything: no INIT, no memory fd, no peer id taken.
 * Other uids are trusted with `peerUids` / `VSHM_PEER_UIDS` / `--peer-uids`.
 */
import { expect } from 'chai';
import binding, { type Binding } from '@vshm/addon';
import { spawn } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { ArgumentError } from '../../src/errors.js';
import { MSG_INIT } from '../../src/ivshmem/protocol.js';
import { IvshmemServer } from '../../src/server/server.js';
import { RawClient, removeIfExists, tmpPath } from '../fixtures/raw-client.js';
import { useCliRig } from '../fixtures/server-cli-rig.js';

const own = process.geteuid?.() ?? 0;
const stranger = own === 65534 ? 65533 : 65534;

/** The real binding, except that every accepted client's SO_PEERCRED says `who.uid` (or fails). */
function credsOf(who: { uid: number | 'fail' }): Binding {
  return {
    ...binding,
    peerCred: () => {
      if (who.uid === 'fail') throw Object.assign(new Error('getsockopt failed: EBADF'), { code: 'EBADF' });
      return { pid: 4242, uid: who.uid, gid: who.uid };
    },
  } as Binding;
}

describe('IvshmemServer: clients of another uid are refused (SO_PEERCRED)', function () {
  this.timeout(30_000);
  const servers: IvshmemServer[] = [];
  const clients: RawClient[] = [];
  afterEach(async () => {
    delete process.env.VSHM_PEER_UIDS;
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) await s.stop();
  });

  async function start(who: { uid: number | 'fail' }, extra: { peerUids?: readonly number[] | 'any' } = {}): Promise<{ server: IvshmemServer; path: string; warnings: Error[] }> {
    const path = tmpPath('peer-uid');
    const server = new IvshmemServer({ socketPath: path, memorySize: 65536, binding: credsOf(who), ...extra });
    const warnings: Error[] = [];
    server.on('warning', (e: Error) => warnings.push(e));
    await server.start();
    servers.push(server);
    return { server, path, warnings };
  }

  function connect(path: string): RawClient {
    const c = RawClient.connect(binding, path);
    clients.push(c);
    return c;
  }

  it('a client of another uid gets nothing but EOF, takes no id, and is one VSHM_ERR_PEER_UID warning naming the uid and the way out', async () => {
    const who = { uid: stranger as number | 'fail' };
    const { server, path, warnings } = await start(who);
    expect(await connect(path).untilEof(), 'messages sent to the stranger').to.deep.equal([]);
    expect(warnings.map((w) => (w as { code?: string }).code)).to.deep.equal(['VSHM_ERR_PEER_UID']);
    expect(warnings[0].message).to.include(`uid ${stranger}`).and.include('pid 4242').and.include(`--peer-uids ${stranger}`);
    expect(server.peerIds).to.deep.equal([]);
    // The next client, of our uid, gets id 0: the refused one took none.
    who.uid = own;
    const [init] = await connect(path).take(1);
    expect(init.msg).to.include({ type: MSG_INIT, id: 0 });
  });

  it('our own uid and root are served', async () => {
    const who = { uid: own as number | 'fail' };
    const { path, warnings } = await start(who);
    expect((await connect(path).take(1))[0].msg).to.include({ type: MSG_INIT, id: 0 });
    who.uid = 0;
    expect((await connect(path).take(1))[0].msg).to.include({ type: MSG_INIT, id: 1 });
    expect(warnings).to.deep.equal([]);
  });

  it('credentials that cannot be read are a refusal too', async () => {
    const { path, warnings } = await start({ uid: 'fail' });
    expect(await connect(path).untilEof()).to.deep.equal([]);
    expect((warnings[0] as { code?: string }).code).to.equal('VSHM_ERR_PEER_UID');
    expect(warnings[0].message).to.include('EBADF');
  });

  it('peerUids: [uid] or "any" trusts that uid; so does VSHM_PEER_UIDS, which the option overrides', async () => {
    for (const peerUids of [[12, stranger], 'any'] as const) {
      const { path } = await start({ uid: stranger }, { peerUids });
      expect((await connect(path).take(1))[0].msg).to.include({ type: MSG_INIT });
    }
    process.env.VSHM_PEER_UIDS = ` 12 , ${stranger}`;
    expect((await connect((await start({ uid: stranger })).path).take(1))[0].msg).to.include({ type: MSG_INIT });
    process.env.VSHM_PEER_UIDS = 'any';
    expect((await connect((await start({ uid: stranger })).path).take(1))[0].msg).to.include({ type: MSG_INIT });
    const overridden = await start({ uid: stranger }, { peerUids: [] });
    expect(await connect(overridden.path).untilEof()).to.deep.equal([]);
  });

  it('a bad VSHM_PEER_UIDS or peerUids is an ArgumentError at construction', () => {
    process.env.VSHM_PEER_UIDS = 'nobody';
    expect(() => new IvshmemServer({ socketPath: tmpPath('x') })).to.throw(ArgumentError, /VSHM_PEER_UIDS/);
    delete process.env.VSHM_PEER_UIDS;
    expect(() => new IvshmemServer({ socketPath: tmpPath('x'), peerUids: [-1] })).to.throw(ArgumentError, /peerUids/);
    expect(() => new IvshmemServer({ socketPath: tmpPath('x'), peerUids: 'all' as 'any' })).to.throw(ArgumentError, /peerUids/);
  });
});

/**
 * A real client run as nobody (setpriv, root only) against the real CLI whose socket was widened
 * to 0666: what the kernel reports, not a fake, decides.
 */
describe('vshm-server CLI: a real client of another uid (root only: setpriv)', function () {
  this.timeout(60_000);
  const rig = useCliRig();
  before(function () {
    if (own !== 0) this.skip();
  });

  /** Connect as nobody; resolves with what the client saw: `eof N` (N bytes before EOF) or `data N`. */
  function nobodyConnects(path: string): Promise<string> {
    const script = `const s = require('net').connect(process.argv[1]); let n = 0;
      s.on('data', (d) => { n += d.length; if (n >= 8) { console.log('data ' + n); process.exit(0); } });
      s.on('close', () => console.log('eof ' + n)); s.on('error', (e) => console.log('error ' + e.code));`;
    const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    return new Promise((resolve) => child.on('close', () => resolve(out.trim())));
  }

  it('is closed before any byte, with one warning line; --peer-uids 65534 lets it in', async () => {
    const path = rig.sock();
    const c = await rig.ready(['-S', path]);
    chmodSync(path, 0o666); // widened by accident: the uid check is what is left
    expect(await nobodyConnects(path)).to.equal('eof 0');
    const line = await c.line(/refused/);
    expect(line).to.match(/^vshm-server: warning: connection refused: client pid [0-9]+ runs as uid 65534, not as us \(uid 0\) or root \(--peer-uids 65534 or VSHM_PEER_UIDS=65534 trusts it\)$/);

    const path2 = rig.sock();
    await rig.ready(['-S', path2, '--peer-uids', '65534']);
    chmodSync(path2, 0o666);
    expect(await nobodyConnects(path2)).to.match(/^data [0-9]+$/);
    removeIfExists(path2);
  });
});
