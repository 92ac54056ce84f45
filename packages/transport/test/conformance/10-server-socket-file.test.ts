/**
 * §8 item 10: the socket has mode 0600; a stale one is replaced; a live one gives exit 1 and no
 * connection (§1.9).
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import binding from '@vshm/addon';
import type { InitMessage } from '../../src/ivshmem/protocol.js';
import { IvshmemServer } from '../../src/server/server.js';
import { ServerError } from '../../src/server/socket.js';
import { tmpPath } from '../fixtures/raw-client.js';
import { useCliRig } from '../fixtures/server-cli-rig.js';
import { useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 10: socket mode 0600, stale replaced, live refused', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, join } = rig;

    it('item 10: the socket has mode 0600', async () => {
      const s = await start();
      const st = statSync(s.socketPath);
      expect(st.isSocket()).to.equal(true);
      expect(st.mode & 0o777).to.equal(0o600);
    });

    it('item 10: a stale socket is replaced', async () => {
      const socketPath = tmpPath('stale');
      rig.paths.push(socketPath);
      binding.close(binding.socketListen(socketPath, 0o600, 1));
      expect(statSync(socketPath).isSocket()).to.equal(true);
      await start({ socketPath });
      const a = await join(0, 1);
      expect(a.id).to.equal(0);
    });

    it('item 10: a live socket is refused without connecting to it', async () => {
      const live = await start();
      let connected = 0;
      live.on('peer-connected', () => connected++);
      const second = new IvshmemServer({ socketPath: live.socketPath, memorySize: 65536 });
      let err: unknown;
      await second.start().catch((e) => (err = e));
      expect(err).to.be.instanceOf(ServerError);
      expect((err as ServerError).code).to.equal('VSHM_ERR_SOCKET_IN_USE');
      // A probe would sit in the backlog ahead of this client and take ID 0 first.
      const a = await join(0, 1);
      expect(a.id).to.equal(0);
      expect(connected).to.equal(1);
      expect(statSync(live.socketPath).isSocket()).to.equal(true);
    });

    // /proc/net/unix shows the path as the live server passed it to bind(); the same file reached
    // by another spelling (a symlinked directory, '//', '.') must still count as live.
    for (const spelling of ['symlinked directory', 'double slash', 'dot component'] as const) {
      it(`item 10: a live socket bound through a ${spelling} is refused, not unlinked`, async () => {
        const dir = mkdtempSync(pathJoin(tmpdir(), 'vshm-alias-'));
        const link = `${dir}-link`;
        symlinkSync(dir, link);
        try {
          const bound = spelling === 'symlinked directory' ? `${link}/s.sock` : spelling === 'double slash' ? `${dir}//s.sock` : `${dir}/./s.sock`;
          const live = await start({ socketPath: bound });
          const second = new IvshmemServer({ socketPath: `${dir}/s.sock`, memorySize: 65536 });
          let err: unknown;
          await second.start().catch((e) => (err = e));
          if (err === undefined) await second.stop();
          expect((err as ServerError | undefined)?.code).to.equal('VSHM_ERR_SOCKET_IN_USE');
          expect(statSync(live.socketPath).isSocket()).to.equal(true);
          const a = await join(0, 1);
          expect(a.id).to.equal(0);
        } finally {
          rmSync(link, { force: true });
          rmSync(dir, { recursive: true, force: true });
        }
      });
    }

    // §1.7 unlinks the server's own socket path; a socket someone else bound there meanwhile
    // (after removing ours) is not ours to remove, as with the pid file.
    it('item 10: at shutdown a socket that replaced ours at the path is left alone', async () => {
      const s = await start();
      unlinkSync(s.socketPath);
      const other = binding.socketListen(s.socketPath, 0o600, 1);
      try {
        await s.stop();
        expect(statSync(s.socketPath).isSocket(), 'the other socket survives').to.equal(true);
      } finally {
        binding.close(other);
      }
    });

    it('item 10: a socket whose liveness cannot be decided is refused and left alone', async () => {
      const socketPath = tmpPath('undecidable');
      rig.paths.push(socketPath);
      binding.close(binding.socketListen(socketPath, 0o600, 1)); // stale, but no one can tell
      const s = new IvshmemServer({ socketPath, memorySize: 65536, procNetUnix: () => { throw new Error('no /proc'); } });
      let err: unknown;
      await s.start().catch((e) => (err = e));
      expect((err as ServerError).code).to.equal('VSHM_ERR_SOCKET_IN_USE');
      expect((err as Error).message).to.equal(`cannot decide whether ${socketPath} is in use (/proc/net/unix cannot be read: no /proc); refusing to replace it`);
      expect(statSync(socketPath).isSocket()).to.equal(true);
    });

    it('item 10: a non-socket at the path is refused and left alone', async () => {
      const socketPath = tmpPath('file');
      rig.paths.push(socketPath);
      writeFileSync(socketPath, 'keep me');
      const s = new IvshmemServer({ socketPath, memorySize: 65536 });
      let err: unknown;
      await s.start().catch((e) => (err = e));
      expect((err as ServerError).code).to.equal('VSHM_ERR_NOT_SOCKET');
      expect(readFileSync(socketPath, 'utf8')).to.equal('keep me');
    });
  });

  describe('vshm-server CLI in a child process (§1.9)', function () {
    const rig = useCliRig();
    const { sock, server, ready, connect } = rig;

    it('item 10: socket mode 0600; a stale socket is replaced', async () => {
      const path = sock();
      binding.close(binding.socketListen(path, 0o644, 1));
      await ready(['-S', path]);
      expect(statSync(path).mode & 0o777).to.equal(0o600);
      const [init] = await connect(path).take(2);
      expect((init.msg as InitMessage).id).to.equal(0);
    });

    it('item 10: a live socket gives exit 1 and the live server sees no connection', async () => {
      const path = sock();
      const live = await ready(['-v', '-S', path]);
      const second = server(['-S', path]);
      expect((await second.exit).code).to.equal(1);
      expect(second.stderrLines()).to.have.length(1);
      expect(second.stderrLines()[0]).to.match(/in use/);
      const a = connect(path);
      await a.take(2);
      await live.line(/peer 0 connected/);
      expect(live.stderrLines().filter((l) => /connected|refused|gone/.test(l))).to.deep.equal(['vshm-server: peer 0 connected']);
    });

    it('item 10: a non-socket path gives exit 1 and is left alone', async () => {
      const path = sock();
      writeFileSync(path, 'data');
      const c = server(['-S', path]);
      expect((await c.exit).code).to.equal(1);
      expect(c.stderrLines()).to.have.length(1);
      expect(readFileSync(path, 'utf8')).to.equal('data');
    });
  });
});
