/**
 * The NBD server against a hand-written client (net.Socket) that misbehaves on purpose: truncated
 * handshake, bad magic, unknown options, oversize and out-of-range requests, a client vanishing
 * with requests in flight, a flood of connections past maxConnections. The server must answer with
 * the protocol's errors or close that one connection — never crash, never acknowledge a write it
 * did not fully apply — and keep serving.
 */
import { expect } from 'chai';
import net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MAX_CONNECTIONS, NbdServer } from '../src/nbd-server.js';
import { BlkRequestType as BlkType } from 'virtio-spec-types';
import {
  NBD_IHAVEOPT, NBD_MAGIC, NBD_OPT_REPLY_MAGIC, NBD_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC, NbdCmd, NbdCmdFlag, NbdErr, NbdFlag, NbdOpt, NbdRep,
} from '../src/nbd-protocol.js';
import { BlockDriver } from '../src/driver.js';
import { blkRig, type BlkRig } from './fixtures/blk-loopback.js';
import { rejects } from './fixtures/rejects.js';
import { NbdTestSocket } from './fixtures/nbd-test-socket.js';
import { until } from '../../transport/test/fixtures/until.js';

const MiB = 1024 * 1024;

/** A raw NBD client: exact-length reads, and whether the server closed the connection. */
class RawClient extends NbdTestSocket {
  async greeting(flags = 3): Promise<void> {
    const g = await this.read(18);
    expect(g.readBigUInt64BE(0)).to.equal(NBD_MAGIC);
    expect(g.readBigUInt64BE(8)).to.equal(NBD_IHAVEOPT);
    const f = Buffer.alloc(4);
    f.writeUInt32BE(flags);
    this.write(f);
  }

  option(opt: number, data: Buffer = Buffer.alloc(0), magic = NBD_IHAVEOPT): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(magic, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optReply(): Promise<{ opt: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    expect(h.readBigUInt64BE(0)).to.equal(NBD_OPT_REPLY_MAGIC);
    const data = await this.read(h.readUInt32BE(16));
    return { opt: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  /** GO with the default export; returns size and transmission flags. */
  async go(name = ''): Promise<{ size: number; flags: number }> {
    this.option(NbdOpt.GO, goData(name, []));
    let size = -1;
    let flags = -1;
    for (;;) {
      const r = await this.optReply();
      if (r.type === NbdRep.ACK) break;
      expect(r.type).to.equal(NbdRep.INFO);
      if (r.data.readUInt16BE(0) === 0) {
        size = Number(r.data.readBigUInt64BE(2));
        flags = r.data.readUInt16BE(10);
      }
    }
    return { size, flags };
  }

  request(type: number, offset: number, length: number, cookie: number, flags = 0, payload?: Buffer): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(BigInt(cookie), 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.write(payload === undefined ? h : Buffer.concat([h, payload]));
  }

  async reply(readLen = 0): Promise<{ error: number; cookie: number; data: Buffer }> {
    const h = await this.read(16);
    expect(h.readUInt32BE(0)).to.equal(NBD_SIMPLE_REPLY_MAGIC);
    const error = h.readUInt32BE(4);
    const data = error === 0 && readLen > 0 ? await this.read(readLen) : Buffer.alloc(0);
    return { error, cookie: Number(h.readBigUInt64BE(8)), data };
  }
}

function goData(name: string, infos: number[]): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i));
  return b;
}

