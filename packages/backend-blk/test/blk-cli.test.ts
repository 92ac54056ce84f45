/**
 * `vshm-blk-backend` as a process: the CLI voice (usage errors, --print-capabilities, open
 * errors), and the block scenario against a real `vshm-server` with the Linux-like virtio_blk
 * double as the front-end — link-state lines, SIGHUP resize, SIGTERM, and durability across
 * SIGKILL right after a completed FLUSH.
 */
import { expect } from 'chai';
import { spawnSync, type SpawnSyncOptionsWithStringEncoding } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readdirSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { BlkStatus } from 'virtio-spec-types';
import { IvshmemPeer } from '../../transport/src/ivshmem/peer.js';
import { LinuxLikeBlk } from '../../transport/test/fixtures/linux-like-blk.js';
import { TempImage, pattern } from './fixtures/rig.js';
import { BACKEND, SERVER, runProc, startProc, stopProc, type Proc } from './fixtures/procs.js';
import { until } from '../../transport/test/fixtures/until.js';

const ONE_LINE = /^vshm-blk-backend: [^\n]+ \(try --help\)\n$/;

describe('vshm-blk-backend command line', () => {
  it('usage errors: exit 2 with exactly one line', async () => {
    const cases: string[][] = [
      [],
      ['--bogus', 'x.img'],
      ['--queues'],
      ['--queues', '0', 'x.img'],
      ['--queues', 'two', 'x.img'],
      ['--queue-size', '100', 'x.img'],
      ['--cache=sometimes', 'x.img'],
      ['--serial', 'a-serial-longer-than-20', 'x.img'],
      ['--serial', 'disk-\u00e9', 'x.img'], // GET_ID answers an ASCII string (VIRTIO 1.2 §5.2.6)
      ['--serial', 'a\tb', 'x.img'],
      ['a.img', 'b.img'],
      ['--read-only=yes', 'x.img'],
      ['--block-size', '1000', 'x.img'], // not a power of two
      ['--block-size', '256', 'x.img'], // below a sector
      ['--block-size', '131072', 'x.img'], // above 64 KiB
      ['--block-size', '4k', 'x.img'],
      ['--block-size', 'x.img'],
    ];
    for (const args of cases) {
      const r = await runProc(BACKEND, args);
      expect(r.code, args.join(' ')).to.equal(2);
      expect(r.err, args.join(' ')).to.match(ONE_LINE);
      expect(r.err).to.not.match(/at .*\.js:\d+/); // no stack
    }
    expect((await runProc(BACKEND, ['--bogus', 'x.img'])).err).to.contain("unknown option '--bogus'");
    expect((await runProc(BACKEND, ['--queues'])).err).to.contain("option '--queues' needs a value");
    expect((await runProc(BACKEND, ['--serial', 'disk-\u00e9', 'x.img'])).err).to.contain('printable ASCII');
    expect((await runProc(BACKEND, ['--block-size', '1000', 'x.img'])).err).to.contain('--block-size 1000 is not a power of two');
    expect((await runProc(BACKEND, ['--block-size', '131072', 'x.img'])).err).to.contain('--block-size 131072 out of range 512…65536');
  });

  it('an image that is empty or not a multiple of 512 bytes (or of --block-size): one warning saying what the guest will not see', async () => {
    for (const [bytes, warning, blockSize] of [
      [1000, 'is 1000 bytes, not a multiple of 512: its last 488 bytes are not served'],
      [0, 'is empty: the disk has 0 sectors'],
      [3 * 4096 + 1536, 'is 13824 bytes, not a multiple of the block size 4096: its last 1536 bytes are not served', '4096'],
    ] as const) {
      const img = new TempImage(bytes);
      try {
        // No server: the warning comes after the open, then the connect fails (exit 1).
        const r = await runProc(BACKEND, ['-S', join(img.dir, 'no-server'), ...(blockSize === undefined ? [] : ['--block-size', blockSize]), img.path]);
        expect(r.code).to.equal(1);
        const lines = r.err.split('\n').filter((l) => l !== '');
        expect(lines[0]).to.equal(`vshm-blk-backend: warning: ${img.path} ${warning}`);
        expect(lines[1]).to.match(/^vshm-blk-backend: cannot connect to .*no-server: ENOENT/);
        expect(lines).to.have.length(2);
      } finally {
        img.remove();
      }
    }
  });

  it('-h prints usage on stdout and exits 0', async () => {
    const r = await runProc(BACKEND, ['-h']);
    expect(r.code).to.equal(0);
    expect(r.out).to.match(/^Usage: vshm-blk-backend \[options\] IMAGE/);
  });

  it('--print-capabilities prints one JSON object', async () => {
    const r = await runProc(BACKEND, ['--print-capabilities']);
    expect(r.code).to.equal(0);
    const caps = JSON.parse(r.out);
    expect(caps).to.include({ type: 'block', deviceId: 2, queues: 1 });
    expect(caps.features).to.include.members(['SIZE_MAX', 'SEG_MAX', 'BLK_SIZE', 'FLUSH', 'DISCARD', 'WRITE_ZEROES', 'RING_INDIRECT_DESC']);
    expect(caps.features).to.not.include('RO');
    expect(caps.options).to.include.members(['--server', '--read-only', '--queues', '--cache', '--serial', '--block-size']);
    const ro = JSON.parse((await runProc(BACKEND, ['--print-capabilities', '--read-only', '--queues', '4'])).out);
    expect(ro.features).to.include.members(['RO', 'MQ']);
    expect(ro.features).to.not.include('DISCARD');
    expect(ro.queues).to.equal(4);
  });

  it('an image that cannot be opened: exit 1, one line naming the path and the errno', async () => {
    const img = new TempImage(4096); // not empty: an empty image adds a warning line
    try {
      const missing = join(img.dir, 'missing.img');
      const r = await runProc(BACKEND, ['-S', join(img.dir, 'sock'), missing]);
      expect(r.code).to.equal(1);
      expect(r.err).to.equal(`vshm-blk-backend: cannot open image ${missing}: ENOENT (no such file or directory)\n`);
      const dir = join(img.dir, 'adir');
      mkdirSync(dir);
      const d = await runProc(BACKEND, ['-S', join(img.dir, 'sock'), dir]);
      expect(d.code).to.equal(1);
      expect(d.err).to.match(new RegExp(`^vshm-blk-backend: cannot open image ${dir}: EISDIR \\([^)]+\\)\\n$`));
      // neither a file nor a block device: the same one line, the path once, the reason kept
      const c = await runProc(BACKEND, ['-S', join(img.dir, 'sock'), '/dev/null']);
      expect(c.code).to.equal(1);
      expect(c.err).to.equal('vshm-blk-backend: cannot open image /dev/null: EINVAL (not a regular file or block device)\n');
      const s = await runProc(BACKEND, ['-S', join(img.dir, 'no-server'), img.path]);
      expect(s.code).to.equal(1);
      expect(s.err).to.match(/^vshm-blk-backend: cannot connect to .*no-server: ENOENT \(no such file or directory\)\n$/);
    } finally {
      img.remove();
    }
  });
});

