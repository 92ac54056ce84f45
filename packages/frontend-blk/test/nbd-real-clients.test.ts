/**
 * Standard NBD clients nobody here wrote — qemu-img, qemu-io (QEMU), nbdinfo, nbdcopy (libnbd)
 * — against the NBD server in this process, exporting a BlockDriver over the loopback pair and
 * the in-memory fixture device. Each test is skipped, with the reason, only when its binary is
 * missing (CI installs qemu-utils and libnbd-bin).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NbdServer } from '../src/nbd-server.js';
import { BlkRequestType as BlkType } from 'virtio-spec-types';
import { blkRig, type BlkRig } from './fixtures/blk-loopback.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const DISK = 32 * MiB;

function which(bin: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = join(dir, bin);
    if (existsSync(p)) return p;
  }
  return null;
}

function needs(ctx: Mocha.Context, ...bins: string[]): void {
  for (const b of bins) {
    if (which(b) === null) {
      // eslint-disable-next-line no-console
      console.log(`      (skipped: '${b}' is not installed — apt-get install qemu-utils libnbd-bin)`);
      ctx.skip();
    }
  }
}

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

describe('NBD server with real clients (qemu-img, qemu-io, nbdinfo, nbdcopy)', function () {
  this.timeout(120000);
  let rig: BlkRig;
  let server: NbdServer;
  let dir: string;
  let sock: string;
  let uri: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-nbd-'));
    sock = join(dir, 'disk.sock');
    uri = `nbd+unix:///?socket=${sock}`;
    rig = await blkRig({ capacity: DISK, queueSize: 64, indirect: true, discard: true, writeZeroes: true, sizeMax: 65536, segMax: 16 }, {}, 16 * MiB);
    server = new NbdServer(rig.driver, { path: sock });
    await server.listen();
  });

  afterEach(async () => {
    await server.close();
    await rig.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the socket is mode 0600', () => {
    expect(statSync(sock).mode & 0o777).to.equal(0o600);
  });

  it('qemu-img info reports the virtual size', async function () {
    needs(this, 'qemu-img');
    const { stdout } = await run('qemu-img', ['info', '--output=json', uri]);
    const info = JSON.parse(stdout) as { 'virtual-size': number; format: string };
    expect(info['virtual-size']).to.equal(DISK);
    expect(info.format).to.equal('raw');
  });

  it("qemu-io: write -P 0xab 0 1M, then read -P 0xab 0 1M verifies; the device holds the bytes", async function () {
    needs(this, 'qemu-io');
    const { stdout } = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M', uri]);
    expect(stdout).to.match(/wrote 1048576\/1048576 bytes/);
    expect(stdout).to.match(/read 1048576\/1048576 bytes/);
    expect(stdout).not.to.match(/Pattern verification failed/);
    expect(rig.device.disk.subarray(0, MiB).every((b) => b === 0xab)).to.equal(true);
    expect(rig.device.disk[MiB]).to.equal(0);
  });

  it('qemu-io random writes (with FUA, zeroes, discard), then qemu-img compare against a reference file', async function () {
    needs(this, 'qemu-io', 'qemu-img');
    const ref = Buffer.alloc(DISK);
    const cmds: string[] = [];
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 40; i++) {
      const len = (1 + rnd(128)) * 512;
      const off = rnd((DISK - len) / 512) * 512;
      const pat = 1 + rnd(254);
      const kind = rnd(6);
      if (kind === 0) {
        cmds.push('-c', `write -z ${off} ${len}`);
        ref.fill(0, off, off + len);
      } else if (kind === 2) {
        cmds.push('-c', `discard ${off} ${len}`); // TRIM: the fixture device zeroes discarded sectors
        ref.fill(0, off, off + len);
      } else if (kind === 1) {
        cmds.push('-c', `write -f -P ${pat} ${off} ${len}`); // FUA
        ref.fill(pat, off, off + len);
      } else {
        cmds.push('-c', `write -P ${pat} ${off} ${len}`);
        ref.fill(pat, off, off + len);
      }
    }
    cmds.push('-c', 'flush');
    await run('qemu-io', ['-f', 'raw', ...cmds, uri]);
    const refFile = join(dir, 'ref.img');
    writeFileSync(refFile, ref);
    const { stdout } = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', refFile, uri]);
    expect(stdout).to.match(/Images are identical/);
    expect(md5(rig.device.disk)).to.equal(md5(ref));
    const types = new Set(rig.device.seen.map((r) => r.type));
    for (const t of [BlkType.OUT, BlkType.FLUSH, BlkType.DISCARD, BlkType.WRITE_ZEROES]) expect(types.has(t), `type ${t}`).to.equal(true);
    // And a mismatch is reported (the comparison can fail).
    rig.device.disk[12345] ^= 0xff;
    const bad = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', refFile, uri]).then(
      () => 0,
      (e: { code?: number }) => e.code ?? -1,
    );
    expect(bad).to.equal(1);
  });

  it('nbdinfo reports size and the flags the server sends', async function () {
    needs(this, 'nbdinfo');
    const { stdout } = await run('nbdinfo', ['--json', uri]);
    const j = JSON.parse(stdout) as { exports: { 'export-size': number; can_flush: boolean; can_fua: boolean; can_trim: boolean; can_zero: boolean; can_multi_conn: boolean; is_read_only: boolean; block_size_minimum: number }[] };
    const e = j.exports[0];
    expect(e['export-size']).to.equal(DISK);
    expect(e.can_flush).to.equal(true);
    expect(e.can_fua).to.equal(true);
    expect(e.can_trim).to.equal(true);
    expect(e.can_zero).to.equal(true);
    expect(e.can_multi_conn).to.equal(true);
    expect(e.is_read_only).to.equal(false);
    expect(e.block_size_minimum).to.equal(512);
  });

  it('nbdcopy a file into the export and back out: md5s match', async function () {
    needs(this, 'nbdcopy');
    const src = join(dir, 'src.img');
    const data = randomBytes(DISK);
    writeFileSync(src, data);
    await run('nbdcopy', [src, uri]);
    expect(md5(rig.device.disk)).to.equal(md5(data));
    const out = join(dir, 'out.img');
    rig.device.disk.fill(0x5a, 0, MiB); // change the device, so the copy back is not the source file
    await run('nbdcopy', [uri, out]);
    const back = readFileSync(out);
    expect(md5(back)).to.equal(md5(rig.device.disk));
    expect(back[0]).to.equal(0x5a);
  });

  it('qemu-img convert a file into the export (-n) and back out: md5s match', async function () {
    needs(this, 'qemu-img');
    const src = join(dir, 'conv-src.img');
    const data = randomBytes(DISK);
    data.fill(0, 4 * MiB, 12 * MiB); // a zero run: qemu-img may write it as zeroes
    writeFileSync(src, data);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, uri]);
    expect(md5(rig.device.disk)).to.equal(md5(data));
    const out = join(dir, 'conv-out.img');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, out]);
    expect(md5(readFileSync(out))).to.equal(md5(data));
  });

  it('several clients at once (qemu-io in parallel on distinct ranges)', async function () {
    needs(this, 'qemu-io');
    await Promise.all(
      [1, 2, 3, 4].map((i) => run('qemu-io', ['-f', 'raw', '-c', `write -P ${i} ${i * MiB} 1M`, '-c', `read -P ${i} ${i * MiB} 1M`, uri])),
    );
    for (const i of [1, 2, 3, 4]) expect(rig.device.disk.subarray(i * MiB, (i + 1) * MiB).every((b) => b === i)).to.equal(true);
  });
});
