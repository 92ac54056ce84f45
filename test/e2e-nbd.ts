/**
 * A minimal NBD client for the end-to-end tests: the fixed-newstyle handshake with
 * NBD_OPT_EXPORT_NAME (which qemu's tools refuse to send) and simple-reply commands, over a UNIX
 * socket. Waits are woken by the socket's data, never by sleeping.
 */
import { expect } from 'chai';
import { connect, type Socket } from 'node:net';

/** A minimal NBD client (oldstyle-free fixed newstyle, NBD_OPT_EXPORT_NAME): what qemu refuses to send. */
export class RawNbd {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
  }

  static async open(path: string): Promise<{ c: RawNbd; size: bigint; flags: number }> {
    const sock = connect(path);
    await new Promise<void>((res, rej) => sock.once('connect', res).once('error', rej));
    const c = new RawNbd(sock);
    await c.take(18); // NBDMAGIC, IHAVEOPT, handshake flags
    const cf = Buffer.alloc(4);
    cf.writeUInt32BE(3); // FIXED_NEWSTYLE | NO_ZEROES
    const opt = Buffer.alloc(16);
    opt.writeBigUInt64BE(0x49484156454f5054n);
    opt.writeUInt32BE(1, 8); // NBD_OPT_EXPORT_NAME, name ''
    sock.write(Buffer.concat([cf, opt]));
    const r = await c.take(10);
    return { c, size: r.readBigUInt64BE(0), flags: r.readUInt16BE(8) };
  }

  async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) await new Promise<void>((r) => (this.wake = r));
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Send one command; resolves with the error field of its simple reply. */
  async command(type: number, offset: number, length: number, data?: Buffer): Promise<number> {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(7n, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.sock.write(data === undefined ? h : Buffer.concat([h, data]));
    const r = await this.take(16);
    expect(r.readUInt32BE(0)).to.equal(0x67446698);
    return r.readUInt32BE(4);
  }

  close(): void {
    this.sock.destroy();
  }
}
