/**
 * The device behind an NBD export comes back with another configuration while clients are
 * connected (stop 29, found while extending the NBD fuzzer). NBD negotiates the size and the
 * transmission flags once: a connection keeps the export it was told — the stricter of it and the
 * device now decides — and a new connection sees the device as it is now.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VirtioBackend } from '@vshm/transport';
import { BlkRequestType as BlkType } from 'virtio-spec-types';
import { NbdServer } from '../src/nbd-server.js';
import {
  NBD_IHAVEOPT, NBD_OPT_REPLY_MAGIC, NBD_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC, NbdCmd, NbdErr, NbdFlag, NbdInfo, NbdOpt, NbdRep,
} from '../src/nbd-protocol.js';
import { blkRig, type BlkRig } from './fixtures/blk-loopback.js';
import { MemBlkDevice, type MemBlkOptions } from './fixtures/mem-blk-device.js';
import { NbdTestSocket } from './fixtures/nbd-test-socket.js';

const KiB = 1024;

class Client extends NbdTestSocket {
  /** Greeting, fixed-newstyle flags, GO with NBD_INFO_BLOCK_SIZE: the export's size, flags and minimum block. */
  async go(): Promise<{ size: number; flags: number; min: number }> {
    await this.read(18);
    this.write(Buffer.from([0, 0, 0, 3]));
    const d = Buffer.alloc(8);
    d.writeUInt16BE(1, 4);
    d.writeUInt16BE(NbdInfo.BLOCK_SIZE, 6);
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(NBD_IHAVEOPT, 0);
    h.writeUInt32BE(NbdOpt.GO, 8);
    h.writeUInt32BE(d.length, 12);
    this.write(Buffer.concat([h, d]));
    const out = { size: -1, flags: -1, min: -1 };
    for (;;) {
      const r = await this.read(20);
      expect(r.readBigUInt64BE(0)).to.equal(NBD_OPT_REPLY_MAGIC);
      const data = await this.read(r.readUInt32BE(16));
      const type = r.readUInt32BE(12);
      if (type === NbdRep.ACK) return out;
      expect(type).to.equal(NbdRep.INFO);
      if (data.readUInt16BE(0) === NbdInfo.EXPORT) {
        out.size = Number(data.readBigUInt64BE(2));
        out.flags = data.readUInt16BE(10);
      } else if (data.readUInt16BE(0) === NbdInfo.BLOCK_SIZE) out.min = data.readUInt32BE(2);
    }
  }

  /** One request and its reply's error (READ data read and returned on success). */
  async req(type: number, offset: number, length: number, payload?: Buffer): Promise<{ error: number; data: Buffer | null }> {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(9n, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.write(payload === undefined ? h : Buffer.concat([h, payload]));
    const r = await this.read(16);
    expect(r.readUInt32BE(0)).to.equal(NBD_SIMPLE_REPLY_MAGIC);
    const error = r.readUInt32BE(4);
    return { error, data: error === 0 && type === NbdCmd.READ ? await this.read(length) : null };
  }
}