describe('vshm-blk-backend: an image it may read but not write', () => {
  // As root the file mode does not stop a write-open: the back-end runs as nobody then, on a
  // root-owned image; otherwise on an image of ours without write permission.
  it('names the errno and says to serve it with --read-only; without read permission, no such hint', () => {
    const img = new TempImage(4096);
    try {
      const asRoot = process.getuid?.() === 0;
      const opts: SpawnSyncOptionsWithStringEncoding = { encoding: 'utf8', env: { ...process.env, DEBUG: '' }, timeout: 60_000, ...(asRoot && { uid: 65534, gid: 65534 }) };
      chmodSync(img.dir, 0o755);
      chmodSync(img.path, asRoot ? 0o644 : 0o444);
      const run = (): { status: number | null; stderr: string } => spawnSync(process.execPath, [BACKEND, '-S', join(img.dir, 'sock'), img.path], opts);
      const r = run();
      expect(r.status, r.stderr).to.equal(1);
      expect(r.stderr).to.equal(`vshm-blk-backend: cannot open image ${img.path}: EACCES (permission denied); it is readable: serve it with --read-only\n`);
      chmodSync(img.path, asRoot ? 0o600 : 0o200);
      const u = run();
      expect(u.status, u.stderr).to.equal(1);
      expect(u.stderr).to.equal(`vshm-blk-backend: cannot open image ${img.path}: EACCES (permission denied)\n`);
    } finally {
      img.remove();
    }
  });
});

describe('vshm-blk-backend signals during start-up', () => {
  it('SIGHUP while it connects (a server that never answers) is a resize request, not a kill: SIGTERM then exits 0', async () => {
    const img = new TempImage(4096);
    const sock = join(img.dir, 'mute.sock');
    // Accepts and never sends the initial burst: the back-end stays in its connect phase.
    const conns: Socket[] = [];
    const mute = createServer((c) => conns.push(c.on('error', () => {})));
    await new Promise<void>((r) => mute.listen(sock, r));
    const connected = new Promise<void>((r) => mute.once('connection', () => r()));
    const be = startProc(BACKEND, ['-S', sock, img.path]);
    try {
      await connected;
      be.proc.kill('SIGHUP');
      be.proc.kill('SIGTERM');
      const { code, signal } = await be.exit;
      expect({ code, signal }, be.err()).to.deep.equal({ code: 0, signal: null });
      // The image is open by then or not, depending on timing: a resize line, or nothing.
      expect(be.err()).to.match(/^(vshm-blk-backend: image resized: 8 sectors\n)?$/);
    } finally {
      be.proc.kill('SIGKILL');
      for (const c of conns) c.destroy();
      await new Promise<void>((r) => mute.close(() => r()));
      img.remove();
    }
  });
});

