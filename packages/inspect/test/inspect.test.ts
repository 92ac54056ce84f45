/**
 * vshm-inspect against a LIVE session: vshm-server, the console back-end and the console
 * front-end as real processes, each publishing its status file into the test's own directory.
 * Checks the --json fields (state, status, features, queues, indices, sections), that nothing is
 * written to the shared memory (a checksum of state table and header before and after, and a
 * write through the inspector's mapping faults), -M mode, --watch, and the CLI voice (one line,
 * exit 1 for a process it cannot attach to, exit 2 for usage errors).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { expect } from 'chai';
import { HDR_CONFIG, STATUS_FORMAT, readStatusFile, type StatusFile } from '@vshm/transport/inspect';
import { BACKEND_BIN, FRONTEND_BIN, ROOT, SERVER_BIN, until, useScratch, type Proc, type Scratch } from '../../../test/e2e-procs.js';
import { Writable } from 'node:stream';
import { main } from '../src/cli.js';
import type { Snapshot } from '../src/index.js';

/** Collects what the command writes. */
class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

const INSPECT_BIN = join(ROOT, 'packages/inspect/bin/vshm-inspect.js');

interface Session {
  server: Proc;
  backend: Proc;
  frontend: Proc;
  statusDir: string;
  env: NodeJS.ProcessEnv;
}

function statusFiles(dir: string): StatusFile[] {
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  return names.flatMap((n) => {
    try {
      return [readStatusFile(join(dir, n))];
    } catch {
      return []; // being renamed into place
    }
  });
}

/**
 * Server (-o 8K: the rings spread over sections), back-end, front-end; resolves once both sides
 * are live. `relativeStatusDir`: the two sides run in the scratch directory with
 * VSHM_STATUS_DIR=status (relative to it).
 */
async function startSession(s: Scratch, memory: string[] = [], relativeStatusDir = false): Promise<Session> {
  const statusDir = s.path('status');
  const env = { ...process.env, VSHM_STATUS_DIR: relativeStatusDir ? 'status' : statusDir };
  const cwd = relativeStatusDir ? dirname(statusDir) : undefined;
  const server = s.spawn('server', SERVER_BIN, ['-l', '64K', '-o', '8K', '-n', '2', '-V', '3', '-P', '0x8003', '-S', s.server, ...memory]);
  await server.untilStderr(/listening on/);
  const backend = s.spawn('backend', BACKEND_BIN, ['-S', s.server], { env, cwd });
  await backend.untilStderr(/serving the console on .* as peer 0/);
  const frontend = s.spawn('frontend', FRONTEND_BIN, ['-S', s.server, '-q'], { env, cwd });
  await until(() => {
    const f = statusFiles(statusDir);
    return f.some((x) => x.transport.role === 'back-end' && x.transport.phase === 'serving' && (x.transport.status & 4) !== 0) &&
      f.some((x) => x.transport.role === 'front-end' && x.transport.phase === 'live');
  }, 'both sides live in their status files');
  return { server, backend, frontend, statusDir, env };
}

