/**
 * The server a peer trusts. Its socket defaults to /tmp/ivshmem_socket, a predictable name in a
 * world-writable directory: another local user can listen there first (any ivshmem server will
 * do). A back-end that joined that server would serve its disk image or console to that user,
 * who maps the same memory. So connect() reads the server's SO_PEERCRED before any byte and
 * accepts only our own uid and root unless told otherwise (`serverUids`, `VSHM_SERVER_UIDS`).
 */
import { expect } from 'chai';
import binding, { type Binding } from '@vshm/addon';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProtocolError } from '../../src/errors.js';
import { IvshmemPeer } from '../../src/ivshmem/peer.js';
import { IvshmemServer } from '../../src/server/server.js';
import { until } from '../fixtures/until.js';

/** The real binding, except that every socket's peer is `uid`. */
function credsOf(uid: number): Binding {
  return { ...binding, peerCred: () => ({ pid: 4242, uid, gid: uid }) } as Binding;
}

/** Count of fds this process has open (to see the refused socket closed). */
const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('IvshmemPeer.connect: the server must be our uid or root', function () {
  this.timeout(30_000);
  let dir: string;
  let server: IvshmemServer;
  let sock: string;
  const own = process.geteuid?.() ?? 0;
  const stranger = own === 65534 ? 65533 : 65534;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-srv-uid-'));
    sock = join(dir, 's.sock');
    server = new IvshmemServer({ socketPath: sock, memorySize: 65536 });
    await server.start();
  });
  afterEach(async () => {
    delete process.env.VSHM_SERVER_UIDS;
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a server of another uid is refused with VSHM_ERR_SERVER_UID, naming the uid and the way out; no fd stays open', async () => {
    const before = openFds();
    const err = await IvshmemPeer.connect(sock, { binding: credsOf(stranger) }).then((p) => (p.close(), null), (e: unknown) => e);
    expect(err).to.be.instanceOf(ProtocolError);
    expect((err as ProtocolError).code).to.equal('VSHM_ERR_SERVER_UID');
    expect((err as Error).message).to.include(sock).and.include(`uid ${stranger}`).and.include('VSHM_SERVER_UIDS');
    expect(openFds()).to.equal(before);
  });

  it('our own uid and root are served', async () => {
    for (const uid of [own, 0]) {
      const p = await IvshmemPeer.connect(sock, { binding: credsOf(uid) });
      p.close();
    }
  });

  it('serverUids: [uid] or "any" trusts that server; so does VSHM_SERVER_UIDS', async () => {
    (await IvshmemPeer.connect(sock, { binding: credsOf(stranger), serverUids: [stranger] })).close();
    (await IvshmemPeer.connect(sock, { binding: credsOf(stranger), serverUids: 'any' })).close();
    process.env.VSHM_SERVER_UIDS = `12,${stranger}`;
    (await IvshmemPeer.connect(sock, { binding: credsOf(stranger) })).close();
    process.env.VSHM_SERVER_UIDS = 'any';
    (await IvshmemPeer.connect(sock, { binding: credsOf(stranger) })).close();
    process.env.VSHM_SERVER_UIDS = 'twelve';
    const err = await IvshmemPeer.connect(sock, { binding: credsOf(stranger) }).then((p) => (p.close(), null), (e: unknown) => e);
    expect((err as Error).message).to.match(/VSHM_SERVER_UIDS/);
  });

  describe('a real vshm-server run by nobody (root only: setpriv)', function () {
    let child: ChildProcess | undefined;
    let ndir: string;
    afterEach(() => {
      child?.kill('SIGTERM');
      child = undefined;
      rmSync(ndir, { recursive: true, force: true });
    });
    it('is refused', async function () {
      if (own !== 0) this.skip();
      ndir = mkdtempSync(join(tmpdir(), 'vshm-srv-nobody-'));
      chownSync(ndir, 65534, 65534);
      chmodSync(ndir, 0o755);
      const path = join(ndir, 's.sock');
      const cli = new URL('../../dist/server/cli.js', import.meta.url).pathname;
      child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cli, '-F', '-S', path], { stdio: ['ignore', 'ignore', 'pipe'] });
      let said = '';
      child.stderr!.on('data', (d: Buffer) => (said += d.toString()));
      await until(() => said.includes('listening on'), 'the nobody server listening');
      const err = await IvshmemPeer.connect(path).then((p) => (p.close(), null), (e: unknown) => e);
      expect((err as ProtocolError | null)?.code).to.equal('VSHM_ERR_SERVER_UID');
    });
  });
});
