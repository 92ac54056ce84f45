/**
 * describe() on both transport sides and the status files of status-file.ts, over a real
 * in-process vshm-server: what the files hold (the queues both sides agree on), when they are
 * written (a phase change on the next loop turn) and removed, their modes, and the directory and
 * content checks.
 */
import { expect } from 'chai';
import { chmodSync, fstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBackend, openFrontend } from '../src/connect.js';
import { IvshmemServer } from '../src/server/server.js';
import type { ConfigReader, DriverSession, VirtioDriverOps } from '../src/virtio/device-api.js';
import { listStatusFiles, publishStatus, readStatusFile, statusDirectory, StatusFileError, STATUS_FORMAT } from '../src/status-file.js';
import { echoOps } from './fixtures/backend-devices.js';
import { until } from './fixtures/until.js';

/** A driver that sets up two queues and does nothing else. */
class IdleDriver implements VirtioDriverOps {
  readonly deviceId = 3;
  readonly features = 0n;
  queueCount(_f: bigint, _c: ConfigReader): number {
    return 2;
  }
  queueSize(_i: number, max: number): number {
    return Math.min(max, 16);
  }
  probe(_s: DriverSession): void {}
  remove(_e: Error): void {}
}

describe('status files (describe() published for vshm-inspect)', function () {
  this.timeout(60_000);
  let dir: string;
  let server: IvshmemServer;
  let socketPath: string;
  const savedEnv = process.env.VSHM_STATUS_DIR;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-status-'));
    socketPath = join(dir, 'ivshmem.sock');
    process.env.VSHM_STATUS_DIR = join(dir, 'status');
    server = new IvshmemServer({ socketPath, maxPeers: 2, memorySize: 65536, outputSectionSize: 8192, vectors: 3, protocol: 0x8003 });
    await server.start();
  });

  afterEach(async () => {
    await server.stop();
    if (savedEnv === undefined) delete process.env.VSHM_STATUS_DIR;
    else process.env.VSHM_STATUS_DIR = savedEnv;
    rmSync(dir, { recursive: true, force: true });
  });

  it('both sides publish describe(): the same queues, sizes, vectors and addresses; files go at close', async () => {
    const be = await openBackend(socketPath, echoOps(), { status: true, spin: false });
    const fe = await openFrontend(socketPath, new IdleDriver(), { status: true, spin: false });
    await fe.ready;
    await until(() => be.transport.describe().phase === 'serving' && be.transport.currentSession !== null, 'the back-end session');
    const bd = be.transport.describe();
    const fd = fe.transport.describe();
    expect(bd.role).to.equal('back-end');
    expect(fd.role).to.equal('front-end');
    expect(bd.queues).to.have.length(2);
    expect(fd.queues.map((q) => [q.index, q.size, q.desc, q.avail, q.used, q.driverVector])).to.deep.equal(
      bd.queues.map((q) => [q.index, q.size, q.desc, q.avail, q.used, q.driverVector]),
    );
    expect(bd.queues.every((q) => q.enabled && q.running && q.size === Math.min(q.maxSize, 16))).to.equal(true);
    expect(bd.negotiatedFeatures).to.equal(fd.negotiatedFeatures);
    expect(bd.status & 0x04).to.equal(0x04);

    const files = listStatusFiles(process.env.VSHM_STATUS_DIR!);
    // One process, two links: PID.json and PID.1.json.
    expect(files.map((f) => f.slice(f.lastIndexOf('/') + 1)).sort()).to.deep.equal([`${process.pid}.1.json`, `${process.pid}.json`]);
    await until(() => files.map((f) => readStatusFile(f)).some((f) => f.transport.role === 'back-end' && f.transport.phase === 'serving' && (f.transport.status & 4) !== 0), 'the back-end file at DRIVER_OK');
    const byRole = new Map(files.map((f) => readStatusFile(f)).map((f) => [f.transport.role, f]));
    const bf = byRole.get('back-end')!;
    const ff = byRole.get('front-end')!;
    expect(bf.format).to.equal(STATUS_FORMAT);
    // Device and inode, as fstat names the server's memory object: an inode number alone is only
    // unique within one filesystem (vshm-inspect matches by both).
    const st = fstatSync(server.memoryFd, { bigint: true });
    expect(bf.memory).to.deep.equal({ dev: `0x${st.dev.toString(16)}`, ino: Number(st.ino), size: 65536, outputSectionSize: 8192 });
    expect(ff.memory).to.deep.equal(bf.memory);
    expect(bf.peer).to.deep.equal({ id: 0, maxPeers: 2, vectors: 3, protocol: 0xc003 });
    expect(bf.transport.queues.map((q) => q.desc)).to.deep.equal(bd.queues.map((q) => `0x${q.desc.toString(16)}`));
    for (const f of files) expect(statSync(f).mode & 0o777).to.equal(0o600);
    expect(statSync(process.env.VSHM_STATUS_DIR!).mode & 0o777).to.equal(0o700);

    await fe.transport.close();
    fe.peer.close();
    await be.transport.close();
    be.peer.close();
    expect(readdirSync(process.env.VSHM_STATUS_DIR!)).to.deep.equal([]);
  });

  it('a phase change is written on the next loop turn, not inside the event (the BE is inside the DRIVER_OK transaction then)', async () => {
    const be = await openBackend(socketPath, echoOps(), { status: true, spin: false });
    const bePath = join(process.env.VSHM_STATUS_DIR!, `${process.pid}.json`);
    const seen: { inEvent: number; nextTurn: number }[] = [];
    be.transport.on('session', () => {
      const inEvent = readStatusFile(bePath).transport.status;
      setImmediate(() => setImmediate(() => seen.push({ inEvent, nextTurn: readStatusFile(bePath).transport.status })));
    });
    const fe = await openFrontend(socketPath, new IdleDriver(), { status: true, spin: false });
    try {
      await fe.ready;
      await until(() => seen.length > 0, "the back-end's session");
      expect(seen[0]!.inEvent & 0x04, 'DRIVER_OK in the file during the event').to.equal(0);
      expect(seen[0]!.nextTurn & 0x04, 'DRIVER_OK in the file after it').to.equal(0x04);
    } finally {
      await fe.transport.close();
      fe.peer.close();
      await be.transport.close();
      be.peer.close();
    }
    expect(readdirSync(process.env.VSHM_STATUS_DIR!)).to.deep.equal([]);
  });

  it('a write that fails removes the file it could not update (no stale facts for vshm-inspect)', async () => {
    const be = await openBackend(socketPath, echoOps(), { status: true, spin: false });
    const bePath = join(process.env.VSHM_STATUS_DIR!, `${process.pid}.json`);
    try {
      expect(readStatusFile(bePath).transport.role).to.equal('back-end');
      // The next write cannot go through: its temporary name is taken by a directory (as a full
      // disk or an exhausted quota would refuse it, but deterministic).
      mkdirSync(`${bePath}.tmp`);
      const fe = await openFrontend(socketPath, new IdleDriver(), { status: false, spin: false });
      try {
        await fe.ready;
        await until(() => !readdirSync(process.env.VSHM_STATUS_DIR!).includes(`${process.pid}.json`), 'the stale file removed');
      } finally {
        await fe.transport.close();
        fe.peer.close();
      }
    } finally {
      await be.transport.close();
      be.peer.close();
    }
  });

  it('no status option: no file', async () => {
    const be = await openBackend(socketPath, echoOps(), { spin: false });
    expect(listStatusFiles(process.env.VSHM_STATUS_DIR!)).to.deep.equal([]);
    await be.transport.close();
    be.peer.close();
  });

  it('a status directory that is not private is refused: the link runs without a file', async () => {
    const shared = join(dir, 'shared');
    mkdirSync(shared, { mode: 0o755 });
    chmodSync(shared, 0o755);
    const be = await openBackend(socketPath, echoOps(), { spin: false });
    const pub = publishStatus(be.peer, be.transport, { dir: shared });
    expect(pub.path).to.equal(null);
    expect(readdirSync(shared)).to.deep.equal([]);
    pub.close();
    const link = join(dir, 'link');
    mkdirSync(join(dir, 'target'), { mode: 0o700 });
    symlinkSync(join(dir, 'target'), link);
    const pub2 = publishStatus(be.peer, be.transport, { dir: link });
    expect(pub2.path).to.equal(null);
    pub2.close();
    await be.transport.close();
    be.peer.close();
  });

  it("the environment's status directory unusable: one VSHM_WARN_STATUS_DIR warning naming it and why, once per directory; a directory the caller chose: none", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    // Only this test's listener while it runs: the printer in place (Node's, or a CLI's voice left
    // by an in-process CLI test) would print the expected warnings into the test output.
    const printers = process.rawListeners('warning') as ((w: Error) => void)[];
    process.removeAllListeners('warning');
    process.on('warning', onWarning);
    try {
      const shared = join(dir, 'shared');
      mkdirSync(shared, { mode: 0o755 });
      chmodSync(shared, 0o755);
      process.env.VSHM_STATUS_DIR = shared;
      const be = await openBackend(socketPath, echoOps(), { spin: false });
      const pubs = [publishStatus(be.peer, be.transport), publishStatus(be.peer, be.transport)];
      const missing = join(dir, 'file-in-the-way');
      writeFileSync(missing, '');
      process.env.VSHM_STATUS_DIR = join(missing, 'status');
      pubs.push(publishStatus(be.peer, be.transport), publishStatus(be.peer, be.transport, { dir: join(missing, 'other') }));
      await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
      expect(pubs.map((p) => p.path)).to.deep.equal([null, null, null, null]);
      expect(warnings.map((w) => [(w as { code?: string }).code, w.message])).to.deep.equal([
        ['VSHM_WARN_STATUS_DIR', `no status file for vshm-inspect: ${shared} is not a private directory of uid ${process.geteuid!()} (VSHM_STATUS_DIR)`],
        ['VSHM_WARN_STATUS_DIR', `no status file for vshm-inspect: ${join(missing, 'status')} (VSHM_STATUS_DIR) cannot be created: ENOTDIR (not a directory)`],
      ]);
      for (const p of pubs) p.close();
      await be.transport.close();
      be.peer.close();
    } finally {
      process.off('warning', onWarning);
      for (const p of printers) process.on('warning', p);
    }
  });

  it('a publisher removes the files of processes that no longer exist', async () => {
    const d = join(dir, 'stale');
    mkdirSync(d, { mode: 0o700 });
    chmodSync(d, 0o700);
    // Above the kernel's largest pid_max (2^22): no such process can exist.
    writeFileSync(join(d, '4194305.json'), '{}');
    writeFileSync(join(d, '4194305.1.json'), '{}');
    const be = await openBackend(socketPath, echoOps(), { spin: false });
    const pub = publishStatus(be.peer, be.transport, { dir: d });
    expect(readdirSync(d)).to.deep.equal([`${process.pid}.json`]);
    pub.close();
    expect(readdirSync(d)).to.deep.equal([]);
    await be.transport.close();
    be.peer.close();
  });

  it('a process whose real and effective uids differ publishes into the directory its effective uid owns', async () => {
    const d = join(dir, 'ours');
    const be = await openBackend(socketPath, echoOps(), { spin: false });
    const { getuid } = process;
    // A setuid program or `setpriv --ruid` (faked: no second user needed): the directory is made
    // with the effective uid, and is ours by it.
    process.getuid = () => (process.geteuid?.() ?? 0) + 1;
    let pub: ReturnType<typeof publishStatus>;
    try {
      pub = publishStatus(be.peer, be.transport, { dir: d });
    } finally {
      process.getuid = getuid;
    }
    expect(pub.path).to.equal(join(d, `${process.pid}.json`));
    expect(statSync(pub.path!).uid).to.equal(process.geteuid?.());
    pub.close();
    await be.transport.close();
    be.peer.close();
  });

  it('readStatusFile refuses what is not a status file of this format', () => {
    const p = join(dir, '1.json');
    for (const text of ['not json', '{}', JSON.stringify({ format: 'other' }), JSON.stringify({ format: STATUS_FORMAT, pid: 1 })]) {
      writeFileSync(p, text);
      expect(() => readStatusFile(p)).to.throw(StatusFileError).with.property('code', 'VSHM_ERR_STATUS_FILE');
    }
    writeFileSync(p, JSON.stringify({ format: STATUS_FORMAT, pid: 1, peer: { id: 0, maxPeers: 2, vectors: 1, protocol: 0xc003 }, memory: { ino: 1, size: 65536, outputSectionSize: 0 }, transport: { role: 'back-end', phase: 'serving', deviceId: 3, offeredFeatures: '0x1', negotiatedFeatures: null, status: 15, headerSize: 88, queues: [{ index: 0, maxSize: 8, size: 8, enabled: true, running: true, deviceVector: 1, driverVector: 1, desc: '0x100', avail: 'zzz', used: '0x300' }] } }));
    expect(() => readStatusFile(p)).to.throw(StatusFileError, /address/);
    // A file of an earlier version has no memory.dev and is still read; a malformed one is refused.
    const good = { format: STATUS_FORMAT, pid: 1, updated: '', peer: { id: 0, maxPeers: 2, vectors: 1, protocol: 0xc003 }, memory: { ino: 1, size: 65536, outputSectionSize: 0 }, transport: { role: 'back-end', phase: 'serving', deviceId: 3, offeredFeatures: '0x1', negotiatedFeatures: null, status: 15, headerSize: 88, queues: [] } };
    writeFileSync(p, JSON.stringify(good));
    expect(readStatusFile(p).memory).to.deep.equal({ ino: 1, size: 65536, outputSectionSize: 0 });
    writeFileSync(p, JSON.stringify({ ...good, memory: { ...good.memory, dev: '0x2a' } }));
    expect(readStatusFile(p).memory.dev).to.equal('0x2a');
    for (const dev of ['42', 42, '0x', '0xZZ', null]) {
      writeFileSync(p, JSON.stringify({ ...good, memory: { ...good.memory, dev } }));
      expect(() => readStatusFile(p), JSON.stringify(dev)).to.throw(StatusFileError, /memory/);
    }
    expect(() => readStatusFile(p, (process.geteuid?.() ?? 0) + 1)).to.throw(StatusFileError, /belongs to uid/);
  });

  it('statusDirectory: VSHM_STATUS_DIR, then XDG_RUNTIME_DIR/vshm, then /tmp/vshm-UID', () => {
    expect(statusDirectory({ VSHM_STATUS_DIR: '/a', XDG_RUNTIME_DIR: '/b' }, 7)).to.equal('/a');
    expect(statusDirectory({ XDG_RUNTIME_DIR: '/run/user/7' }, 7)).to.equal('/run/user/7/vshm');
    expect(statusDirectory({}, 7)).to.equal('/tmp/vshm-7');
    // A relative VSHM_STATUS_DIR is taken from the process's working directory.
    expect(statusDirectory({ VSHM_STATUS_DIR: 'st' }, 7, '/srv/app')).to.equal('/srv/app/st');
    expect(statusDirectory({ VSHM_STATUS_DIR: '../st' }, 7, '/srv/app')).to.equal('/srv/st');
    expect(statusDirectory({ VSHM_STATUS_DIR: '/abs' }, 7, '/srv/app')).to.equal('/abs');
    // By default the effective uid: the one that owns the directory (files are made with it).
    const { getuid, geteuid } = process;
    process.getuid = () => 4001;
    process.geteuid = () => 4002;
    try {
      expect(statusDirectory({})).to.equal('/tmp/vshm-4002');
    } finally {
      process.getuid = getuid;
      process.geteuid = geteuid;
    }
  });
});