describe('vshm-blk-backend with vshm-server (separate processes)', () => {
  let img: TempImage;
  let socket: string;
  let procs: Proc[];
  let peers: IvshmemPeer[];

  beforeEach(() => {
    img = new TempImage(4 << 20);
    socket = join(img.dir, 'sock');
    procs = [];
    peers = [];
  });
  afterEach(async () => {
    for (const p of peers) p.close();
    for (const p of procs.reverse()) await stopProc(p);
    img.remove();
  });

  async function scenario(args: string[] = []): Promise<{ be: Proc; guest: LinuxLikeBlk }> {
    // The server's debug trace says when the back-end has its id (with -q the back-end says nothing).
    const s = startProc(SERVER, ['-S', socket, '-l', '16M', '-n', '2', '-V', '3', '-P', '0x8002'], { DEBUG: 'vshm:server' });
    procs.push(s);
    await s.stderrLine(/listening on/);
    const be = startProc(BACKEND, ['-S', socket, ...args, img.path]);
    procs.push(be);
    await s.stderrLine(/peer 0 connected/);
    const peer = await IvshmemPeer.connect(socket);
    peers.push(peer);
    await until(() => peer.peerState(0) === 1, 'the back-end READY');
    const guest = new LinuxLikeBlk(peer);
    await guest.start();
    if (!args.includes('-q')) {
      await be.stderrLine(/serving .* \(8192 sectors.*\) on .* as peer 0/);
      await be.stderrLine(/front-end connected \(features 0x[0-9a-f]+\)/);
    }
    return { be, guest };
  }

  it('a completed FLUSH survives SIGKILL of the back-end', async () => {
    const { be, guest } = await scenario();
    const data = pattern(1 << 20, 42);
    expect(await guest.write(1000, data)).to.equal(BlkStatus.OK);
    expect(await guest.flush()).to.equal(BlkStatus.OK);
    be.proc.kill('SIGKILL');
    expect((await be.exit).signal).to.equal('SIGKILL');
    expect(readFileSync(img.path).subarray(1000 * 512, 1000 * 512 + data.length).equals(data)).to.equal(true);
  });

  it('SIGHUP resizes (config event at the guest); the front-end leaving is reported; SIGTERM exits 0', async () => {
    const { be, guest } = await scenario(['--serial', 'e2e-disk']);
    expect(guest.capacity).to.equal(8192);
    expect(await guest.getId()).to.deep.equal({ status: BlkStatus.OK, serial: 'e2e-disk' });
    truncateSync(img.path, 8 << 20);
    be.proc.kill('SIGHUP');
    await be.stderrLine(/image resized: 16384 sectors/);
    await until(() => guest.capacity === 16384, 'the new capacity at the guest');
    await guest.fe.powerOff();
    await be.stderrLine(/front-end left \(driver-(reset|gone)\)/);
    be.proc.kill('SIGTERM');
    expect((await be.exit).code).to.equal(0);
  });

  it('the open-file limit reached as a front-end joins (its eventfds cannot be received): exit 1 with one line naming the limit', async () => {
    const s = startProc(SERVER, ['-S', socket, '-l', '16M', '-n', '2', '-V', '3', '-P', '0x8002']);
    procs.push(s);
    await s.stderrLine(/listening on/);
    const be = startProc(BACKEND, ['-S', socket, img.path]);
    procs.push(be);
    await be.stderrLine(/serving .* as peer 0/);
    // Soft limit := the lowest free fd number, so the next fd the back-end gets is refused (EMFILE):
    // the kernel drops the eventfds of the server's messages and sets MSG_CTRUNC.
    const open = new Set(readdirSync(`/proc/${be.proc.pid}/fd`).map(Number));
    let lowest = 0;
    while (open.has(lowest)) lowest++;
    const r = spawnSync('prlimit', [`--pid=${be.proc.pid}`, `--nofile=${lowest}:`], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    const peer = await IvshmemPeer.connect(socket);
    peers.push(peer);
    expect((await be.exit).code).to.equal(1);
    const lines = be.err().split('\n').filter((l) => l !== '');
    expect(lines.slice(1), be.err()).to.have.length(1);
    expect(lines[1]).to.match(/^vshm-blk-backend: .*open-file limit/);
  });

  it('-q silences the link-state lines', async () => {
    const { be, guest } = await scenario(['-q', '--read-only']);
    expect(guest.readOnly).to.equal(true);
    expect((await guest.read(0, 4096)).status).to.equal(BlkStatus.OK);
    await guest.fe.powerOff();
    be.proc.kill('SIGTERM');
    expect((await be.exit).code).to.equal(0);
    expect(be.err()).to.equal('');
  });
});
