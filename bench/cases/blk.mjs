// B6 (virtio-blk, issue 11 item 6): block I/O through the transport against direct file I/O on
// the same kind of file, in the same run. Each mode runs in a fresh process on a fresh image in
// TMPDIR (run.mjs points it at the run's directory).
//   blk.mjs file_seq_read  MIB    pread 1 MiB sequentially (fs.readSync: the direct baseline)
//   blk.mjs file_seq_write MIB    pwrite 1 MiB sequentially, then fdatasync
//   blk.mjs file_randread_4k N    N random 4 KiB preads, 32 at once (fs.promises, libuv pool)
//   blk.mjs blk_seq_read  MIB     BlockDriver.read 1 MiB sequentially, QD 4, through a vshm server
//                                 and the real BlockDevice back-end in another process
//   blk.mjs blk_seq_write MIB     BlockDriver.write 1 MiB sequentially, QD 4, then flush()
//   blk.mjs blk_randread_4k_qd32 N  N random 4 KiB BlockDriver.read, 32 in flight
//   blk.mjs nbd_seq_read  MIB     nbdcopy from the NBD export (NbdServer over the same
//                                 BlockDriver) to /dev/null; skipped (null) without nbdcopy
//   blk.mjs nbd_seq_write MIB     nbdcopy from a file into the NBD export, with its final flush
//   blk.mjs nbd_read_4k_qd32 N    qemu-img bench: N 4 KiB reads at queue depth 32 (sequential
//                                 offsets: qemu-img bench has no random mode)
//   blk.mjs qemu_nbd_seq_read MIB  the reference for the two nbdcopy cases: the same nbdcopy
//   blk.mjs qemu_nbd_seq_write MIB against qemu-nbd serving the same kind of image straight from
//                                 the file (no transport): what the client and the socket allow
//                                 on this machine; skipped without qemu-nbd or nbdcopy
// The image is filled once by the case before timing (page cache warm on both sides: what is
// compared is the path, not the disk), and the sequential cases run one untimed pass over it
// first (see WARMUP). Each result carries the CPU seconds per GB (or µs per op) of each side
// over the timed part: the judge of a code change on a shared machine.
import { execFile } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync, existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { report, round } from '../lib.mjs';
import { openBackend, openFrontend, procCpuSeconds, spawnChild, startServer } from '../virtio-rig.mjs';

const SELF = fileURLToPath(import.meta.url);
const pkg = (p) => new URL(`../../packages/${p}`, import.meta.url).href;
const MiB = 1024 * 1024;
const SEQ_QD = Number(process.env.VSHM_BENCH_BLK_QD ?? 4);
const RAND_QD = 32;
const run = promisify(execFile);

const mode = process.argv[2];

function prng(seed) {
  let s = seed >>> 0;
  return (n) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** A fresh image of `bytes` filled with non-zero data (so reads move real bytes). */
function makeImage(bytes) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vshm-bench-blk-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'disk.img');
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(MiB, 0xa5);
  for (let at = 0; at < bytes; at += MiB) writeSync(fd, chunk, 0, MiB, at);
  closeSync(fd);
  return file;
}

/**
 * Bytes of the untimed first pass of the sequential cases (both sides, the same loop as the timed
 * pass): by default the whole image once. A fresh process's first few hundred requests pay
 * one-time costs — JIT tier-up, the first touch of every page of the shared memory and of pooled
 * buffers in both processes — that the direct baseline (one C++ loop over a warm buffer) does
 * not: without this pass a 256 MiB run measured mostly those (1.1–1.8 GB/s at ~0.45 CPU s/GB a
 * side, against ~3.5 GB/s at 0.1–0.2 in steady state). VSHM_BENCH_BLK_WARMUP_MIB caps it (0 = off).
 */
const WARMUP = process.env.VSHM_BENCH_BLK_WARMUP_MIB === undefined ? Infinity : Number(process.env.VSHM_BENCH_BLK_WARMUP_MIB) * MiB;
const warmupBytes = (bytes) => Math.min(bytes, WARMUP);

const which = (b) => (process.env.PATH ?? '/usr/bin:/bin').split(':').some((d) => existsSync(path.join(d, b)));
const imageBytesFor = (m, n) => (m.includes('4k') ? 64 * MiB : n * MiB);

