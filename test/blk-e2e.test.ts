/**
 * The whole block stack in separate processes, with the REAL halves on both sides:
 * `vshm-server -l 16M -n 2 -V 3 -P 0x8002`, `vshm-blk-backend IMAGE` on a temporary raw image,
 * `vshm-blk-frontend --nbd PATH`, and standard block tools nobody here wrote (qemu-img, qemu-io
 * from QEMU; nbdinfo, nbdcopy from libnbd) talking to the NBD socket. Every check compares what
 * the tool saw with the image FILE the back-end serves. A test whose tool is missing is skipped
 * with the reason (CI installs qemu-utils and libnbd-bin).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Prng } from '@vshm/transport/testing';
import { RawNbd } from './e2e-nbd.js';
import { ROOT, SERVER_BIN, useScratch, type Proc, type Scratch } from './e2e-procs.js';

const run = promisify(execFile);
const BLK_BACKEND = join(ROOT, 'packages/backend-blk/bin/vshm-blk-backend.js');
const BLK_FRONTEND = join(ROOT, 'packages/frontend-blk/bin/vshm-blk-frontend.js');
const MiB = 1024 * 1024;
const DISK = 64 * MiB;

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

function which(bin: string): boolean {
  return (process.env.PATH ?? '/usr/bin:/bin').split(':').some((d) => existsSync(join(d, bin)));
}

function needs(ctx: Mocha.Context, ...bins: string[]): void {
  for (const b of bins) {
    if (!which(b)) {
      // eslint-disable-next-line no-console
      console.log(`      (skipped: '${b}' is not installed — apt-get install qemu-utils libnbd-bin)`);
      ctx.skip();
    }
  }
}

interface Stack {
  image: string;
  nbd: string;
  uri: string;
  backend: Proc;
  frontend: Proc;
}

/** Server, back-end on a fresh image (or `content`), front-end serving NBD; resolves once NBD listens. */
async function startStack(s: Scratch, opts: { backendArgs?: string[]; frontendArgs?: string[]; content?: Buffer } = {}): Promise<Stack> {
  const image = s.path('disk.img');
  writeFileSync(image, opts.content ?? Buffer.alloc(DISK));
  const server = s.spawn('server', SERVER_BIN, ['-l', '16M', '-n', '2', '-V', '3', '-P', '0x8002', '-S', s.server]);
  await server.untilStderr(/listening on/);
  const backend = s.spawn('blk-backend', BLK_BACKEND, ['-S', s.server, ...(opts.backendArgs ?? []), image]);
  await backend.untilStderr(/serving .* as peer 0/);
  const nbd = s.path('nbd.sock');
  const frontend = s.spawn('blk-frontend', BLK_FRONTEND, ['-S', s.server, '--nbd', nbd, ...(opts.frontendArgs ?? [])]);
  await frontend.untilStderr(/serving NBD on/);
  return { image, nbd, uri: `nbd+unix:///?socket=${nbd}`, backend, frontend };
}

async function qemuIo(uri: string, cmds: string[]): Promise<string> {
  const args = ['-f', 'raw'];
  for (const c of cmds) args.push('-c', c);
  const { stdout } = await run('qemu-io', [...args, uri], { maxBuffer: 64 * MiB });
  // qemu-io reports a failed verification or command on stdout and may still exit 0.
  expect(stdout).to.not.match(/Pattern verification failed|error|failed/i);
  return stdout;
}

