/**
 * virtio-rng end to end in separate processes: `vshm-server -P 0x8004`, then the rng back-end,
 * then the rng front-end, each a child running the bin shims over the compiled dist (built by
 * `npm test`'s pretest). Waits for stderr lines and exits only — no sleeps.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = (p: string): string => fileURLToPath(new URL(`../../../${p}`, import.meta.url));
const SERVER = root('packages/transport/bin/vshm-server.js');
const BACKEND = root('examples/virtio-rng/bin/vshm-rng-backend.js');
const FRONTEND = root('examples/virtio-rng/bin/vshm-rng-frontend.js');
const BOUND = 30000;

interface Proc {
  proc: ChildProcess;
  out(): string;
  err(): string;
  /** Resolves when stderr matches `re` (now or later); rejects on exit first or after the bound. */
  stderrLine(re: RegExp): Promise<void>;
  exit: Promise<number | null>;
}

function start(script: string, args: string[]): Proc {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBUG: '' } });
  let out = '';
  let err = '';
  let exited = false;
  const watchers: (() => void)[] = [];
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of watchers.slice()) w();
  });
  const exit = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      exited = true;
      for (const w of watchers.slice()) w();
      resolve(code);
    }),
  );
  return {
    proc,
    out: () => out,
    err: () => err,
    exit,
    stderrLine: (re) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no stderr ${re} within ${BOUND} ms: ${err}`)), BOUND);
        const check = (): void => {
          if (re.test(err)) {
            clearTimeout(timer);
            resolve();
          } else if (exited) {
            clearTimeout(timer);
            reject(new Error(`${script} exited before ${re}: ${err}`));
          }
        };
        watchers.push(check);
        check();
      }),
  };
}

async function stop(p: Proc | undefined): Promise<void> {
  if (p === undefined || p.proc.exitCode !== null || p.proc.signalCode !== null) return;
  p.proc.kill('SIGTERM');
  await p.exit;
}

describe('virtio-rng example: server, back-end and front-end in separate processes', () => {
  let dir: string;
  let socket: string;
  let procs: Proc[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-rng-'));
    socket = join(dir, 'sock');
    procs = [];
  });
  afterEach(async () => {
    // Front-ends first, then the back-end, then the server.
    for (const p of procs.reverse()) await stop(p);
    rmSync(dir, { recursive: true, force: true });
  });

  async function server(): Promise<void> {
    const s = start(SERVER, ['-S', socket, '-P', '0x8004', '-l', '64K', '-V', '2']);
    procs.push(s);
    await s.stderrLine(/listening on/);
  }

  async function backend(): Promise<Proc> {
    const b = start(BACKEND, ['-S', socket]);
    procs.push(b);
    await b.stderrLine(/serving on .* as peer 0/);
    return b;
  }

  function frontend(args: string[]): Proc {
    const f = start(FRONTEND, ['-S', socket, ...args]);
    procs.push(f);
    return f;
  }

  it('transfers random bytes: right lengths, not all zero, different reads', async () => {
    await server();
    const be = await backend();
    const fe = frontend(['-n', '64', '-c', '3']);
    expect(await fe.exit, fe.err()).to.equal(0);
    const lines = fe.out().trim().split('\n');
    expect(lines).to.have.length(3);
    for (const l of lines) {
      expect(l).to.match(/^[0-9a-f]{128}$/);
      expect(/^0+$/.test(l)).to.equal(false);
    }
    expect(new Set(lines).size).to.equal(3);
    await be.stderrLine(/vshm-rng-backend: front-end connected \(features 0x[0-9a-f]+\)/);
  });

  it('serves a second front-end after the first left, with reads larger than shared memory', async () => {
    await server();
    const be = await backend();
    const first = frontend(['-n', '16']);
    expect(await first.exit, first.err()).to.equal(0);
    await be.stderrLine(/peer 1 gone/); // the server freed id 1 for the next front-end
    const second = frontend(['-n', '100000']);
    expect(await second.exit, second.err()).to.equal(0);
    const hex = second.out().trim();
    expect(hex).to.have.length(200000);
    const bytes = Buffer.from(hex, 'hex');
    // 100000 random bytes: every byte value occurs (the chance of a miss is ~256·e^-390).
    expect(new Set(bytes).size).to.equal(256);
    await be.stderrLine(/front-end left[\s\S]*front-end left/);
  });

  it('a read in flight fails with an error when the back-end process dies (§8 item 35)', async () => {
    await server();
    const be = await backend();
    const fe = frontend(['-n', '4096', '-c', '1000000']);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no output from the front-end')), BOUND);
      fe.proc.stdout!.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    be.proc.kill('SIGKILL');
    expect(await fe.exit).to.equal(1);
    expect(fe.err()).to.match(/vshm-rng-frontend: /);
  });

  it('a front-end whose stdout fails (a full file) stops reading: one line, exit 1, no stack', async () => {
    await server();
    await backend();
    const full = openSync('/dev/full', 'w');
    try {
      const fe = spawn(process.execPath, [FRONTEND, '-S', socket, '-n', '8', '-c', '1000'], { stdio: ['ignore', full, 'pipe'] });
      let err = '';
      fe.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((resolve) => fe.on('close', (c) => resolve(c)));
      expect(err).to.equal('vshm-rng-frontend: cannot write to stdout: ENOSPC (no space left on device)\n');
      expect(code).to.equal(1);
    } finally {
      closeSync(full);
    }
  });

  it('the back-end dying between two reads (the first delivered, the next not posted yet) still fails the run with exit 1', async () => {
    await server();
    const be = await backend();
    // The real CLI (runFrontend) with the race made certain, in this child only: its second read
    // is issued once the session ended (remove()), as happens when the back-end completed the
    // first read and died before the front-end saw either — ending that session delivers the
    // completion first, and the next read used to wait for a back-end that never comes.
    const code = [
      `import { RngDriver } from ${JSON.stringify(root('examples/virtio-rng/src/driver.ts'))};`,
      'let removed;',
      'const sessionEnded = new Promise((resolve) => (removed = resolve));',
      'const remove = RngDriver.prototype.remove;',
      'RngDriver.prototype.remove = function (reason) { remove.call(this, reason); removed(); };',
      'const read = RngDriver.prototype.read;',
      'let reads = 0;',
      'RngDriver.prototype.read = async function (n) { if (reads++ > 0) await sessionEnded; return read.call(this, n); };',
      `const { runFrontend } = await import(${JSON.stringify(root('examples/virtio-rng/src/cli.ts'))});`,
      `await runFrontend(['-S', ${JSON.stringify(socket)}, '-n', '16', '-c', '2']);`,
    ].join('\n');
    const fe = start('--import', ['tsx', '--input-type=module', '-e', code]);
    procs.push(fe);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no output from the front-end: ${fe.err()}`)), BOUND);
      fe.proc.stdout!.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    be.proc.kill('SIGKILL');
    expect(await fe.exit, fe.err()).to.equal(1);
    expect(fe.out()).to.match(/^[0-9a-f]{32}\n$/);
    expect(fe.err()).to.match(/^vshm-rng-frontend: [^\n]+\n$/);
  });

  it('a front-end started first is refused with a clear error (§4.1)', async () => {
    await server();
    const fe = frontend(['-n', '8']);
    expect(await fe.exit).to.equal(1);
    expect(fe.err()).to.match(/start the back-end first/);
  });

  it('a back-end on a server for another device id is refused (§4.1)', async () => {
    const s = start(SERVER, ['-S', socket, '-P', '0x8003', '-l', '64K']);
    procs.push(s);
    await s.stderrLine(/listening on/);
    const be = start(BACKEND, ['-S', socket]);
    procs.push(be);
    expect(await be.exit).to.equal(1);
    expect(be.err()).to.match(/device id 3/);
  });

  it('rejects a bad flag with one stderr line and exit 2', async () => {
    const fe = start(FRONTEND, ['-n', 'lots']);
    procs.push(fe);
    expect(await fe.exit).to.equal(2);
    expect(fe.err().trim().split('\n')).to.deep.equal(["vshm-rng-frontend: --bytes (-n) must be an integer 1-1048576, got 'lots' (try --help)"]);
  });

  it('an exception thrown by the device is printed by the back-end CLI with its stack', async () => {
    await server();
    // The real CLI (runBackend) over a device whose activate() throws: patched in this child only.
    const code = [
      `import { RngDevice } from ${JSON.stringify(root('examples/virtio-rng/src/device.ts'))};`,
      `RngDevice.prototype.activate = function brokenActivate() { throw new Error('device bug'); };`,
      `const { runBackend } = await import(${JSON.stringify(root('examples/virtio-rng/src/cli.ts'))});`,
      `await runBackend(['-S', ${JSON.stringify(socket)}]);`,
    ].join('\n');
    const be = start('--import', ['tsx', '--input-type=module', '-e', code]);
    procs.push(be);
    await be.stderrLine(/serving on .* as peer 0/);
    frontend(['-n', '8']); // its read never completes: the device keeps failing; cleanup stops it
    await be.stderrLine(/vshm-rng-backend: device activate\(\) threw: Error: device bug\n\s+at \S*brokenActivate /);
    // A session whose activate() threw was never announced: no "connected", so no "left" either.
    expect(be.err()).to.not.match(/front-end (connected|left)/);
  });

  it('an uncaught exception in the back-end is one internal-error line with its stack, exit 1, even if it recurs', async () => {
    await server();
    // A preload whose timer throws every millisecond from SIGUSR2 on: a failure nothing catches.
    const be = start('--import', [root('test/fixtures/throw-on-sigusr2.mjs'), BACKEND, '-S', socket]);
    procs.push(be);
    await be.stderrLine(/serving on .* as peer 0/);
    be.proc.kill('SIGUSR2');
    expect(await be.exit).to.equal(1);
    expect(be.err().match(/^vshm-rng-backend: internal error: Error: injected failure\n\s+at /gm) ?? [], be.err()).to.have.length(1);
    expect(be.err()).to.not.match(/^Error: injected failure/m); // not Node's default report
  });

  it('the back-end exits 0 on SIGHUP (its terminal closed), as on SIGINT/SIGTERM', async () => {
    await server();
    const be = await backend();
    be.proc.kill('SIGHUP');
    expect(await be.exit).to.equal(0);
    expect(be.proc.signalCode).to.equal(null);
  });

  it('a signal while the back-end is still connecting ends it with 0, not the default action', async () => {
    // A listener that accepts and never answers: the back-end waits inside its connect, with no
    // line printed yet. The accept is the event that says it got there.
    const silent = createServer();
    const accepted = new Promise<void>((resolve) => silent.once('connection', () => resolve()));
    await new Promise<void>((resolve) => silent.listen(socket, resolve));
    try {
      const be = start(BACKEND, ['-S', socket]);
      procs.push(be);
      await accepted;
      be.proc.kill('SIGHUP');
      expect(await be.exit).to.equal(0);
      expect(be.proc.signalCode).to.equal(null);
      expect(be.err()).to.equal('');
    } finally {
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('the back-end prints its capabilities as one JSON object', async () => {
    const be = start(BACKEND, ['--print-capabilities']);
    procs.push(be);
    expect(await be.exit).to.equal(0);
    expect(JSON.parse(be.out())).to.deep.equal({
      type: 'rng',
      deviceId: 4,
      features: ['VERSION_1', 'ACCESS_PLATFORM', 'ORDER_PLATFORM'],
      queues: 1,
      options: ['--server', '--quiet', '--print-capabilities', '--help'],
    });
  });
});