describe('NBD server against hostile clients', function () {
  this.timeout(30000);
  let rig: BlkRig;
  let server: NbdServer;
  let dir: string;
  let path: string;
  const clients: RawClient[] = [];
  const connect = (halfOpen = false): RawClient => {
    const c = new RawClient(path, halfOpen);
    clients.push(c);
    return c;
  };

  async function start(opts: { readOnly?: boolean; exportName?: string } = {}): Promise<void> {
    rig = await blkRig({ capacity: 8 * MiB, queueSize: 16, indirect: true, readOnly: opts.readOnly });
    server = new NbdServer(rig.driver, { path, exportName: opts.exportName ?? 'disk' });
    await server.listen();
  }

  /** The server still serves: a fresh client reads and writes. */
  async function stillServes(): Promise<void> {
    const c = connect();
    await c.greeting();
    await c.go();
    c.request(NbdCmd.READ, 0, 512, 77);
    const r = await c.reply(512);
    expect(r).to.include({ error: 0, cookie: 77 });
    c.request(NbdCmd.DISC, 0, 0, 0);
    await c.waitClosed();
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-nbdh-'));
    path = join(dir, 'nbd.sock');
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await server.close();
    await rig.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('truncated handshake (2 of 4 flag bytes, then gone): no crash, others served', async () => {
    await start();
    const c = connect();
    await c.read(18);
    c.write(Buffer.from([0, 0]));
    c.sock.end();
    await c.waitClosed();
    await stillServes();
  });

  it('a client that never finishes the handshake is dropped after handshakeTimeoutMs', async () => {
    rig = await blkRig({ capacity: MiB });
    server = new NbdServer(rig.driver, { path, handshakeTimeoutMs: 200 });
    await server.listen();
    const c = connect();
    await c.read(18); // greeting, then silence
    await c.waitClosed();
    await stillServes(); // a prompt client is not affected
  });

  it('a client that reads no replies: the server stops reading its requests (bounded reply queue)', async function () {
    this.timeout(120_000); // 160 MiB of READs through the loopback device: slow on a loaded machine, not flaky
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    c.sock.pause(); // never read
    for (let i = 0; i < 40; i++) c.request(NbdCmd.READ, 0, 4 * MiB, i);
    // The server keeps answering until ~64 MiB of replies wait in its socket, then stops reading:
    // after some progress the driver goes idle with READs still unread in the socket.
    await until(() => rig.device.seen.length >= 160, '160 requests at the device');
    await until(() => rig.driver.inFlight === 0 && rig.driver.queued === 0, 'the driver to drain');
    const before = rig.device.seen.length;
    expect(before).to.be.below(40 * 16); // not every READ reached the device
    c.sock.resume();
    for (let i = 0; i < 40; i++) expect((await c.reply(4 * MiB)).error).to.equal(0);
  });

  it('a client that floods WRITEs faster than the device completes them: the payloads held for it stay bounded', async function () {
    this.timeout(120_000);
    await start();
    // Bytes handed to the driver and not yet settled, and their peak.
    let held = 0;
    let peak = 0;
    const write = rig.driver.write.bind(rig.driver);
    rig.driver.write = (offset: number, data: Uint8Array): Promise<void> => {
      held += data.length;
      peak = Math.max(peak, held);
      return write(offset, data).finally(() => (held -= data.length));
    };
    const c = connect();
    await c.greeting();
    await c.go();
    await until(() => server.connections === 1, 'the connection');
    const [serverSock] = (server as unknown as { conns: Set<net.Socket> }).conns;
    rig.device.hold = true; // the device completes nothing for now
    // 40 WRITEs of 2 MiB (80 MiB), fewer than MAX_INFLIGHT: all of it reaches the server process.
    const n = 40;
    const size = 2 * MiB;
    for (let i = 0; i < n; i++) c.request(NbdCmd.WRITE, (i % 4) * size, size, i + 1, 0, Buffer.alloc(size, i + 1));
    await until(() => serverSock.bytesRead === c.sock.bytesWritten, 'the server to have read every byte');
    await until(() => rig.device.heldCount > 0, 'the device to hold requests');
    expect(peak, `peak ${peak / MiB} MiB held in the driver`).to.be.at.most(64 * MiB + size);
    rig.device.release();
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) {
      const r = await c.reply();
      expect(r.error).to.equal(0);
      seen.add(r.cookie);
    }
    expect(seen.size).to.equal(n);
    expect(held).to.equal(0);
  });

  it('a client that sends tiny requests and reads no replies: the replies queued for it stay few (each costs ~300 bytes of heap)', async function () {
    this.timeout(120_000);
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    await until(() => server.connections === 1, 'the connection');
    const [serverSock] = (server as unknown as { conns: Set<net.Socket> }).conns;
    c.sock.pause(); // never read
    // 200 000 CACHE requests (not advertised: each an immediate 16-byte EINVAL reply), 5.6 MB.
    const n = 200_000;
    const reqs = Buffer.alloc(28 * n);
    for (let i = 0; i < n; i++) {
      reqs.writeUInt32BE(NBD_REQUEST_MAGIC, 28 * i);
      reqs.writeUInt16BE(NbdCmd.CACHE, 28 * i + 6);
      reqs.writeBigUInt64BE(BigInt(i), 28 * i + 8);
      reqs.writeUInt32BE(512, 28 * i + 24);
    }
    c.write(reqs);
    await until(() => serverSock.bytesRead === c.sock.bytesWritten, 'the server to have read every byte');
    await until(() => serverSock.writableLength > 0, 'replies to queue up');
    // 64 MiB of 16-byte replies would be 4 million queued writes, about 1 GiB of heap.
    expect(serverSock.writableLength / 16, 'replies queued').to.be.at.most(20_000);
    c.sock.resume();
    for (let i = 0; i < n; i++) expect((await c.reply()).error).to.equal(NbdErr.EINVAL);
  });

  it('unknown client flags and non-fixed-newstyle clients are closed', async () => {
    await start();
    const a = connect();
    await a.greeting(0x80000001);
    await a.waitClosed();
    const b = connect();
    await b.greeting(0);
    await b.waitClosed();
    await stillServes();
  });

  it('bad option magic closes; an option longer than 64 KiB closes before reading it', async () => {
    await start();
    const a = connect();
    await a.greeting();
    a.option(NbdOpt.GO, goData('', []), 0x1234n);
    await a.waitClosed();
    const b = connect();
    await b.greeting();
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(NBD_IHAVEOPT, 0);
    h.writeUInt32BE(NbdOpt.GO, 8);
    h.writeUInt32BE(0xffffffff, 12);
    b.write(h);
    await b.waitClosed();
    await stillServes();
  });

  it('unknown options and STRUCTURED_REPLY get ERR_UNSUP; negotiation goes on', async () => {
    await start();
    const c = connect();
    await c.greeting();
    c.option(99, Buffer.from('junk'));
    expect((await c.optReply()).type).to.equal(NbdRep.ERR_UNSUP);
    c.option(NbdOpt.STRUCTURED_REPLY);
    expect((await c.optReply()).type).to.equal(NbdRep.ERR_UNSUP);
    const { size, flags } = await c.go('disk');
    expect(size).to.equal(8 * MiB);
    for (const f of [NbdFlag.HAS_FLAGS, NbdFlag.SEND_FLUSH, NbdFlag.SEND_FUA, NbdFlag.SEND_WRITE_ZEROES, NbdFlag.CAN_MULTI_CONN]) expect(flags & f).to.equal(f);
    expect(flags & NbdFlag.READ_ONLY).to.equal(0);
    expect(flags & NbdFlag.SEND_TRIM).to.equal(0); // the fixture offers no DISCARD here
  });

  it('LIST names the export; INFO of an unknown name is ERR_UNKNOWN; malformed GO is ERR_INVALID; ABORT acks and closes', async () => {
    await start();
    const c = connect();
    await c.greeting();
    c.option(NbdOpt.LIST);
    const s = await c.optReply();
    expect(s.type).to.equal(NbdRep.SERVER);
    expect(s.data.subarray(4, 4 + s.data.readUInt32BE(0)).toString()).to.equal('disk');
    expect((await c.optReply()).type).to.equal(NbdRep.ACK);
    c.option(NbdOpt.LIST, Buffer.from('x'));
    expect((await c.optReply()).type).to.equal(NbdRep.ERR_INVALID);
    c.option(NbdOpt.INFO, goData('nope', []));
    expect((await c.optReply()).type).to.equal(NbdRep.ERR_UNKNOWN);
    c.option(NbdOpt.GO, Buffer.from([0, 0, 0, 50, 1]));
    expect((await c.optReply()).type).to.equal(NbdRep.ERR_INVALID);
    c.option(NbdOpt.ABORT);
    expect((await c.optReply()).type).to.equal(NbdRep.ACK);
    await c.waitClosed();
  });

  it('EXPORT_NAME: the old-style answer for a known name, closed for an unknown one', async () => {
    await start();
    const a = connect();
    await a.greeting();
    a.option(NbdOpt.EXPORT_NAME, Buffer.from('disk'));
    const r = await a.read(10); // NO_ZEROES negotiated: no 124 zero bytes
    expect(Number(r.readBigUInt64BE(0))).to.equal(8 * MiB);
    a.request(NbdCmd.READ, 512, 512, 5);
    expect((await a.reply(512)).error).to.equal(0);
    const b = connect();
    await b.greeting(1); // without NO_ZEROES
    b.option(NbdOpt.EXPORT_NAME, Buffer.from('other'));
    await b.waitClosed();
    const c = connect();
    await c.greeting(1);
    c.option(NbdOpt.EXPORT_NAME, Buffer.alloc(0)); // the default name
    expect((await c.read(134)).length).to.equal(134);
  });

  it('oversize requests: READ > 32 MiB gets EOVERFLOW; WRITE > 32 MiB closes, writing nothing', async () => {
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    c.request(NbdCmd.READ, 0, 33 * MiB, 1);
    expect(await c.reply()).to.include({ error: NbdErr.EOVERFLOW, cookie: 1 });
    c.request(NbdCmd.WRITE, 0, 33 * MiB, 2, 0, Buffer.alloc(4096, 0xee));
    await c.waitClosed();
    expect(rig.device.disk.every((b) => b === 0)).to.equal(true);
    await stillServes();
  });

  it('out of range: READ → EINVAL, WRITE / WRITE_ZEROES → ENOSPC (nothing written); misaligned → EINVAL; unknown command → EINVAL', async () => {
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    c.request(NbdCmd.READ, 8 * MiB - 512, 1024, 1);
    expect((await c.reply()).error).to.equal(NbdErr.EINVAL);
    c.request(NbdCmd.WRITE, 8 * MiB - 512, 1024, 2, 0, Buffer.alloc(1024, 0xcc));
    expect((await c.reply()).error).to.equal(NbdErr.ENOSPC);
    c.request(NbdCmd.WRITE_ZEROES, 2 ** 40, 512, 3);
    expect((await c.reply()).error).to.equal(NbdErr.ENOSPC);
    c.request(NbdCmd.WRITE, 100, 512, 4, 0, Buffer.alloc(512, 0xcc));
    expect((await c.reply()).error).to.equal(NbdErr.EINVAL);
    c.request(NbdCmd.READ, 0, 100, 5);
    expect((await c.reply()).error).to.equal(NbdErr.EINVAL);
    c.request(42, 0, 0, 6);
    expect((await c.reply()).error).to.equal(NbdErr.EINVAL);
    c.request(NbdCmd.TRIM, 0, 512, 7); // TRIM not advertised
    expect((await c.reply()).error).to.equal(NbdErr.EINVAL);
    expect(rig.device.disk.every((b) => b === 0)).to.equal(true);
    // Still usable on the same connection.
    c.request(NbdCmd.WRITE, 0, 512, 8, NbdCmdFlag.FUA, Buffer.alloc(512, 1));
    expect(await c.reply()).to.include({ error: 0, cookie: 8 });
    expect(rig.device.flushes).to.equal(1); // FUA → flush before the reply
  });

  it('command flags: an unknown flag, or one not documented for the command or not negotiated, gets EINVAL and nothing is applied; FUA is accepted on any command', async () => {
    await start();
    rig.device.disk.fill(0x77, 0, 8192);
    const c = connect();
    await c.greeting();
    await c.go();
    c.request(NbdCmd.WRITE, 0, 512, 1, 1 << 9, Buffer.alloc(512, 1)); // unknown flag
    expect(await c.reply()).to.include({ error: NbdErr.EINVAL, cookie: 1 });
    c.request(NbdCmd.WRITE, 0, 512, 2, NbdCmdFlag.NO_HOLE, Buffer.alloc(512, 2)); // NO_HOLE is for WRITE_ZEROES
    expect(await c.reply()).to.include({ error: NbdErr.EINVAL, cookie: 2 });
    c.request(NbdCmd.READ, 0, 512, 3, NbdCmdFlag.DF); // SEND_DF not advertised (no structured replies)
    expect(await c.reply()).to.include({ error: NbdErr.EINVAL, cookie: 3 });
    c.request(NbdCmd.WRITE_ZEROES, 0, 4096, 4, NbdCmdFlag.FAST_ZERO); // SEND_FAST_ZERO not advertised
    expect(await c.reply()).to.include({ error: NbdErr.EINVAL, cookie: 4 });
    c.request(NbdCmd.FLUSH, 0, 0, 5, NbdCmdFlag.REQ_ONE); // REQ_ONE is for BLOCK_STATUS
    expect(await c.reply()).to.include({ error: NbdErr.EINVAL, cookie: 5 });
    expect(rig.device.disk.subarray(0, 8192).every((b) => b === 0x77)).to.equal(true);
    expect(rig.device.flushes).to.equal(0);
    c.request(NbdCmd.READ, 0, 512, 6, NbdCmdFlag.FUA);
    expect(await c.reply(512)).to.include({ error: 0, cookie: 6 });
    c.request(NbdCmd.WRITE_ZEROES, 0, 4096, 7, NbdCmdFlag.NO_HOLE | NbdCmdFlag.FUA);
    expect(await c.reply()).to.include({ error: 0, cookie: 7 });
    c.request(NbdCmd.FLUSH, 0, 0, 8, NbdCmdFlag.FUA);
    expect(await c.reply()).to.include({ error: 0, cookie: 8 });
    expect(rig.device.disk.subarray(0, 4096).every((b) => b === 0)).to.equal(true);
    expect(rig.device.disk[4096]).to.equal(0x77);
  });

  it('bad request magic closes the connection', async () => {
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    c.write(Buffer.alloc(28, 0x41));
    await c.waitClosed();
    await stillServes();
  });

  it('a write payload cut short by a vanishing client is never applied', async () => {
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    const h = Buffer.alloc(28);
    h.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(NbdCmd.WRITE, 6);
    h.writeUInt32BE(65536, 24);
    c.write(Buffer.concat([h, Buffer.alloc(30000, 0xdd)]));
    c.sock.end();
    await c.waitClosed();
    await stillServes();
    expect(rig.device.seen.filter((s) => s.type === BlkType.OUT)).to.have.length(0);
    expect(rig.device.disk.every((b) => b === 0)).to.equal(true);
  });

  it('a client vanishing with requests in flight: no crash, the driver drains, others served', async () => {
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    rig.device.hold = true;
    for (let i = 0; i < 20; i++) c.request(NbdCmd.WRITE, i * 4096, 4096, i, 0, Buffer.alloc(4096, i + 1));
    await until(() => rig.device.heldCount === 16, 'the device to hold 16 requests');
    c.destroy();
    await c.waitClosed();
    rig.device.release();
    await until(() => rig.driver.inFlight === 0 && rig.driver.queued === 0, 'the driver to drain');
    await stillServes();
  });

  it('DISC with requests in flight: their replies come first, then the close', async () => {
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    rig.device.hold = true;
    c.request(NbdCmd.WRITE, 0, 512, 1, 0, Buffer.alloc(512, 9));
    c.request(NbdCmd.DISC, 0, 0, 2);
    await until(() => rig.device.heldCount === 1, 'the device to hold 1 request');
    rig.device.release();
    expect(await c.reply()).to.include({ error: 0, cookie: 1 });
    await c.waitClosed();
    expect(rig.device.disk[0]).to.equal(9);
  });

  it('DISC, then the client half-closes with a write in flight (as libnbd does): the reply still comes, then the close', async () => {
    await start();
    const c = connect(true);
    await c.greeting();
    await c.go();
    rig.device.hold = true;
    c.request(NbdCmd.WRITE, 0, 512, 1, 0, Buffer.alloc(512, 7));
    c.request(NbdCmd.DISC, 0, 0, 2);
    c.sock.end(); // shutdown(SHUT_WR): still reading
    await until(() => rig.device.heldCount === 1, 'the device to hold 1 request');
    rig.device.release();
    expect(await c.reply()).to.include({ error: 0, cookie: 1 });
    await c.waitClosed();
    expect(rig.device.disk[0]).to.equal(7);
  });

  it('a client that half-closes without DISC, requests in flight: their replies come, then the close; a cut-off request is not applied', async () => {
    await start();
    const c = connect(true);
    await c.greeting();
    await c.go();
    rig.device.hold = true;
    c.request(NbdCmd.WRITE, 0, 512, 1, 0, Buffer.alloc(512, 5));
    c.request(NbdCmd.READ, 4096, 512, 2);
    const h = Buffer.alloc(28);
    h.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(NbdCmd.WRITE, 6);
    h.writeBigUInt64BE(8192n, 16);
    h.writeUInt32BE(4096, 24);
    c.write(Buffer.concat([h, Buffer.alloc(1000, 0xdd)])); // a WRITE cut short by the EOF
    c.sock.end();
    await until(() => rig.device.heldCount === 2, 'the device to hold 2 requests');
    rig.device.release();
    const got: number[][] = [];
    for (let i = 0; i < 2; i++) {
      const h = await c.read(16);
      const cookie = Number(h.readBigUInt64BE(8));
      if (cookie === 2) await c.read(512); // the READ's data
      got.push([cookie, h.readUInt32BE(4)]);
    }
    expect(got.sort((x, y) => x[0] - y[0])).to.deep.equal([[1, 0], [2, 0]]);
    await c.waitClosed();
    expect(rig.device.disk[0]).to.equal(5);
    expect(rig.device.disk.subarray(8192, 8192 + 4096).every((b) => b === 0)).to.equal(true);
  });

  it('bytes the server never reads after DISC do not turn its close into a reset: the client gets the reply, then EOF (lingering close)', async () => {
    await start();
    const c = connect(true);
    const errors: string[] = [];
    c.sock.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    await c.greeting();
    await c.go();
    rig.device.hold = true;
    c.request(NbdCmd.WRITE, 0, 512, 1, 0, Buffer.alloc(512, 4));
    c.request(NbdCmd.DISC, 0, 0, 2);
    await until(() => rig.device.heldCount === 1, 'the device to hold the write');
    // More than the server buffers before it pauses the socket: the rest stays in the kernel,
    // unread, when the server closes. A socket closed with unread bytes resets its peer.
    const junk = Buffer.alloc(40 * MiB, 0x5a);
    const written = new Promise<void>((resolve) => c.sock.write(junk, () => resolve()));
    rig.device.release();
    expect(await c.reply()).to.include({ error: 0, cookie: 1 });
    await until(() => c.eof, 'the EOF at the client');
    await written;
    c.sock.end();
    await c.waitClosed();
    expect(errors).to.deep.equal([]);
    expect(rig.device.disk[0]).to.equal(4);
  });

  it('DISC from a client that keeps its end open: the server closes the connection all the same', async () => {
    await start();
    const c = connect(true);
    await c.greeting();
    await c.go();
    await until(() => server.connections === 1, 'the connection');
    c.request(NbdCmd.DISC, 0, 0, 1);
    await until(() => server.connections === 0, 'the server to close the connection', 5000);
    await until(() => c.eof, 'the EOF at the client');
  });

  it('ABORT from a client that keeps its end open: acknowledged, then the server closes the connection', async () => {
    await start();
    const c = connect(true);
    await c.greeting();
    await until(() => server.connections === 1, 'the connection');
    c.option(NbdOpt.ABORT);
    expect((await c.optReply()).type).to.equal(NbdRep.ACK);
    await until(() => server.connections === 0, 'the server to close the connection', 5000);
    await until(() => c.eof, 'the EOF at the client');
  });

  it('server close with a write in flight: the reply still comes, then the close (the spec: wait for requests in flight)', async () => {
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    rig.device.hold = true;
    c.request(NbdCmd.WRITE, 0, 512, 1, 0, Buffer.alloc(512, 6));
    await until(() => rig.device.heldCount === 1, 'the device to hold 1 request');
    const closing = server.close();
    rig.device.release();
    expect(await c.reply()).to.include({ error: 0, cookie: 1 });
    await c.waitClosed();
    await closing;
    expect(rig.device.disk[0]).to.equal(6);
  });

  it('server close with a request the device never completes: the connection is dropped after shutdownGraceMs', async () => {
    rig = await blkRig({ capacity: MiB, queueSize: 16, indirect: true });
    server = new NbdServer(rig.driver, { path, shutdownGraceMs: 200 });
    await server.listen();
    const c = connect();
    await c.greeting();
    await c.go();
    rig.device.hold = true;
    c.request(NbdCmd.WRITE, 0, 512, 1, 0, Buffer.alloc(512, 6));
    await until(() => rig.device.heldCount === 1, 'the device to hold 1 request');
    await server.close();
    await c.waitClosed();
    expect(server.connections).to.equal(0);
    rig.device.release();
  });

  it('close() while listen() binds: listen() rejects CLOSED, nothing listens, the socket file is gone (stop 28)', async () => {
    rig = await blkRig({ capacity: MiB, queueSize: 16, indirect: true });
    server = new NbdServer(rig.driver, { path });
    const listening = server.listen();
    await server.close();
    await rejects(listening, 'VSHM_ERR_CLOSED');
    expect(existsSync(path)).to.equal(false);
    expect(server['server']).to.equal(null);
    await rejects(server.listen(), 'VSHM_ERR_CLOSED'); // closed for good
  });

  it('close() while listen() waits for a device that never comes: listen() rejects CLOSED at once, nothing listens', async () => {
    rig = await blkRig({ capacity: MiB, queueSize: 16, indirect: true });
    const driver = new BlockDriver(); // no device behind it: whenReady() never resolves
    const s = new NbdServer(driver, { path });
    server = s;
    const listening = s.listen();
    await s.close();
    await rejects(listening, 'VSHM_ERR_CLOSED');
    expect(existsSync(path)).to.equal(false);
    driver.close();
  });

  it('pipelined READs of two sizes, replies from reused buffers: every reply holds its own offset\'s bytes', async () => {
    await start();
    const disk = rig.device.disk;
    for (let i = 0; i < disk.length; i += 4) disk.writeUInt32LE((i * 2654435761) >>> 0, i);
    const c = connect();
    await c.greeting();
    await c.go();
    // Rounds of many reads in flight at once; later rounds reuse the buffers of earlier replies.
    for (const size of [64 * 1024, 4096, 64 * 1024, 4096]) {
      const n = 120;
      const at = new Map<number, number>();
      for (let k = 0; k < n; k++) {
        const offset = ((k * 7919 * 512) % (disk.length - size)) & ~511;
        at.set(k + 1, offset);
        c.request(NbdCmd.READ, offset, size, k + 1);
      }
      for (let k = 0; k < n; k++) {
        const r = await c.reply(size);
        expect(r.error).to.equal(0);
        const offset = at.get(r.cookie)!;
        expect(r.data.equals(disk.subarray(offset, offset + size)), `cookie ${r.cookie} at ${offset}`).to.equal(true);
        at.delete(r.cookie);
      }
      expect(at.size).to.equal(0);
    }
  });

  it('device loss with writes in flight: EIO replies (never an acknowledgement); the next back-end serves', async () => {
    await start();
    const c = connect();
    await c.greeting();
    await c.go();
    rig.device.hold = true;
    c.request(NbdCmd.WRITE, 0, 4096, 1, 0, Buffer.alloc(4096, 1));
    c.request(NbdCmd.WRITE, 4096, 4096, 2, NbdCmdFlag.FUA, Buffer.alloc(4096, 2));
    await until(() => rig.device.heldCount === 2, 'the device to hold 2 requests');
    await rig.backend.close(); // the back-end vanishes with both writes held
    const replies = [await c.reply(), await c.reply()];
    expect(replies.map((r) => r.error)).to.deep.equal([NbdErr.EIO, NbdErr.EIO]);
    expect(replies.map((r) => r.cookie).sort()).to.deep.equal([1, 2]);
    const { VirtioBackend } = await import('@vshm/transport');
    rig.device.hold = false;
    rig.backend = new VirtioBackend(rig.be, rig.device);
    rig.backend.start();
    await rig.driver.whenReady();
    c.request(NbdCmd.WRITE, 8192, 512, 3, 0, Buffer.alloc(512, 3));
    expect(await c.reply()).to.include({ error: 0, cookie: 3 });
    expect(rig.device.disk[8192]).to.equal(3);
  });

  it('device errors become EIO; a read-only device is READ_ONLY and writes get EPERM', async () => {
    await start({ readOnly: true });
    const c = connect();
    await c.greeting();
    const { flags } = await c.go();
    expect(flags & NbdFlag.READ_ONLY).to.equal(NbdFlag.READ_ONLY);
    c.request(NbdCmd.WRITE, 0, 512, 1, 0, Buffer.alloc(512, 1));
    expect((await c.reply()).error).to.equal(NbdErr.EPERM);
    c.request(NbdCmd.WRITE_ZEROES, 0, 512, 2);
    expect((await c.reply()).error).to.equal(NbdErr.EPERM);
    rig.device.failTypes.add(BlkType.IN);
    c.request(NbdCmd.READ, 0, 512, 3);
    expect((await c.reply()).error).to.equal(NbdErr.EIO);
    c.request(NbdCmd.FLUSH, 0, 0, 4);
    expect((await c.reply()).error).to.equal(0);
  });

  it('a device reporting blk_size 2^31: served with 512-byte blocks, the sizes consistent (preferred ≤ maximum), I/O works', async () => {
    rig = await blkRig({ capacity: 64 * MiB, queueSize: 16, indirect: true, blkSize: 2 ** 31 }, {}, 8 * MiB);
    server = new NbdServer(rig.driver, { path, exportName: 'disk' });
    await server.listen();
    const c = connect();
    await c.greeting();
    c.option(NbdOpt.GO, goData('', [3])); // NBD_INFO_BLOCK_SIZE
    let sizes: number[] = [];
    for (;;) {
      const r = await c.optReply();
      if (r.type === NbdRep.ACK) break;
      expect(r.type).to.equal(NbdRep.INFO);
      if (r.data.readUInt16BE(0) === 3) sizes = [r.data.readUInt32BE(2), r.data.readUInt32BE(6), r.data.readUInt32BE(10)];
    }
    expect(sizes).to.deep.equal([512, 4096, 32 * MiB]);
    c.request(NbdCmd.WRITE, 512, 512, 1, 0, Buffer.alloc(512, 7));
    expect(await c.reply()).to.include({ error: 0, cookie: 1 });
    expect(rig.device.disk[512]).to.equal(7);
  });

  /** `n` clients that were closed with no byte sent (refused at accept). */
  async function refusedAll(cs: RawClient[]): Promise<void> {
    for (const c of cs) {
      let err: unknown = null;
      await c.read(1).catch((e: unknown) => (err = e));
      expect(String(err)).to.match(/ended the connection with 0 of 1 bytes/);
    }
  }

  it('a flood of connections: past maxConnections each is closed at once without a greeting; those served work; a freed slot serves again', async () => {
    rig = await blkRig({ capacity: 8 * MiB, queueSize: 16, indirect: true });
    server = new NbdServer(rig.driver, { path, exportName: 'disk', maxConnections: 3 });
    let refused = 0;
    server.on('refused', () => refused++);
    await server.listen();
    const kept = [connect(), connect(), connect()];
    for (const c of kept) await c.greeting();
    await until(() => server.connections === 3, 'the three connections');
    const extra = Array.from({ length: 100 }, () => connect());
    await refusedAll(extra);
    expect(refused).to.equal(100);
    expect(server.connections).to.equal(3);
    // The three served ones are untouched by the flood.
    await kept[0].go();
    kept[0].request(NbdCmd.WRITE, 0, 512, 1, 0, Buffer.alloc(512, 9));
    expect(await kept[0].reply()).to.include({ error: 0, cookie: 1 });
    // One leaves: its slot serves the next client.
    kept[1].destroy();
    await until(() => server.connections === 2, 'the server to see the client leave');
    await stillServes();
    expect(rig.device.disk[0]).to.equal(9);
  });

  it(`the default limit is ${DEFAULT_MAX_CONNECTIONS} connections`, async () => {
    await start();
    const kept = Array.from({ length: DEFAULT_MAX_CONNECTIONS }, () => connect());
    for (const c of kept) await c.greeting();
    await until(() => server.connections === DEFAULT_MAX_CONNECTIONS, 'every connection');
    await refusedAll([connect(), connect()]);
    expect(server.connections).to.equal(DEFAULT_MAX_CONNECTIONS);
  });

  it('maxConnections must be an integer from 1 to 1024', () => {
    for (const bad of [0, -1, 1.5, 1025, Number.NaN]) {
      expect(() => new NbdServer({} as never, { path, maxConnections: bad })).to.throw(/maxConnections/);
    }
  });

  it('a live socket path is refused with EADDRINUSE, a path that is no socket with EEXIST', async () => {
    await start();
    const other = new NbdServer(rig.driver, { path });
    let code: unknown;
    await other.listen().catch((e: { code?: unknown }) => (code = e.code));
    expect(code).to.equal('EADDRINUSE');
    const file = join(dir, 'plain');
    writeFileSync(file, 'x');
    const third = new NbdServer(rig.driver, { path: file });
    await third.listen().catch((e: { code?: unknown }) => (code = e.code));
    expect(code).to.equal('EEXIST');
    expect(readFileSync(file, 'utf8')).to.equal('x');
    await stillServes();
  });
});