function inspect(args: string[], env: NodeJS.ProcessEnv = process.env): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [INSPECT_BIN, ...args], { env, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function inspectJson(args: string[], env?: NodeJS.ProcessEnv): Snapshot {
  const r = inspect([...args, '--json'], env);
  expect(r.code, r.stderr).to.equal(0);
  return JSON.parse(r.stdout) as Snapshot;
}

/** The checks every snapshot of a live console session passes. */
function checkLiveConsole(snap: Snapshot, be: Proc, fe: Proc): void {
  expect(snap.layout).to.include({ size: 65536, maxPeers: 2, outputSectionSize: 8192, rwSize: 65536 - 4096 - 2 * 8192 });
  expect(snap.stateTable.map((e) => e.meaning)).to.deep.equal(['READY', 'READY']);
  const h = snap.header!;
  expect(h).to.not.equal(null);
  expect(h.revision).to.equal(1);
  expect(h.size).to.be.at.least(HDR_CONFIG);
  expect(h.writeTransaction).to.equal('0x0');
  expect(h.deviceStatus.names).to.include('DRIVER_OK').and.include('FEATURES_OK');
  expect(h.configGeneration % 2).to.equal(0);
  expect(h.config.length).to.equal((h.size - HDR_CONFIG) * 2);
  expect(snap.sides.map((x) => [x.role, x.pid])).to.deep.equal([['back-end', be.child.pid], ['front-end', fe.child.pid]]);
  const beSide = snap.sides[0];
  expect(beSide.negotiatedFeatures!.names).to.include('VERSION_1').and.include('ACCESS_PLATFORM');
  expect(beSide.status.names).to.include('DRIVER_OK');
  // The console without MULTIPORT: receiveq and transmitq (§7.2).
  expect(snap.queues).to.have.length(2);
  for (const q of snap.queues) {
    expect(q.enabled).to.equal(true);
    expect(q.size).to.be.greaterThan(0);
    expect(q.size & (q.size - 1)).to.equal(0);
    const l = q.live!;
    expect(l, q.note).to.not.equal(null);
    expect(l.inFlight).to.equal((l.availIdx - l.usedIdx) & 0xffff);
    expect(l.inFlight).to.be.at.most(q.size);
    for (const a of [q.desc, q.avail, q.used]) expect(a.section).to.match(/^(R\/W section|output section [01])$/);
  }
  // The header's queue window is the last queue the front-end selected, and matches it.
  const sel = snap.queues[h.queueSel];
  expect(h.queueWindow.desc).to.equal(sel.desc.addr);
  expect(h.queueWindow.driver).to.equal(sel.avail.addr);
  expect(h.queueWindow.device).to.equal(sel.used.addr);
  // The receive queue holds buffers the front-end posted for input.
  expect(snap.queues[0].live!.inFlight).to.be.greaterThan(0);
}

/** SHA-256 of the state table and the header of a POSIX shared-memory object, read through the file system. */
function headerDigest(shmPath: string): string {
  const bytes = readFileSync(shmPath);
  return createHash('sha256').update(bytes.subarray(0, 4096 + 0x100)).digest('hex');
}

describe('vshm-inspect (live console session)', function () {
  const s = useScratch(this);

  it('--pid of the back-end: --json shows DRIVER_OK, both queues with consistent indices and sections; the status dir is found through the process environment', async () => {
    const { backend, frontend } = await startSession(s);
    // No VSHM_STATUS_DIR here: the inspector reads it from /proc/PID/environ of the back-end.
    const noDir = { ...process.env };
    delete noDir.VSHM_STATUS_DIR;
    const snap = inspectJson(['--pid', String(backend.child.pid)], noDir);
    expect(snap.target.pid).to.equal(backend.child.pid);
    expect(snap.layout.source).to.equal('status-file');
    checkLiveConsole(snap, backend, frontend);
  });

  it('a relative VSHM_STATUS_DIR of the inspected process is taken from its working directory, not ours', async () => {
    const { backend, frontend } = await startSession(s, [], true);
    const noDir = { ...process.env };
    delete noDir.VSHM_STATUS_DIR;
    const r = spawnSync(process.execPath, [INSPECT_BIN, '--pid', String(backend.child.pid), '--json'], { env: noDir, cwd: '/', encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).to.equal(0);
    const snap = JSON.parse(r.stdout) as Snapshot;
    expect(snap.layout.source).to.equal('status-file');
    checkLiveConsole(snap, backend, frontend);
  });

  it('a snapshot that cannot be written (stdout a full file): one line naming the errno, exit 1, no stack', async () => {
    const { backend, env } = await startSession(s);
    const full = openSync('/dev/full', 'w');
    try {
      const r = spawnSync(process.execPath, [INSPECT_BIN, '--pid', String(backend.child.pid)], { env, stdio: ['ignore', full, 'pipe'], encoding: 'utf8', timeout: 60_000 });
      expect(r.status).to.equal(1);
      expect(r.stderr).to.equal('vshm-inspect: cannot write to stdout: ENOSPC (no space left on device)\n');
    } finally {
      closeSync(full);
    }
  });

  it('--pid of the front-end and of vshm-server show the same queues (the server holds the memory fd; status files are matched by inode)', async () => {
    const { server, backend, frontend, env } = await startSession(s);
    const viaFe = inspectJson(['--pid', String(frontend.child.pid)], env);
    const viaServer = inspectJson(['--pid', String(server.child.pid)], env);
    checkLiveConsole(viaFe, backend, frontend);
    checkLiveConsole(viaServer, backend, frontend);
    expect(viaServer.target.ino).to.equal(viaFe.target.ino);
    expect(viaServer.queues.map((q) => q.desc.addr)).to.deep.equal(viaFe.queues.map((q) => q.desc.addr));
  });

  it('-M NAME: attaches to the POSIX object, writes nothing (checksum before/after), and a write through its mapping faults', async () => {
    const name = `vshm-inspect-test-${process.pid}-${Date.now()}`;
    const { backend, frontend, env } = await startSession(s, ['-M', name]);
    const shmPath = `/dev/shm/${name}`;
    const before = headerDigest(shmPath);
    const snap = inspectJson(['-M', name], env);
    expect(snap.target.shm).to.equal(name);
    checkLiveConsole(snap, backend, frontend);
    const text = inspect(['-M', name], env);
    expect(text.code).to.equal(0);
    expect(text.stdout).to.match(/state table: peer 0 READY, peer 1 READY/);
    expect(text.stdout).to.match(/queue 1: size \d+/);
    expect(headerDigest(shmPath)).to.equal(before);
    // The mapping is PROT_READ: a store through it kills the process (SIGSEGV), it never reaches the session.
    const probe = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', `
        import addon from '@vshm/addon';
        import { attachShm } from '@vshm/inspect';
        const att = attachShm(addon, ${JSON.stringify(name)});
        process.stdout.write('attached\\n');
        new Uint8Array(att.window)[0x48] = 0xff;
        process.stdout.write('wrote\\n');`],
      { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 },
    );
    expect(probe.stdout).to.equal('attached\n');
    expect(probe.signal).to.equal('SIGSEGV');
    expect(headerDigest(shmPath)).to.equal(before);
  });

  it('--watch MS --json prints one snapshot per line until SIGTERM, then exits 0', async () => {
    const { backend, frontend, env } = await startSession(s);
    const w = s.spawn('inspect', INSPECT_BIN, ['--pid', String(backend.child.pid), '--watch', '20', '--json'], { env });
    await w.until(() => w.stdoutText.split('\n').filter((l) => l.length > 0).length >= 3, 'three snapshots');
    w.child.kill('SIGTERM');
    const { code } = await w.exited;
    expect(code).to.equal(0);
    const lines = w.stdoutText.split('\n').filter((l) => l.length > 0);
    for (const l of lines.slice(0, 3)) checkLiveConsole(JSON.parse(l) as Snapshot, backend, frontend);
  });

  it('--watch ends with exit 0 on SIGHUP (its terminal closed), as on SIGINT/SIGTERM', async () => {
    const { backend, env } = await startSession(s);
    const w = s.spawn('inspect', INSPECT_BIN, ['-p', String(backend.child.pid), '-w', '20'], { env });
    await w.untilStdout(/queues:/);
    w.child.kill('SIGHUP');
    expect(await w.exited).to.deep.equal({ code: 0, signal: null });
  });

  it('--watch ends with one line when the inspected process exits', async () => {
    const { backend, env } = await startSession(s);
    const w = s.spawn('inspect', INSPECT_BIN, ['-p', String(backend.child.pid), '-w', '20'], { env });
    await w.untilStdout(/queues:/);
    await backend.stop();
    const { code } = await w.exited;
    expect(code).to.equal(0);
    expect(w.stderr).to.equal(`vshm-inspect: process ${backend.child.pid} has exited\n`);
  });

  it('a front-end whose real uid is not its effective one: it publishes, and --pid finds its status file (both go by the effective uid)', async function () {
    // The two uids differ only for a setuid program or one started so (setpriv --ruid): as root.
    if (process.getuid?.() !== 0 || spawnSync('setpriv', ['--version']).status !== 0) this.skip();
    const statusDir = s.path('status');
    const env = { ...process.env, VSHM_STATUS_DIR: statusDir };
    const server = s.spawn('server', SERVER_BIN, ['-l', '64K', '-o', '8K', '-n', '2', '-V', '3', '-P', '0x8003', '-S', s.server]);
    await server.untilStderr(/listening on/);
    const backend = s.spawn('backend', BACKEND_BIN, ['-S', s.server], { env });
    await backend.untilStderr(/serving the console on .* as peer 0/);
    const frontend = s.spawn('frontend', FRONTEND_BIN, ['-S', s.server, '-q'], { env, wrap: ['setpriv', '--ruid=65534', '--'] });
    await until(() => frontend.exitCode !== null || statusFiles(statusDir).some((x) => x.pid === frontend.child.pid && x.transport.phase === 'live'), 'the front-end live in its status file');
    expect(frontend.exitCode, frontend.stderr).to.equal(null);
    expect(readFileSync(`/proc/${frontend.child.pid}/status`, 'utf8')).to.match(/^Uid:\t65534\t0\t/m);
    const snap = inspectJson(['--pid', String(frontend.child.pid)], env);
    expect(snap.layout.source).to.equal('status-file');
    checkLiveConsole(snap, backend, frontend);
  });

  it('status files are 0600 in a 0700 directory and disappear when the daemons exit', async () => {
    const { backend, frontend, statusDir } = await startSession(s);
    const { statSync } = await import('node:fs');
    expect(statSync(statusDir).mode & 0o777).to.equal(0o700);
    const names = readdirSync(statusDir).sort();
    expect(names).to.deep.equal([`${backend.child.pid}.json`, `${frontend.child.pid}.json`].sort());
    for (const n of names) expect(statSync(join(statusDir, n)).mode & 0o777).to.equal(0o600);
    expect(statusFiles(statusDir).every((f) => f.format === STATUS_FORMAT)).to.equal(true);
    await frontend.stop();
    await backend.stop();
    expect(readdirSync(statusDir)).to.deep.equal([]);
  });
});

describe('vshm-inspect (errors)', function () {
  this.timeout(60_000);

  it('a PID that does not exist: one line, exit 1', () => {
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
    const r = inspect(['--pid', String(gone)]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(`vshm-inspect: no process ${gone}\n`);
    expect(r.stdout).to.equal('');
  });

  it('a process without vshm memory: one line, exit 1', () => {
    const r = inspect(['--pid', String(process.pid)]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^vshm-inspect: process \d+ maps no vshm shared memory .*\n$/);
  });

  it('a process of another user: one line naming the access problem, exit 1', function () {
    if (process.getuid?.() !== 0) this.skip(); // needs root to run the inspector as another uid
    const r = spawnSync(process.execPath, [INSPECT_BIN, '--pid', String(process.pid)], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 1 || !/no access/.test(r.stderr)) {
      // The inspector could not even start as nobody (unreadable checkout): not this test's subject.
      if (/EACCES|Cannot find module/.test(r.stderr) && !/^vshm-inspect:/.test(r.stderr)) this.skip();
    }
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/^vshm-inspect: no access to process \d+ \(\/proc\/\d+\/maps: EACCES\); run as its user or as root\n$/);
  });

  it('-M of an object that does not exist: one line, exit 1', () => {
    const r = inspect(['-M', `vshm-inspect-none-${process.pid}`]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^vshm-inspect: no shared-memory object \/dev\/shm\/vshm-inspect-none-\d+ .*\n$/);
  });

  for (const [args, message] of [
    [[], 'give exactly one of --pid PID and -M NAME'],
    [['--pid', '1', '-M', 'x'], 'give exactly one of --pid PID and -M NAME'],
    [['--bogus'], "unknown option '--bogus'"],
    [['--pid'], "option '--pid' needs a value"],
    [['--pid', 'abc'], "bad pid 'abc'"],
    [['--pid', '0'], "bad pid '0'"],
    [['-M', 'a/b'], "bad shared-memory object name 'a/b'"],
    [['-p', '1', '--watch', '5'], 'watch period 5 ms is below 10 ms'],
    [['-p', '1', '--watch', 'x'], "unexpected argument 'x'"],
    [['-p', '1', '-n', '0'], 'the peer count must be 1…1024'],
    [['-p', '1', '-o', '12X'], "bad size '12X' (a number with an optional K, M or G suffix)"],
    [['-p', '1', '-o', '1'], 'output section size 1 is not a multiple of 4096'],
    [['-M', 'x', '-o', '6K'], 'output section size 6144 is not a multiple of 4096'],
    [['-p', '1', 'extra'], "unexpected argument 'extra'"],
  ] as const) {
    it(`usage error ${JSON.stringify(args)}: one line, exit 2`, async () => {
      const out = new Sink();
      const err = new Sink();
      expect(await main([...args], out, err)).to.equal(2);
      expect(err.text).to.equal(`vshm-inspect: ${message} (try --help)\n`);
      expect(out.text).to.equal('');
    });
  }

  it('the installed command exits 2 with the one line on a usage error', () => {
    const r = inspect(['--bogus']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.equal("vshm-inspect: unknown option '--bogus' (try --help)\n");
    expect(r.stdout).to.equal('');
  });

  it('-h prints the usage on stdout and exits 0', () => {
    const r = inspect(['-h']);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.match(/^Usage: vshm-inspect \(--pid PID \| -M NAME\)/);
    expect(r.stderr).to.equal('');
  });
});
