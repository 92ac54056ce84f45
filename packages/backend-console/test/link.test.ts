/**
 * link.ts: the console back-end connects through the transport's openBackend and turns its
 * refusals into one-line LinkErrors (a VshmError whose `cause` is the transport's error), against
 * a real IvshmemServer in this process.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IvshmemPeer, IvshmemServer, VirtioRoleError, VshmError } from '@vshm/transport';
import { ConsoleDevice } from '../src/device.js';
import { connectBackend, LinkError } from '../src/link.js';

describe('connectBackend (link.ts): openBackend with one-line errors', () => {
  let dir: string;
  let server: IvshmemServer | undefined;
  let socketPath: string;

  async function startServer(protocol: number): Promise<void> {
    server = new IvshmemServer({ socketPath, memorySize: 65536, maxPeers: 2, vectors: 3, protocol });
    await server.start();
  }

  async function refusal(): Promise<LinkError> {
    const err = await connectBackend(socketPath, new ConsoleDevice()).then(
      () => expect.fail('connected'),
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(LinkError).and.to.be.instanceOf(VshmError);
    return err as LinkError;
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-link-'));
    socketPath = join(dir, 'sock');
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('no server: VSHM_ERR_NO_SERVER with the start command', async () => {
    const err = await refusal();
    expect(err.code).to.equal('VSHM_ERR_NO_SERVER');
    expect(err.message).to.match(/^cannot connect to .*sock: ENOENT \(no such file or directory\); start a server: vshm-server .*-P 0x8003/);
    expect((err.cause as { code?: string }).code).to.equal('ENOENT');
  });

  it('peer 1 (something else holds peer 0): VSHM_ERR_ROLE, start the back-end first; peer 1 is freed', async () => {
    await startServer(0x8003);
    const squatter = await IvshmemPeer.connect(socketPath);
    try {
      const err = await refusal();
      expect(err.code).to.equal('VSHM_ERR_ROLE');
      expect(err.section).to.equal('4.1');
      expect(err.message).to.equal('connected as peer 1 (front-end role, protocol 0x8003): start the back-end first');
      expect(err.cause).to.be.instanceOf(VirtioRoleError);
      await new Promise<void>((resolve) => (server!.peerIds.includes(1) ? server!.once('peer-gone', () => resolve()) : resolve()));
      expect(server!.peerIds).to.deep.equal([0]);
    } finally {
      squatter.close();
    }
  });

  it('a server for another device: VSHM_ERR_DEVICE_ID, not a console', async () => {
    await startServer(0x8004);
    const err = await refusal();
    expect(err.code).to.equal('VSHM_ERR_DEVICE_ID');
    expect(err.message).to.equal('server protocol 0xC004 is virtio device 4, not a console (expected -P 0x8003)');
  });

  it('a non-virtio server: VSHM_ERR_ROLE, not virtio', async () => {
    await startServer(0x0001);
    const err = await refusal();
    expect(err.code).to.equal('VSHM_ERR_ROLE');
    expect(err.message).to.equal('server protocol 0x0001 is not virtio (expected a server started with -P 0x8003)');
  });

  it('a console server: peer 0, protocol 0xC003, orderly close frees the id', async () => {
    await startServer(0x8003);
    const link = await connectBackend(socketPath, new ConsoleDevice());
    expect([link.id, link.protocol]).to.deep.equal([0, 0xc003]);
    const gone = new Promise<void>((resolve) => server!.once('peer-gone', () => resolve()));
    await link.close();
    await gone;
    expect(server!.peerIds).to.deep.equal([]);
  });
});