describe('NBD server: the device comes back with another configuration', function () {
  this.timeout(20000);
  let rig: BlkRig | null = null;
  let server: NbdServer | null = null;
  let dir: string;
  const clients: Client[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-nbdchg-'));
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await server?.close();
    await rig?.close();
    server = null;
    rig = null;
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(opts: MemBlkOptions): Promise<void> {
    rig = await blkRig({ queueSize: 16, indirect: true, ...opts });
    server = new NbdServer(rig.driver, { path: join(dir, 'nbd.sock') });
    await server.listen();
  }

  function connect(): Client {
    const c = new Client((server as NbdServer).path);
    clients.push(c);
    return c;
  }

  /** The device goes away and `opts` comes back on a copy of its disk (resized to the new capacity). */
  async function replaceDevice(opts: MemBlkOptions): Promise<void> {
    await removeDevice();
    await addDevice(opts);
  }

  async function removeDevice(): Promise<void> {
    const r = rig as BlkRig;
    const lost = new Promise((res) => r.driver.once('lost', res));
    await r.backend.close();
    await lost;
  }

  async function addDevice(opts: MemBlkOptions): Promise<void> {
    const r = rig as BlkRig;
    const dev = new MemBlkDevice({ queueSize: 16, indirect: true, ...opts });
    r.device.disk.copy(dev.disk, 0, 0, Math.min(dev.disk.length, r.device.disk.length));
    const ready = new Promise((res) => r.driver.once('ready', res));
    r.device = dev;
    r.backend = new VirtioBackend(r.be, dev);
    r.backend.start();
    await ready;
  }

  it('grown: a connection from before is refused past the size it negotiated; a new one sees and uses the new size', async () => {
    await start({ capacity: 256 * KiB });
    const old = connect();
    expect((await old.go()).size).to.equal(256 * KiB);
    await replaceDevice({ capacity: 512 * KiB });
    expect((await old.req(NbdCmd.READ, 384 * KiB, 4096)).error).to.equal(NbdErr.EINVAL);
    expect((await old.req(NbdCmd.WRITE, 384 * KiB, 4096, Buffer.alloc(4096, 7))).error).to.equal(NbdErr.ENOSPC);
    expect((rig as BlkRig).device.disk[384 * KiB]).to.equal(0);
    expect((await old.req(NbdCmd.READ, 0, 4096)).error).to.equal(0);
    const fresh = connect();
    expect((await fresh.go()).size).to.equal(512 * KiB);
    expect((await fresh.req(NbdCmd.WRITE, 384 * KiB, 4096, Buffer.alloc(4096, 7))).error).to.equal(0);
    expect((await fresh.req(NbdCmd.READ, 384 * KiB, 4096)).data).to.deep.equal(Buffer.alloc(4096, 7));
  });

  it('shrunk: a connection from before gets EINVAL / ENOSPC past the new end, never data', async () => {
    await start({ capacity: 512 * KiB });
    const old = connect();
    await old.go();
    await replaceDevice({ capacity: 256 * KiB });
    expect((await old.req(NbdCmd.READ, 384 * KiB, 4096)).error).to.equal(NbdErr.EINVAL);
    expect((await old.req(NbdCmd.WRITE, 384 * KiB, 4096, Buffer.alloc(4096, 7))).error).to.equal(NbdErr.ENOSPC);
    const fresh = connect();
    expect((await fresh.go()).size).to.equal(256 * KiB);
  });

  it('read-only before, writable now: a connection told READ_ONLY still gets EPERM for writes; a new one may write', async () => {
    await start({ capacity: 256 * KiB, readOnly: true });
    const old = connect();
    expect((await old.go()).flags & NbdFlag.READ_ONLY).to.equal(NbdFlag.READ_ONLY);
    await replaceDevice({ capacity: 256 * KiB });
    expect((await old.req(NbdCmd.WRITE, 0, 4096, Buffer.alloc(4096, 7))).error).to.equal(NbdErr.EPERM);
    expect((await old.req(NbdCmd.WRITE_ZEROES, 0, 4096)).error).to.equal(NbdErr.EPERM);
    expect((rig as BlkRig).device.disk[0]).to.equal(0);
    const fresh = connect();
    expect((await fresh.go()).flags & NbdFlag.READ_ONLY).to.equal(0);
    expect((await fresh.req(NbdCmd.WRITE, 0, 4096, Buffer.alloc(4096, 7))).error).to.equal(0);
  });

  it('writable before, read-only now: writes of a connection from before get EPERM', async () => {
    await start({ capacity: 256 * KiB });
    const old = connect();
    await old.go();
    await replaceDevice({ capacity: 256 * KiB, readOnly: true });
    expect((await old.req(NbdCmd.WRITE, 0, 4096, Buffer.alloc(4096, 7))).error).to.equal(NbdErr.EPERM);
    const fresh = connect();
    expect((await fresh.go()).flags & NbdFlag.READ_ONLY).to.equal(NbdFlag.READ_ONLY);
  });

  it('512-byte blocks before, 4 KiB now: requests of a connection from before that are only 512-aligned get EINVAL; a new one is told 4096', async () => {
    await start({ capacity: 256 * KiB });
    const old = connect();
    expect((await old.go()).min).to.equal(512);
    await replaceDevice({ capacity: 256 * KiB, blkSize: 4096 });
    expect((await old.req(NbdCmd.READ, 512, 512)).error).to.equal(NbdErr.EINVAL);
    expect((await old.req(NbdCmd.WRITE, 512, 512, Buffer.alloc(512, 7))).error).to.equal(NbdErr.EINVAL);
    expect((await old.req(NbdCmd.READ, 4096, 4096)).error).to.equal(0);
    const fresh = connect();
    expect((await fresh.go()).min).to.equal(4096);
  });

  it('DISCARD and WRITE_ZEROES before, neither now: a connection told SEND_TRIM has its TRIMs succeed as no-ops and its WRITE_ZEROES written as zeroes', async () => {
    await start({ capacity: 256 * KiB, discard: true, writeZeroes: true });
    const old = connect();
    expect((await old.go()).flags & NbdFlag.SEND_TRIM).to.equal(NbdFlag.SEND_TRIM);
    expect((await old.req(NbdCmd.WRITE, 0, 16 * KiB, Buffer.alloc(16 * KiB, 7))).error).to.equal(0);
    await replaceDevice({ capacity: 256 * KiB });
    expect((await old.req(NbdCmd.TRIM, 0, 8 * KiB)).error).to.equal(0);
    expect((await old.req(NbdCmd.READ, 0, 8 * KiB)).data).to.deep.equal(Buffer.alloc(8 * KiB, 7)); // a TRIM may leave the data
    expect((await old.req(NbdCmd.WRITE_ZEROES, 8 * KiB, 8 * KiB)).error).to.equal(0);
    expect((await old.req(NbdCmd.READ, 8 * KiB, 8 * KiB)).data).to.deep.equal(Buffer.alloc(8 * KiB));
    const dev = (rig as BlkRig).device;
    expect(dev.seen.filter((r) => r.type === BlkType.DISCARD || r.type === BlkType.WRITE_ZEROES)).to.have.length(0);
    const fresh = connect();
    expect((await fresh.go()).flags & NbdFlag.SEND_TRIM).to.equal(0);
    expect((await fresh.req(NbdCmd.TRIM, 0, 4096)).error).to.equal(NbdErr.EINVAL); // not advertised to it
  });

  it('TRIM and WRITE_ZEROES sent while no device is there, served by one without those features: OK, and the zeroes are on the disk', async () => {
    await start({ capacity: 256 * KiB, discard: true, writeZeroes: true });
    const c = connect();
    await c.go();
    expect((await c.req(NbdCmd.WRITE, 0, 64 * KiB, Buffer.alloc(64 * KiB, 7))).error).to.equal(0);
    await removeDevice();
    const trim = c.req(NbdCmd.TRIM, 0, 16 * KiB);
    await addDevice({ capacity: 256 * KiB });
    expect((await trim).error).to.equal(0);
    await removeDevice();
    const zero = c.req(NbdCmd.WRITE_ZEROES, 16 * KiB, 32 * KiB);
    await addDevice({ capacity: 256 * KiB });
    expect((await zero).error).to.equal(0);
    const disk = (rig as BlkRig).device.disk;
    expect(disk.subarray(16 * KiB, 48 * KiB).equals(Buffer.alloc(32 * KiB))).to.equal(true);
    expect(disk.subarray(48 * KiB, 64 * KiB).equals(Buffer.alloc(16 * KiB, 7))).to.equal(true);
  });

  it('a device that offers both but answers UNSUPP: TRIM succeeds, WRITE_ZEROES falls back to written zeroes', async () => {
    await start({ capacity: 256 * KiB, discard: true, writeZeroes: true });
    const dev = (rig as BlkRig).device;
    dev.unsuppTypes.add(BlkType.DISCARD);
    dev.unsuppTypes.add(BlkType.WRITE_ZEROES);
    const c = connect();
    await c.go();
    expect((await c.req(NbdCmd.WRITE, 0, 16 * KiB, Buffer.alloc(16 * KiB, 7))).error).to.equal(0);
    expect((await c.req(NbdCmd.TRIM, 0, 8 * KiB)).error).to.equal(0);
    expect((await c.req(NbdCmd.WRITE_ZEROES, 0, 8 * KiB)).error).to.equal(0);
    expect(dev.disk.subarray(0, 8 * KiB).equals(Buffer.alloc(8 * KiB))).to.equal(true);
    expect(dev.disk.subarray(8 * KiB, 16 * KiB).equals(Buffer.alloc(8 * KiB, 7))).to.equal(true);
    expect(dev.seen.filter((r) => r.type === BlkType.WRITE_ZEROES)).to.have.length(1); // tried once, then written
  });
  it('a second server that starts listening on a driver closed while its device was away listens: told the last export, its requests fail ESHUTDOWN (NBD fuzz seed 19 of exit+timeout)', async () => {
    await start({ capacity: 256 * KiB });
    await removeDevice();
    const r = rig as BlkRig;
    r.driver.close(); // the signal path: the driver first, then the servers
    const late = new NbdServer(r.driver, { path: join(dir, 'late.sock') });
    try {
      // A failure bound, not a sleep: listen() used to wait for a device a closed driver never takes.
      let bound: NodeJS.Timeout | undefined;
      const hung = new Promise<'hung'>((res) => (bound = setTimeout(() => res('hung'), 2000)));
      const listened = await Promise.race([late.listen().then(() => 'listening' as const), hung]);
      clearTimeout(bound);
      expect(listened).to.equal('listening');
      const c = new Client(late.path);
      clients.push(c);
      expect((await c.go()).size).to.equal(256 * KiB);
      expect((await c.req(NbdCmd.READ, 0, 4096)).error).to.equal(NbdErr.ESHUTDOWN);
    } finally {
      await late.close();
    }
  });
});
