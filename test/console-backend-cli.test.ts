/**
 * vshm-console-backend CLI error paths and exits, with the real binary and server.
 */
import { expect } from 'chai';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { IvshmemPeer } from '@vshm/transport';
import { useScratch, BACKEND_BIN } from './e2e-procs.js';

function oneLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l !== '');
  expect(lines, stderr).to.have.length(1);
  expect(lines[0]).to.match(/^vshm-console-backend: /);
  return lines[0];
}

describe('vshm-console-backend: command line', function () {
  const s = useScratch(this);

  it('prints usage with --help and exits 0', async () => {
    const p = s.spawn('backend', BACKEND_BIN, ['--help']);
    expect((await p.exited).code).to.equal(0);
    expect(p.stdoutText).to.match(/^Usage: vshm-console-backend/);
    expect(p.stdoutText).to.match(/Ctrl-\] then q/);
  });

  // The argument table is checked in-process (packages/backend-console/test/cli-args.test.ts);
  // here only that the binary prints that one line and exits 2.
  for (const args of [['--bogus'], ['--settle-ms', '-5']]) {
    it(`exits 2 with one "(try --help)" line for ${args.join(' ')}`, async () => {
      const p = s.spawn('backend', BACKEND_BIN, args);
      expect((await p.exited).code).to.equal(2);
      expect(oneLine(p.stderr)).to.match(/^vshm-console-backend: .*\(try --help\)$/);
    });
  }

  it('--print-capabilities prints one JSON object and exits 0', async () => {
    const p = s.spawn('backend', BACKEND_BIN, ['--print-capabilities', '--port', 'a']);
    expect((await p.exited).code).to.equal(0);
    const caps = JSON.parse(p.stdout.toString());
    expect(caps).to.include({ type: 'console', deviceId: 3, queues: 6 });
    expect(caps.features).to.include('MULTIPORT');
    expect(caps.options).to.include('--server');
    expect(p.stderr).to.equal('');
  });

  it('exits 1 with one line naming the socket and the errno when the server socket is missing', async () => {
    const p = s.spawn('backend', BACKEND_BIN, ['-S', s.server]);
    expect((await p.exited).code).to.equal(1);
    expect(oneLine(p.stderr)).to.match(/^vshm-console-backend: cannot connect to .*vshm\.sock: ENOENT \(no such file or directory\); start a server/);
  });

  it('--port-socket in a missing directory or too long for a UNIX socket: one line naming the errno in words, exit 1', async () => {
    await s.startServer();
    for (const [path, errno] of [
      [s.path('missing/port.sock'), 'ENOENT (no such file or directory)'],
      [s.path('p'.repeat(120)), 'ENAMETOOLONG (name too long)'],
    ]) {
      const p = s.spawn('backend', BACKEND_BIN, ['-S', s.server, '--port-socket', `p=${path}`]);
      expect((await p.exited).code).to.equal(1);
      expect(p.stderr).to.equal(`vshm-console-backend: cannot listen on ${path}: ${errno}\n`);
    }
  });

  it('a status directory that cannot be created (under /proc) does not stop it: one warning line, it serves, and SIGTERM exits 0', async () => {
    await s.startServer();
    // mkdir() there fails ENOENT under an existing parent: no status file, and one line says why.
    const be = await s.startBackend([], { env: { VSHM_STATUS_DIR: '/proc/vshm-no-such-dir/status' } });
    await be.untilStderr(/warning: no status file/);
    be.child.kill('SIGTERM');
    expect((await be.exited).code).to.equal(0);
    const warnings = be.stderr.split('\n').filter((l) => /warning/.test(l));
    expect(warnings).to.deep.equal([
      'vshm-console-backend: warning: no status file for vshm-inspect: /proc/vshm-no-such-dir/status (VSHM_STATUS_DIR) cannot be created: ENOENT (no such file or directory)',
    ]);
  });

  it('--embedded with a TMPDIR that is missing, or too long for a socket path: one line naming it and the errno, nothing left', async () => {
    const long = s.path('d'.repeat(100));
    mkdirSync(long);
    for (const [tmp, line] of [
      [s.path('missing'), `vshm-console-backend: cannot create the embedded server's directory in ${s.path('missing')}: ENOENT (no such file or directory)`],
      [long, new RegExp(`^vshm-console-backend: cannot start the embedded server on ${long}/vshm-console-[^/]+/ivshmem\\.sock: ENAMETOOLONG \\(name too long\\)$`)],
    ] as const) {
      const p = s.spawn('backend', BACKEND_BIN, ['--embedded'], { env: { ...process.env, TMPDIR: tmp } });
      expect((await p.exited).code).to.equal(1);
      const lines = p.stderr.split('\n').filter((l) => l !== '');
      expect(lines, p.stderr).to.have.length(1);
      if (typeof line === 'string') expect(lines[0]).to.equal(line);
      else expect(lines[0]).to.match(line);
    }
    expect(readdirSync(long)).to.deep.equal([]);
  });

  it('--port-exec with a command that exits at once: one line saying so (it was silent)', async () => {
    await s.startServer();
    const be = await s.startBackend(['--port-exec', 'job=exit 3']);
    await be.untilStderr(/port job: command exited/);
    expect(be.stderr).to.include('vshm-console-backend: port job: command exited (status 3); the port stays closed on the host side\n');
    be.child.kill('SIGTERM');
    expect((await be.exited).code).to.equal(0);
  });

  it('a stdout whose reader went away (EPIPE): one line saying the console output is dropped; it keeps serving', async () => {
    await s.startServer();
    const be = await s.startBackend();
    be.child.stdout!.destroy(); // the reader of its stdout goes away
    // The front-end's output on port 0 is the first write to the broken pipe.
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo to-the-console; exec sleep 600']);
    await be.untilStderr(/cannot write to stdout/);
    expect(be.stderr).to.match(/^vshm-console-backend: cannot write to stdout: EPIPE \(broken pipe\); console output is dropped from now on$/m);
    expect(be.running).to.equal(true);
    fe.child.kill('SIGKILL');
    be.child.kill('SIGTERM');
    expect((await be.exited).code).to.equal(0);
  });

  it('a stdout whose reader went away (EPIPE): what is typed afterwards still reaches the front-end', async () => {
    await s.startServer();
    const be = await s.startBackend();
    be.child.stdout!.destroy();
    // The command's first line hits the broken pipe; then it waits for a line of input and exits.
    const got = s.path('got');
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo to-the-console; read l; echo "$l" > "$1"', 'sh', got]);
    await be.untilStderr(/cannot write to stdout/);
    be.write('typed-after-epipe\n');
    await fe.until(() => fe.exitCode !== null, 'the command read the line and exited');
    expect((await fe.exited).code).to.equal(0);
    expect(readFileSync(got, 'utf8')).to.equal('typed-after-epipe\n');
    be.child.kill('SIGTERM');
    expect((await be.exited).code).to.equal(0);
  });

  it('--socket (deprecated) warns once and still works as -S', async () => {
    const p = s.spawn('backend', BACKEND_BIN, ['--socket', s.server]);
    expect((await p.exited).code).to.equal(1);
    const lines = p.stderr.split('\n').filter((l) => l !== '');
    expect(lines[0]).to.equal('vshm-console-backend: warning: --socket is deprecated: use -S/--server PATH (same meaning)');
    expect(lines[1]).to.match(/cannot connect to .*vshm\.sock: ENOENT/);
    expect(lines).to.have.length(2);
  });

  it('exits 1 with one line when it gets peer 1 (something else connected first)', async () => {
    await s.startServer();
    const squatter = await IvshmemPeer.connect(s.server); // takes peer 0
    try {
      const p = s.spawn('backend', BACKEND_BIN, ['-S', s.server]);
      expect((await p.exited).code).to.equal(1);
      expect(oneLine(p.stderr)).to.match(/connected as peer 1 \(front-end role, protocol 0x8003\): start the back-end first/);
    } finally {
      squatter.close();
    }
  });

  it('exits 1 with one line when the server is not a console', async () => {
    await s.startServer('0x8004');
    const p = s.spawn('backend', BACKEND_BIN, ['-S', s.server]);
    expect((await p.exited).code).to.equal(1);
    expect(oneLine(p.stderr)).to.match(/not a console/);
  });

  it('exits 0 on SIGINT and SIGTERM, leaving peer 0 free for the next back-end', async () => {
    await s.startServer();
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const be = await s.startBackend();
      be.child.kill(sig);
      expect((await be.exited).code).to.equal(0);
    }
  });
});