if (mode === '--be') {
  // The back-end child: the real BlockDevice on the image.
  const [, , , socketPath, image] = process.argv;
  const { openBlockDevice } = await import(pkg('backend-blk/dist/device.js'));
  const sizeMax = process.env.VSHM_BENCH_BLK_SIZE_MAX ? Number(process.env.VSHM_BENCH_BLK_SIZE_MAX) : undefined;
  // VSHM_BENCH_BLK_CACHED=0: reads without the page-cache path (the A/B of that change).
  const cachedReads = process.env.VSHM_BENCH_BLK_CACHED !== '0';
  const device = await openBlockDevice(image, { queueSize: 128, sizeMax, cachedReads });
  await openBackend(socketPath, device);
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
} else {
  const n = Number(process.argv[3] ?? 256);
  const image = makeImage(imageBytesFor(mode, n));
  const bytes = imageBytesFor(mode, n);
  let result;
  if (mode.startsWith('file_')) result = await fileCase(mode, image, n, bytes);
  else if (mode.startsWith('qemu_nbd_')) result = await qemuNbdCase(mode, image, bytes);
  else result = await transportCase(mode, image, n, bytes);
  report(result);
}

async function fileCase(m, image, n, bytes) {
  const buf = Buffer.alloc(MiB, 0x3c);
  if (m === 'file_seq_read' || m === 'file_seq_write') {
    const fd = openSync(image, m === 'file_seq_read' ? 'r' : 'r+');
    const pass = (end) => {
      for (let at = 0; at < end; at += MiB) {
        if (m === 'file_seq_read') readSync(fd, buf, 0, MiB, at);
        else writeSync(fd, buf, 0, MiB, at);
      }
    };
    pass(warmupBytes(bytes)); // the same untimed first pass as the transport cases get
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    pass(bytes);
    if (m === 'file_seq_write') fdatasyncSync(fd);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(cpu0);
    closeSync(fd);
    return { gbps: round(bytes / s / 1e9), bytes, seconds: round(s), qd: 1, warmup: warmupBytes(bytes), cpu: { s_per_gb: round((c.user + c.system) / 1e6 / (bytes / 1e9)) } };
  }
  // file_randread_4k: n reads, RAND_QD at once.
  const fh = await open(image, 'r');
  const result = await randomReads(n, bytes, (b, pos) => fh.read(b, 0, 4096, pos));
  await fh.close();
  return result;
}

/**
 * n reads of 4 KiB at random block offsets within `bytes`, RAND_QD at once, through
 * `read(into, pos)`; the same offsets for every case (seeded). Timed from the first issue.
 */
async function randomReads(n, bytes, read) {
  const rnd = prng(4);
  const blocks = bytes / 4096;
  let issued = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: RAND_QD }, async () => {
      const into = Buffer.alloc(4096);
      while (issued < n) {
        issued++;
        await read(into, rnd(blocks) * 4096);
      }
    }),
  );
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { iops: Math.round(n / s), ops: n, seconds: round(s), qd: RAND_QD };
}

async function transportCase(m, image, n, bytes) {
  const { BlockDriver } = await import(pkg('frontend-blk/dist/driver.js'));
  const srv = await startServer({ deviceId: 2, memorySize: 32 * MiB, vectors: 3 });
  const be = spawnChild(SELF, ['--be', srv.socketPath, image], {}, 1);
  let result = null;
  let link = null;
  try {
    await be.next('ready');
    const driver = new BlockDriver({ maxTransfer: MiB });
    link = await openFrontend(srv.socketPath, driver);
    await driver.whenReady();
    // CPU of each side over the timed part (this process also runs the server: it only brokers
    // setup). A case calls mark() when its clock starts; without a call, the whole case counts.
    let cpu0 = null;
    const mark = () => (cpu0 = { fe: process.cpuUsage(), be: procCpuSeconds(be.pid) });
    mark();
    if (m.startsWith('blk_')) result = await driverCase(m, driver, n, bytes, mark);
    else result = await nbdCase(m, driver, n, bytes);
    const fe = process.cpuUsage(cpu0.fe);
    const cpuFe = (fe.user + fe.system) / 1e6;
    const cpuBe = procCpuSeconds(be.pid) - cpu0.be;
    if (result && !result.skipped) {
      const gb = m.includes('4k') ? null : bytes / 1e9;
      result.cpu = gb === null
        ? { fe_us_per_op: round((cpuFe / n) * 1e6), be_us_per_op: round((cpuBe / n) * 1e6) }
        : { fe_s_per_gb: round(cpuFe / gb), be_s_per_gb: round(cpuBe / gb) };
    }
  } finally {
    link?.fe.close().catch(() => {});
    be.kill();
    await be.exited;
    await srv.stop();
  }
  return result;
}

