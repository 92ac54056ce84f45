/**
 * The NBD server over a device whose logical block size is above 512 (VIRTIO_BLK_F_BLK_SIZE 4096:
 * the product BlockDevice with `blockSize: 4096`, which fails misaligned requests with IOERR as
 * QEMU's virtio-blk does). The export must advertise that block size as its minimum, so that
 * clients align (qemu does read-modify-write below it), and answer a misaligned request with
 * EINVAL before it reaches the device; a client that does not ask for the sizes is refused up
 * front (stop 22: NBD_REP_ERR_BLOCK_SIZE_REQD to INFO / GO, EXPORT_NAME closed). qemu-io parts
 * are skipped, with the reason, only when the binary is missing.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { VirtioBackend, VirtioFrontend } from '@vshm/transport';
import { createLoopbackPair } from '@vshm/transport/testing';
import { BlockDevice } from '../../backend-blk/src/device.js';
import { openImage, type ImageFile } from '../../backend-blk/src/image.js';
import { TempImage } from '../../backend-blk/test/fixtures/rig.js';
import { BlockDriver } from '../src/driver.js';
import { NbdServer } from '../src/nbd-server.js';
import { NBD_IHAVEOPT, NBD_REQUEST_MAGIC, NbdCmd, NbdErr, NbdInfo, NbdOpt, NbdRep } from '../src/nbd-protocol.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BLOCK = 4096;

function hasBin(b: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => existsSync(join(d, b)));
}

/** Everything a socket receives, and exact-length reads of it. */
class Conn {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private closed = false;
  constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    sock.on('error', () => undefined);
  }

  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`closed with ${this.buf.length} of ${n} bytes`);
      await new Promise<void>((r) => (this.wake = r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
}

describe('NBD server over a device with a 4096-byte logical block size', function () {
  this.timeout(60000);
  let img: TempImage;
  let image: ImageFile;
  let device: BlockDevice;
  let driver: BlockDriver;
  let frontend: VirtioFrontend;
  let backend: VirtioBackend;
  let closeLink: () => void;
  let server: NbdServer;
  let dir: string;
  let sock: string;

  beforeEach(async () => {
    img = new TempImage(8 * MiB);
    image = await openImage(img.path, {});
    device = new BlockDevice(image, await image.size(), { blockSize: BLOCK });
    driver = new BlockDriver();
    const [be, fe] = createLoopbackPair({ protocol: 0x8002, size: 16 * MiB, vectors: 3 });
    backend = new VirtioBackend(be, device);
    backend.start();
    frontend = new VirtioFrontend(fe, driver, { readyPollMs: 5 });
    frontend.start().catch(() => undefined);
    closeLink = () => {
      be.close();
      fe.close();
    };
    await driver.whenReady();
    expect(driver.blockSize).to.equal(BLOCK);
    dir = mkdtempSync(join(tmpdir(), 'vshm-nbdbs-'));
    sock = join(dir, 'nbd.sock');
    server = new NbdServer(driver, { path: sock });
    await server.listen();
  });

  afterEach(async () => {
    await server.close();
    driver.close();
    await frontend.close();
    await backend.close();
    closeLink();
    await device.drain();
    await image.close();
    img.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Handshake and GO asking for the block sizes; returns the connection and the advertised minimum. */
  async function open(): Promise<{ c: Conn; min: number }> {
    const c = new Conn(net.connect(sock));
    await c.read(18);
    c.sock.write(Buffer.from([0, 0, 0, 3]));
    const go = Buffer.alloc(16 + 8);
    go.writeBigUInt64BE(NBD_IHAVEOPT, 0);
    go.writeUInt32BE(NbdOpt.GO, 8);
    go.writeUInt32BE(8, 12);
    go.writeUInt32BE(0, 16); // default name
    go.writeUInt16BE(1, 20);
    go.writeUInt16BE(NbdInfo.BLOCK_SIZE, 22);
    c.sock.write(go);
    let min = -1;
    for (;;) {
      const h = await c.read(20);
      const data = await c.read(h.readUInt32BE(16));
      const type = h.readUInt32BE(12);
      if (type === NbdRep.ACK) break;
      expect(type).to.equal(NbdRep.INFO);
      if (data.readUInt16BE(0) === NbdInfo.BLOCK_SIZE) min = data.readUInt32BE(2);
    }
    return { c, min };
  }

  /** Send one INFO or GO for the default export asking for `infos`; resolves with its replies. */
  async function option(c: Conn, opt: number, infos: number[]): Promise<{ type: number; data: Buffer }[]> {
    const o = Buffer.alloc(16 + 6 + 2 * infos.length);
    o.writeBigUInt64BE(NBD_IHAVEOPT, 0);
    o.writeUInt32BE(opt, 8);
    o.writeUInt32BE(6 + 2 * infos.length, 12);
    o.writeUInt32BE(0, 16); // default name
    o.writeUInt16BE(infos.length, 20);
    infos.forEach((t, i) => o.writeUInt16BE(t, 22 + 2 * i));
    c.sock.write(o);
    const replies: { type: number; data: Buffer }[] = [];
    for (;;) {
      const h = await c.read(20);
      const type = h.readUInt32BE(12);
      replies.push({ type, data: await c.read(h.readUInt32BE(16)) });
      if (type !== NbdRep.INFO) return replies;
    }
  }

  /** A fixed-newstyle handshake, no option sent yet. */
  async function greeted(): Promise<Conn> {
    const c = new Conn(net.connect(sock));
    await c.read(18);
    c.sock.write(Buffer.from([0, 0, 0, 3]));
    return c;
  }

  for (const opt of [NbdOpt.INFO, NbdOpt.GO]) {
    const name = opt === NbdOpt.GO ? 'GO' : 'INFO';
    it(`${name} without NBD_INFO_BLOCK_SIZE is refused with NBD_REP_ERR_BLOCK_SIZE_REQD, the sizes sent first; asked again with it, it succeeds`, async () => {
      const c = await greeted();
      const first = await option(c, opt, []);
      const last = first[first.length - 1];
      expect(last.type).to.equal(NbdRep.ERR_BLOCK_SIZE_REQD);
      expect(last.data.toString()).to.match(/4096/); // the error says why
      const sizes = first.find((r) => r.type === NbdRep.INFO && r.data.readUInt16BE(0) === NbdInfo.BLOCK_SIZE);
      expect(sizes?.data.readUInt32BE(2)).to.equal(BLOCK);
      // Still negotiating: the same option asking for the sizes is accepted.
      const again = await option(c, opt, [NbdInfo.BLOCK_SIZE]);
      expect(again[again.length - 1].type).to.equal(NbdRep.ACK);
      c.sock.destroy();
    });
  }

  it('EXPORT_NAME (no way to learn the block size) is refused by closing the connection, no export sent', async () => {
    const c = await greeted();
    const o = Buffer.alloc(16);
    o.writeBigUInt64BE(NBD_IHAVEOPT, 0);
    o.writeUInt32BE(NbdOpt.EXPORT_NAME, 8);
    o.writeUInt32BE(0, 12);
    c.sock.write(o);
    let err: unknown = null;
    try {
      await c.read(1);
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.match(/closed with 0 of 1 bytes/);
  });

  it('advertises the device block size as the minimum; a misaligned WRITE gets EINVAL and never reaches the device', async () => {
    const { c, min } = await open();
    expect(min).to.equal(BLOCK);
    const h = Buffer.alloc(28);
    h.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(NbdCmd.WRITE, 6);
    h.writeBigUInt64BE(7n, 8);
    h.writeBigUInt64BE(512n, 16);
    h.writeUInt32BE(512, 24);
    c.sock.write(Buffer.concat([h, Buffer.alloc(512, 0x44)]));
    const r = await c.read(16);
    expect(r.readUInt32BE(4)).to.equal(NbdErr.EINVAL);
    expect(readFileSync(img.path).subarray(0, BLOCK).every((b) => b === 0)).to.equal(true);
    c.sock.destroy();
  });

  it('qemu-io writes and reads 512 bytes inside a 4096-byte block (qemu aligns by read-modify-write); the image holds them', async function () {
    if (!hasBin('qemu-io')) {
      // eslint-disable-next-line no-console
      console.log("      (skipped: 'qemu-io' is not installed — apt-get install qemu-utils)");
      this.skip();
    }
    const uri = `nbd+unix:///?socket=${sock}`;
    const { stdout } = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 512 512', '-c', 'read -P 0x33 512 512', '-c', 'read -P 0 0 512', uri]);
    expect(stdout).not.to.match(/failed|error/i);
    expect(stdout).to.match(/wrote 512\/512 bytes at offset 512/);
    const file = readFileSync(img.path);
    expect(file.subarray(512, 1024).every((b) => b === 0x33)).to.equal(true);
    expect(file.subarray(0, 512).every((b) => b === 0)).to.equal(true);
    expect(file.subarray(1024, BLOCK).every((b) => b === 0)).to.equal(true);
  });
});