describe('virtio-blk end to end: vshm-server + vshm-blk-backend + vshm-blk-frontend --nbd + standard tools', function () {
  const s = useScratch(this, 180_000);

  it('qemu-img info sees the image size; qemu-io write/read -P patterns verify; the image file and nbdcopy agree (md5)', async function () {
    needs(this, 'qemu-img', 'qemu-io', 'nbdcopy');
    const st = await startStack(s);
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', st.uri])).stdout) as { 'virtual-size': number; format: string };
    expect(info['virtual-size']).to.equal(DISK);
    expect(info.format).to.equal('raw');
    // Sizes below, at and above the driver's split size (256 KiB) and the device's SIZE_MAX (64 KiB).
    await qemuIo(st.uri, [
      'write -P 0xab 0 1M', 'write -P 0x11 1M 4k', 'write -P 0x22 3M 300k', 'write -P 0x33 60M 4M',
      'read -P 0xab 0 1M', 'read -P 0x11 1M 4k', 'read -P 0x22 3M 300k', 'read -P 0x33 60M 4M', 'flush',
    ]);
    const file = readFileSync(st.image);
    expect(file.subarray(0, MiB).every((b) => b === 0xab)).to.equal(true);
    expect(file.subarray(60 * MiB, 64 * MiB).every((b) => b === 0x33)).to.equal(true);
    const copied = await run('nbdcopy', [st.uri, '-'], { encoding: 'buffer', maxBuffer: 2 * DISK });
    expect(copied.stdout.length).to.equal(DISK);
    expect(md5(copied.stdout)).to.equal(md5(readFileSync(st.image)));
  });

  it('a random qemu-io workload (writes, discards, write-zeroes, in flight together), then qemu-img compare image vs export: identical', async function () {
    needs(this, 'qemu-img', 'qemu-io');
    const st = await startStack(s);
    const rng = new Prng(0xb1c0);
    const cmds: string[] = [];
    for (let i = 0; i < 120; i++) {
      const sectors = 1 + rng.int(512); // up to 256 KiB
      const off = rng.int(DISK / 512 - sectors) * 512;
      const r = rng.int(10);
      if (r < 7) cmds.push(`aio_write -P ${1 + rng.int(255)} ${off} ${sectors * 512}`);
      else if (r < 8) cmds.push(`discard ${off} ${sectors * 512}`);
      else cmds.push(`aio_write -z ${off} ${sectors * 512}`);
      if (i % 20 === 19) cmds.push('aio_flush');
    }
    cmds.push('aio_flush', 'flush');
    await qemuIo(st.uri, cmds);
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', st.image, st.uri]);
    expect(cmp.stdout).to.match(/Images are identical/);
    // And compare fails when they differ: the check can fail.
    const other = s.path('other.img');
    writeFileSync(other, Buffer.alloc(DISK, 1));
    const bad = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', other, st.uri]).then(() => 0, (e: { code: number }) => e.code);
    expect(bad).to.equal(1);
  });

  it('multiqueue: back-end --queues 4, front-end --queues 4 (MQ negotiated), a random workload, qemu-img compare identical', async function () {
    needs(this, 'qemu-img', 'qemu-io');
    const st = await startStack(s, { backendArgs: ['--queues', '4'], frontendArgs: ['--queues', '4'] });
    await st.backend.untilStderr(/front-end connected/);
    const m = /front-end connected \(features 0x([0-9a-f]+)\)/.exec(st.backend.stderr);
    expect(m, st.backend.stderr).to.not.equal(null);
    expect(BigInt(`0x${m![1]}`) & (1n << 12n), 'MQ negotiated').to.equal(1n << 12n);
    const rng = new Prng(0x4a);
    const cmds: string[] = [];
    for (let i = 0; i < 80; i++) {
      const sectors = 1 + rng.int(256);
      cmds.push(`aio_write -P ${1 + rng.int(255)} ${rng.int(DISK / 512 - sectors) * 512} ${sectors * 512}`);
    }
    cmds.push('aio_flush', 'flush');
    await qemuIo(st.uri, cmds);
    expect((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', st.image, st.uri])).stdout).to.match(/Images are identical/);
  });

  it('qemu-img convert both ways: a random raw image into the export, the export back into a file; md5s equal', async function () {
    needs(this, 'qemu-img');
    const st = await startStack(s);
    const src = s.path('src.img');
    const rng = new Prng(42);
    const content = Buffer.alloc(DISK);
    for (let i = 0; i < 64; i++) content.fill(1 + rng.int(255), i * MiB + rng.int(MiB / 2), i * MiB + MiB / 2 + rng.int(MiB / 2));
    writeFileSync(src, content);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, st.uri]);
    await run('qemu-io', ['-f', 'raw', '-c', 'flush', st.uri]);
    expect(md5(readFileSync(st.image))).to.equal(md5(content));
    const back = s.path('back.img');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', st.uri, back]);
    expect(md5(readFileSync(back))).to.equal(md5(content));
  });

  it('discard and write-zeroes through qemu-io read back as zeroes, in the export and in the image file', async function () {
    needs(this, 'qemu-io');
    const st = await startStack(s);
    await qemuIo(st.uri, [
      'write -P 0x77 0 8M', 'discard 1M 2M', 'write -z 5M 1M', 'write -z -u 7M 512k', 'flush',
      'read -P 0 1M 2M', 'read -P 0 5M 1M', 'read -P 0 7M 512k', 'read -P 0x77 0 1M', 'read -P 0x77 3M 2M', 'read -P 0x77 6M 1M',
    ]);
    const f = readFileSync(st.image);
    const zero = (a: number, b: number): boolean => f.subarray(a, b).every((x) => x === 0);
    expect(zero(1 * MiB, 3 * MiB) && zero(5 * MiB, 6 * MiB) && zero(7 * MiB, 7 * MiB + 512 * 1024)).to.equal(true);
    expect(f.subarray(3 * MiB, 5 * MiB).every((x) => x === 0x77)).to.equal(true);
  });

  it('--block-size 4096: nbdinfo shows 4096-byte blocks; qemu-io writes, discards and zeroes, aligned or not, land exactly; nbdcopy reads and writes agree (md5)', async function () {
    needs(this, 'nbdinfo', 'qemu-io', 'nbdcopy');
    const content = Buffer.alloc(DISK, 0x77);
    const st = await startStack(s, { backendArgs: ['--block-size', '4096'], content });
    expect(st.backend.stderr).to.match(/serving .* \(131072 sectors, 4096-byte blocks\)/);
    const info = JSON.parse((await run('nbdinfo', ['--json', st.uri])).stdout) as { exports: Record<string, unknown>[] };
    expect(info.exports[0]).to.include({ 'export-size': DISK, block_size_minimum: 4096, block_size_preferred: 4096 });
    // Aligned I/O at 4 KiB, and I/O inside blocks (qemu aligns it itself: read-modify-write for
    // writes and zeroes, only the whole blocks inside for a discard); the device would answer a
    // request that is not block-aligned with IOERR, which qemu-io would report.
    await qemuIo(st.uri, [
      'write -P 0x11 4k 8k', 'write -P 0x22 1M 1M', 'write -P 0x33 66048 512', 'discard 2M 64k', 'discard 3147776 12k',
      'write -z 4M 8k', 'write -z 5243904 2k', 'flush',
      'read -P 0x11 4k 8k', 'read -P 0x22 1M 1M', 'read -P 0x33 66048 512', 'read -P 0 2M 64k', 'read -P 0 4M 8k', 'read -P 0 5243904 2k',
    ]);
    const f = readFileSync(st.image);
    const all = (a: number, b: number, v: number): boolean => f.subarray(a, b).every((x) => x === v);
    expect(all(4096, 12288, 0x11) && all(MiB, 2 * MiB, 0x22) && all(66048, 66560, 0x33), 'written').to.equal(true);
    expect(all(65536, 66048, 0x77) && all(66560, 69632, 0x77), 'the rest of the block of a 512-byte write').to.equal(true);
    expect(all(2 * MiB, 2 * MiB + 65536, 0), 'discarded').to.equal(true);
    // discard 3M + 2 KiB, 12 KiB: the whole blocks inside, [3M+4k, 3M+12k), and nothing around them
    expect(all(3 * MiB + 4096, 3 * MiB + 12288, 0) && all(3 * MiB, 3 * MiB + 4096, 0x77) && all(3 * MiB + 12288, 3 * MiB + 16384, 0x77), 'a discard inside blocks').to.equal(true);
    expect(all(4 * MiB, 4 * MiB + 8192, 0) && all(5 * MiB + 1024, 5 * MiB + 3072, 0), 'zeroed').to.equal(true);
    expect(all(5 * MiB, 5 * MiB + 1024, 0x77) && all(5 * MiB + 3072, 5 * MiB + 4096, 0x77), 'the rest of the block of a 2 KiB write-zeroes').to.equal(true);
    const copied = await run('nbdcopy', [st.uri, '-'], { encoding: 'buffer', maxBuffer: 2 * DISK });
    expect(md5(copied.stdout)).to.equal(md5(f));
    // And nbdcopy writing: a random image into the export (its requests sized and aligned by the
    // block sizes it read), then the file compared.
    const src = s.path('src.img');
    const rng = new Prng(4096);
    const data = Buffer.alloc(DISK);
    for (let i = 0; i < 64; i++) data.fill(1 + rng.int(255), i * MiB + rng.int(MiB / 2), i * MiB + MiB / 2 + rng.int(MiB / 2));
    writeFileSync(src, data);
    await run('nbdcopy', ['--flush', src, st.uri]);
    expect(md5(readFileSync(st.image))).to.equal(md5(data));
  });

  it('--read-only: the export is READ_ONLY, qemu-io refuses to open it for writing, a raw WRITE gets EPERM, reads work', async function () {
    needs(this, 'qemu-io');
    const content = Buffer.alloc(DISK, 0x5c);
    const st = await startStack(s, { backendArgs: ['--read-only'], content });
    const ro = await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x5c 0 1M', st.uri]);
    expect(ro.stdout).to.match(/read 1048576\/1048576 bytes/).and.not.match(/verification failed/);
    const rw = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', st.uri]).then(
      (r) => r.stdout + r.stderr,
      (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
    );
    expect(rw).to.match(/Permission denied|read-only|Read-only/);
    const { c, size, flags } = await RawNbd.open(st.nbd);
    try {
      expect(size).to.equal(BigInt(DISK));
      expect(flags & 2, 'NBD_FLAG_READ_ONLY').to.equal(2);
      expect(await c.command(1 /* WRITE */, 0, 4096, Buffer.alloc(4096, 1))).to.equal(1 /* EPERM */);
      expect(await c.command(6 /* WRITE_ZEROES */, 0, 4096)).to.be.oneOf([1, 22]); // EPERM (or EINVAL: not advertised)
      expect(await c.command(0 /* READ */, 0, 512)).to.equal(0);
      await c.take(512);
    } finally {
      c.close();
    }
    expect(readFileSync(st.image).equals(content)).to.equal(true);
  });

  it('flush durability: a flush completed through NBD survives SIGKILL of the back-end', async function () {
    needs(this, 'qemu-io');
    const st = await startStack(s);
    const raw = await RawNbd.open(st.nbd);
    try {
      const data = Buffer.alloc(1 * MiB);
      const rng = new Prng(7);
      for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
      expect(await raw.c.command(1 /* WRITE */, 5 * MiB, data.length, data)).to.equal(0);
      expect(await raw.c.command(3 /* FLUSH */, 0, 0)).to.equal(0);
      await st.backend.kill('SIGKILL');
      expect(readFileSync(st.image).subarray(5 * MiB, 6 * MiB).equals(data)).to.equal(true);
    } finally {
      raw.c.close();
    }
    // The front-end survives its back-end and says so.
    await st.frontend.untilStderr(/back-end lost, waiting/);
  });
});