async function driverCase(m, driver, n, bytes, mark) {
  if (m === 'blk_seq_read' || m === 'blk_seq_write') {
    const data = Buffer.alloc(MiB, 0x3c);
    const intos = Array.from({ length: SEQ_QD }, () => Buffer.alloc(MiB)); // one per reader, reused: as a caller reading a stream would
    const pass = async (end) => {
      let next = 0;
      await Promise.all(
        intos.map(async (into) => {
          while (next < end) {
            const at = next;
            next += MiB;
            if (m === 'blk_seq_read') await driver.read(at, MiB, into);
            else await driver.write(at, data);
          }
        }),
      );
    };
    await pass(warmupBytes(bytes));
    mark();
    const t0 = process.hrtime.bigint();
    await pass(bytes);
    if (m === 'blk_seq_write') await driver.flush();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { gbps: round(bytes / s / 1e9), bytes, seconds: round(s), qd: SEQ_QD, segment: driver.geometry.segmentSize, warmup: warmupBytes(bytes) };
  }
  // blk_randread_4k_qd32
  return randomReads(n, bytes, (into, pos) => driver.read(pos, 4096, into));
}

async function nbdCase(m, driver, n, bytes) {
  const tool = m === 'nbd_read_4k_qd32' ? 'qemu-img' : 'nbdcopy';
  if (!which(tool)) return { skipped: `${tool} not installed` };
  const { NbdServer } = await import(pkg('frontend-blk/dist/nbd-server.js'));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vshm-bench-nbd-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'nbd.sock');
  const nbd = new NbdServer(driver, { path: sock });
  await nbd.listen();
  const uri = `nbd+unix:///?socket=${sock}`;
  try {
    if (m === 'nbd_seq_read' || m === 'nbd_seq_write') return await nbdcopyCase(m === 'nbd_seq_read', uri, bytes);
    const t0 = process.hrtime.bigint();
    await run('qemu-img', ['bench', '-f', 'raw', '-c', String(n), '-d', String(RAND_QD), '-s', '4096', '-S', '4096', uri]);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { iops: Math.round(n / s), ops: n, seconds: round(s), qd: RAND_QD, tool: 'qemu-img bench' };
  } finally {
    await nbd.close();
  }
}

/**
 * nbdcopy of `bytes` from the export at `uri` to nowhere (read), or from a fresh file into it
 * followed by its flush (write), 1 MiB requests, nbdcopy's own defaults otherwise (4 connections
 * with multi-conn, 64 requests each). Timed around nbdcopy alone.
 */
async function nbdcopyCase(read, uri, bytes) {
  const src = read ? null : makeImage(bytes);
  const t0 = process.hrtime.bigint();
  await run('nbdcopy', read ? ['--request-size=1048576', uri, 'null:'] : ['--request-size=1048576', '--flush', src, uri]);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { gbps: round(bytes / s / 1e9), bytes, seconds: round(s), tool: 'nbdcopy' };
}

/**
 * The nbdcopy cases against qemu-nbd on `image` (raw, its default writeback cache: a flush is an
 * fdatasync, as the block back-end's). `--fork` returns once the socket listens.
 */
async function qemuNbdCase(m, image, bytes) {
  for (const tool of ['qemu-nbd', 'nbdcopy']) if (!which(tool)) return { skipped: `${tool} not installed` };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vshm-bench-qemu-nbd-'));
  const sock = path.join(dir, 'nbd.sock');
  const pidFile = path.join(dir, 'pid');
  await run('qemu-nbd', ['--fork', '--persistent', '--format=raw', `--socket=${sock}`, `--pid-file=${pidFile}`, image]);
  try {
    const r = await nbdcopyCase(m === 'qemu_nbd_seq_read', `nbd+unix:///?socket=${sock}`, bytes);
    return { ...r, tool: 'nbdcopy, qemu-nbd' };
  } finally {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGTERM');
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
