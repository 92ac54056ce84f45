/**
 * connect.ts: the §4.1 role and device-id checks, pure and against a real IvshmemServer with
 * real IvshmemPeers (in this process), and an echo round trip through openBackend/openFrontend.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IvshmemServer } from '../src/server/server.js';
import type { IvshmemPeer } from '../src/ivshmem/peer.js';
import { TransportError } from '../src/errors.js';
import { checkVirtioDevice, checkVirtioRole, openBackend, openFrontend, roleOfProtocol, VirtioRoleError } from '../src/connect.js';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { DriverQueueHandle, DriverSession, VirtioDriverOps } from '../src/virtio/device-api.js';
import type { VirtioBackend } from '../src/virtio/backend.js';
import type { VirtioFrontend } from '../src/virtio/frontend.js';
import { echoOps } from './fixtures/backend-devices.js';

function code(fn: () => void): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(TransportError);
    return (e as TransportError).code;
  }
  return undefined;
}

describe('connect: §4.1 checks (pure)', () => {
  it('derives the role from the protocol', () => {
    expect([0x0, 0x7fff, 0x8000, 0x8003, 0xbfff, 0xc000, 0xc003, 0xffff].map(roleOfProtocol)).to.deep.equal([
      null, null, 'front-end', 'front-end', 'front-end', 'back-end', 'back-end', 'back-end',
    ]);
  });

  it('gives a protocol above 0xFFFF no role: §4.1 defines only the 16-bit range (the INIT field is a u32)', () => {
    expect([0x10000, 0x18003, 0x1c003, 0xffffffff].map(roleOfProtocol)).to.deep.equal([null, null, null, null]);
    expect(() => checkVirtioRole(0x18003, 'front-end', 3)).to.throw(/protocol 0x18003 is not virtio/);
  });

  it('accepts the right role and id, refuses others with clear codes', () => {
    expect(code(() => checkVirtioRole(0xc004, 'back-end', 4))).to.equal(undefined);
    expect(code(() => checkVirtioRole(0x8004, 'front-end', 4))).to.equal(undefined);
    expect(code(() => checkVirtioRole(0xc004, 'front-end', 4))).to.equal('VSHM_ERR_ROLE');
    expect(code(() => checkVirtioRole(0x8004, 'back-end', 4))).to.equal('VSHM_ERR_ROLE');
    expect(code(() => checkVirtioRole(0x1234, 'back-end', 4))).to.equal('VSHM_ERR_ROLE');
    expect(code(() => checkVirtioRole(0xc003, 'back-end', 4))).to.equal('VSHM_ERR_DEVICE_ID');
    expect(() => checkVirtioRole(0xc004, 'front-end', 4)).to.throw(/start the back-end first/);
  });

  it('says what the server assigned on the VirtioRoleError (for callers that word their own line)', () => {
    let err: unknown;
    try {
      checkVirtioRole(0x8003, 'back-end', 3, 1);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(VirtioRoleError).and.to.be.instanceOf(TransportError);
    expect(err).to.deep.include({ code: 'VSHM_ERR_ROLE', section: '4.1', protocol: 0x8003, role: 'front-end', expected: 'back-end', deviceId: 3, peerId: 1 });
  });

  it('checkVirtioDevice adds the two-peer rule to the role check', () => {
    expect(code(() => checkVirtioDevice({ protocol: 0xc003, id: 0, maxPeers: 2 }, 'back-end', 3))).to.equal(undefined);
    expect(code(() => checkVirtioDevice({ protocol: 0xc003, id: 0, maxPeers: 3 }, 'back-end', 3))).to.equal('VSHM_ERR_ROLE');
    expect(code(() => checkVirtioDevice({ protocol: 0x8003, id: 0, maxPeers: 2 }, 'back-end', 3))).to.equal('VSHM_ERR_ROLE');
    expect(code(() => checkVirtioDevice({ protocol: 0x8004, id: 1, maxPeers: 2 }, 'front-end', 3))).to.equal('VSHM_ERR_DEVICE_ID');
  });

  it('is written once: no other source file decodes the role bits (0xC000) of a protocol', () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    const hits: string[] = [];
    for (const top of ['packages', 'examples']) {
      for (const rel of readdirSync(root + top, { recursive: true }) as string[]) {
        if (!/\/src\/.*\.ts$/.test(rel) || rel.includes('node_modules')) continue;
        if (/0xc000/i.test(readFileSync(`${root}${top}/${rel}`, 'utf8'))) hits.push(`${top}/${rel}`);
      }
    }
    expect(hits).to.deep.equal(['packages/transport/src/virtio/role.ts']);
  });
});

class EchoDriver implements VirtioDriverOps {
  readonly deviceId = 3;
  readonly features = 0n;
  q: DriverQueueHandle<(b: Buffer) => void> | null = null;
  queueCount(): number {
    return 2;
  }
  probe(s: DriverSession): void {
    this.q = s.queues[0] as DriverQueueHandle<(b: Buffer) => void>;
    this.q.onUsed = (cb, data) => cb(Buffer.from(data));
  }
  remove(): void {
    this.q = null;
  }
}

describe('connect: openBackend/openFrontend with a real server', () => {
  let dir: string;
  let server: IvshmemServer;
  let peers: IvshmemPeer[];
  let transports: (VirtioBackend | VirtioFrontend)[];

  async function startServer(protocol: number): Promise<string> {
    const socketPath = join(dir, 'sock');
    server = new IvshmemServer({ socketPath, memorySize: 65536, maxPeers: 2, vectors: 3, protocol });
    await server.start();
    return socketPath;
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-connect-'));
    peers = [];
    transports = [];
  });
  afterEach(async () => {
    for (const t of transports.reverse()) await t.close();
    for (const p of peers.reverse()) p.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a front-end that connects first, and closes its peer', async () => {
    const path = await startServer(0x8003);
    const gone = new Promise<void>((resolve) => server.once('peer-gone', () => resolve()));
    let err: unknown;
    await openFrontend(path, new EchoDriver()).catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(TransportError).with.property('code', 'VSHM_ERR_ROLE');
    await gone; // the refused peer disconnected (the server noticed)
    expect(server.peerIds).to.deep.equal([]);
    // Its id was freed: a back-end now gets peer 0.
    const { peer, transport } = await openBackend(path, echoOps());
    peers.push(peer);
    transports.push(transport);
    expect(peer.id).to.equal(0);
  });

  it('refuses a back-end for another device id', async () => {
    const path = await startServer(0x8004);
    let err: unknown;
    await openBackend(path, echoOps()).catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(TransportError).with.property('code', 'VSHM_ERR_DEVICE_ID');
  });

  it('refuses a non-virtio server', async () => {
    const path = await startServer(0);
    let err: unknown;
    await openBackend(path, echoOps()).catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(TransportError).with.property('code', 'VSHM_ERR_ROLE');
  });

  it('connects a back-end and a front-end and moves data', async () => {
    const path = await startServer(0x8003);
    const be = await openBackend(path, echoOps());
    peers.push(be.peer);
    transports.push(be.transport);
    const drv = new EchoDriver();
    const fe = await openFrontend(path, drv, { readyPollMs: 5 });
    peers.push(fe.peer);
    transports.push(fe.transport);
    await fe.ready;
    const got = await new Promise<Buffer>((resolve) => {
      drv.q!.add(Buffer.from('over the server'), 32, resolve);
      drv.q!.kick();
    });
    expect(got.toString()).to.equal('over the server');
  });

  it('spins by default, not with spin: false, and detaches on close', async () => {
    const path = await startServer(0x8003);
    const env = process.env.VSHM_SPIN_US;
    delete process.env.VSHM_SPIN_US; // the default, whatever the caller's environment says
    const be = await openBackend(path, echoOps()).finally(() => {
      if (env !== undefined) process.env.VSHM_SPIN_US = env;
    });
    peers.push(be.peer);
    const drv = new EchoDriver();
    const fe = await openFrontend(path, drv, { readyPollMs: 5, spin: false });
    peers.push(fe.peer);
    transports.push(fe.transport);
    await fe.ready;
    expect(be.transport.spinStats).to.not.equal(null);
    expect(fe.transport.spinStats).to.equal(null);
    const got = await new Promise<Buffer>((resolve) => {
      drv.q!.add(Buffer.from('spun'), 16, resolve);
      drv.q!.kick();
    });
    expect(got.toString()).to.equal('spun');
    expect(be.transport.spinStats!.sessions).to.be.greaterThan(0); // an interrupt started a spin
    await be.transport.close();
    expect(be.peer.onInterrupt).to.equal(null); // neither the spin's wrapper nor the transport's sink is left
    expect(be.transport.spinStats).to.equal(null);
  });
});
