/**
 * The daemons on a terminal that stops taking output (node-pty, its master side no longer read: an
 * ssh session whose network stalled, a frozen terminal emulator): `vshm-server`,
 * `vshm-blk-backend`, `vshm-blk-frontend` and the example's `vshm-rng-backend`. Node writes to a
 * terminal synchronously unless told otherwise, so a stalled one held a daemon in write(2) at its
 * next line — a peer arriving, a front-end connecting, an NBD client refused — and with it every
 * process that depends on it. Here the lines wait for the terminal while the daemon goes on
 * serving, and every way out (a signal, a usage error) ends within the exit's bound.
 */
import { expect } from 'chai';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { IvshmemPeer } from '@vshm/transport';
import { openBlock, type BlockLink } from '@vshm/frontend-blk';
import { RawNbd } from './e2e-nbd.js';
import { ROOT, SERVER_BIN, useScratch } from './e2e-procs.js';
import { alive } from './e2e-system.js';
import { PtyProc } from './e2e-pty.js';

const BLK_BACKEND_BIN = join(ROOT, 'packages/backend-blk/bin/vshm-blk-backend.js');
const BLK_FRONTEND_BIN = join(ROOT, 'packages/frontend-blk/bin/vshm-blk-frontend.js');
const RNG_BACKEND_BIN = join(ROOT, 'examples/virtio-rng/bin/vshm-rng-backend.js');
const RNG_FRONTEND_BIN = join(ROOT, 'examples/virtio-rng/bin/vshm-rng-frontend.js');
/** Preload: the kit's bound on a terminal stderr at 16 KiB (see the fixture). */
const SMALL_STDERR_BOUND = join(ROOT, 'test/fixtures/small-stderr-bound.mjs');

/** How long the daemons wait at exit for a terminal to take what is queued (exitAfterOutput's default). */
const EXIT_OUTPUT_WAIT_MS = 2000;
/** Room on top of that bound for a loaded machine. A daemon held in write(2) never exits at all. */
const SLACK_MS = 8000;
/** How long a step that a stalled daemon would never finish may take before the test fails. */
const STEP_MS = 30_000;

/**
 * The sh script that runs the daemon ("$@") and then shows its exit status; it ends with `read`
 * because node-pty may drop what a process printed just before it exited.
 */
const run = (tag: string): string => `"$@"; echo ${tag}-EXIT-$?; read wait`;

/** `promise`, or a failure naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, what: string, ms = STEP_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * SIGTERM to `pid` (running on `p`, whose script echoes `TAG-EXIT-$?`): it must be gone within the
 * exit's bound, and — once the terminal reads again — have exited 0.
 */
async function terminateWithinBound(p: PtyProc, pid: number, tag: string): Promise<void> {
  const t0 = Date.now();
  process.kill(pid, 'SIGTERM');
  await p.until(() => !alive(pid), `${p.name} to exit after SIGTERM`, STEP_MS);
  const took = Date.now() - t0;
  p.resume();
  await p.untilOutput(new RegExp(`${tag}-EXIT-\\d+`));
  expect(p.output).to.match(new RegExp(`${tag}-EXIT-0`));
  expect(took).to.be.below(EXIT_OUTPUT_WAIT_MS + SLACK_MS);
}

/** Bytes that show where they were written from. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('the daemons on a terminal that stops reading (node-pty)', function () {
  const ptys: PtyProc[] = [];
  const peers: IvshmemPeer[] = [];
  let link: BlockLink | null = null;
  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    for (const p of ptys.splice(0)) await p.kill();
    await link?.close().catch(() => undefined);
    link = null;
  });
  const s = useScratch(this); // cleans up after the hook above

  /** `sh -c SCRIPT` on a new pty; the script's "$@" is `node BIN ARGS…`. */
  function onPty(name: string, script: string, bin: string, args: string[], env: NodeJS.ProcessEnv = {}): PtyProc {
    const p = new PtyProc(name, '/bin/sh', ['-c', script, 'sh', process.execPath, bin, ...args], { env: { DEBUG: '', ...env } });
    ptys.push(p);
    return p;
  }

  it('vshm-server -v: peers connect and get their ids and the memory while its terminal is full; the lines come once it reads again', async () => {
    const sv = onPty('server', run('SV'), SERVER_BIN, ['-v', '-l', '64K', '-n', '2', '-S', s.server]);
    await sv.untilOutput(/listening on/);
    await sv.stall();
    const connectPeer = async (): Promise<IvshmemPeer> => {
      const p = await within(IvshmemPeer.connect(s.server, { timeoutMs: STEP_MS }), 'a peer to connect');
      peers.push(p);
      return p;
    };
    const a = await connectPeer();
    const b = await connectPeer();
    expect([a.id, b.id]).to.deep.equal([0, 1]);
    expect([a.layout.size, b.layout.size]).to.deep.equal([65536, 65536]);
    // The same memory: what one writes into the R/W section the other reads.
    new Uint8Array(a.window)[0] = 0x5a;
    expect(new Uint8Array(b.window)[0]).to.equal(0x5a);
    expect(sv.full(), 'the terminal still full').to.equal(true);
    sv.resume();
    await sv.untilOutput(/vshm-server: peer 0 connected\r?\n[\s\S]*vshm-server: peer 1 connected\r?\n/);
  });

  it('vshm-server -v: SIGTERM while its terminal is full exits 0 within the bound', async () => {
    const sv = onPty('server', run('SV'), SERVER_BIN, ['-v', '-l', '64K', '-S', s.server]);
    await sv.untilOutput(/listening on/);
    const pid = sv.childRunning(SERVER_BIN);
    await sv.stall();
    await terminateWithinBound(sv, pid, 'SV');
    expect(existsSync(s.server), 'socket removed').to.equal(false);
  });

  it('vshm-server -v with DEBUG: what its full terminal cannot take is bounded — dropped beyond the limit, then counted in one line once it reads again', async () => {
    const sv = onPty('server', run('SV'), SERVER_BIN, ['-v', '-l', '64K', '-n', '2', '-S', s.server], {
      DEBUG: 'vshm:*',
      NODE_OPTIONS: `--import=${SMALL_STDERR_BOUND}`,
    });
    await sv.untilOutput(/listening on/);
    await sv.stall();
    // Each peer that comes and goes costs some 200 bytes of lines (-v and the debug log): 300 of
    // them, about four times the 16 KiB bound the preload chose.
    for (let i = 0; i < 300; i++) {
      const p = await within(IvshmemPeer.connect(s.server, { timeoutMs: STEP_MS }), 'a peer to connect');
      p.close();
    }
    expect(sv.full(), 'the terminal still full').to.equal(true);
    sv.resume();
    await sv.untilOutput(/vshm-server: \d+ messages? \(\d+ bytes\) (was|were) dropped while the terminal took no output\r?\n/, STEP_MS);
    const [, messages, bytes] = /vshm-server: (\d+) messages? \((\d+) bytes\)/.exec(sv.output)!;
    expect(Number(messages)).to.be.above(0);
    expect(Number(bytes)).to.be.above(16 * 1024);
    expect(sv.output.match(/were dropped/g), 'one notice').to.have.length(1);
    const pid = sv.childRunning(SERVER_BIN);
    expect(alive(pid), 'still serving').to.equal(true);
  });

  it('vshm-blk-backend: a front-end connects, writes and reads a block while its terminal is full; SIGTERM on the full terminal exits 0 within the bound', async () => {
    const image = s.path('disk.img');
    writeFileSync(image, Buffer.alloc(1 << 20));
    const server = s.spawn('server', SERVER_BIN, ['-l', '16M', '-n', '2', '-V', '3', '-P', '0x8002', '-S', s.server]);
    await server.untilStderr(/listening on/);
    const be = onPty('blk-backend', run('BE'), BLK_BACKEND_BIN, ['-S', s.server, image]);
    await be.untilOutput(/serving .* as peer 0/);
    const pid = be.childRunning(BLK_BACKEND_BIN);
    await be.stall();
    // The back-end says "front-end connected" as the device goes live: the terminal takes nothing.
    link = await within(openBlock({ socketPath: s.server }), 'the front-end to connect');
    const l = link;
    await within(l.driver.whenReady(), 'the device ready');
    const data = pattern(4096, 7);
    await within(l.driver.write(8192, data), 'a block written');
    expect((await within(l.driver.read(8192, 4096), 'the block read back')).equals(data)).to.equal(true);
    await within(l.driver.flush(), 'a flush');
    expect(readFileSync(image).subarray(8192, 8192 + 4096).equals(data), 'the image file').to.equal(true);
    expect(be.full(), 'the terminal still full').to.equal(true);
    be.resume();
    await be.untilOutput(/vshm-blk-backend: front-end connected \(features 0x[0-9a-f]+\)\r?\n/);
    // Its shutdown says "front-end left" to the full terminal: the exit still comes, bounded.
    await be.stall();
    await terminateWithinBound(be, pid, 'BE');
  });

  it('vshm-blk-frontend: an NBD client refused (its line) while its terminal is full; the client served goes on reading and writing; SIGTERM exits 0 within the bound', async () => {
    writeFileSync(s.path('disk.img'), Buffer.alloc(1 << 20));
    const server = s.spawn('server', SERVER_BIN, ['-l', '16M', '-n', '2', '-V', '3', '-P', '0x8002', '-S', s.server]);
    await server.untilStderr(/listening on/);
    const back = s.spawn('blk-backend', BLK_BACKEND_BIN, ['-S', s.server, s.path('disk.img')]);
    await back.untilStderr(/serving .* as peer 0/);
    const nbd = s.path('nbd.sock');
    const fe = onPty('blk-frontend', run('FE'), BLK_FRONTEND_BIN, ['-S', s.server, '--nbd', nbd, '--max-connections', '1']);
    await fe.untilOutput(/serving NBD on/);
    const pid = fe.childRunning(BLK_FRONTEND_BIN);
    await fe.stall();
    const { c } = await within(RawNbd.open(nbd), 'the NBD handshake');
    try {
      // One client more than --max-connections: closed on arrival, and the front-end says so.
      const refused = connect(nbd);
      refused.on('error', () => {});
      await within(new Promise((resolve) => refused.once('close', resolve)), 'the second NBD client refused');
      const data = pattern(4096, 11);
      expect(await within(c.command(1 /* WRITE */, 8192, data.length, data), 'an NBD write')).to.equal(0);
      expect(await within(c.command(0 /* READ */, 8192, data.length), 'an NBD read')).to.equal(0);
      expect((await within(c.take(data.length), 'the data read')).equals(data)).to.equal(true);
      expect(fe.full(), 'the terminal still full').to.equal(true);
      fe.resume();
      await fe.untilOutput(/vshm-blk-frontend: NBD client refused: 1 connected, the limit \(--max-connections 1\)/);
    } finally {
      c.close();
    }
    await fe.stall();
    await terminateWithinBound(fe, pid, 'FE');
  });

  it('vshm-rng-backend: a front-end reads while its terminal is full; SIGTERM exits 0 within the bound', async () => {
    const server = s.spawn('server', SERVER_BIN, ['-l', '64K', '-n', '2', '-V', '2', '-P', '0x8004', '-S', s.server]);
    await server.untilStderr(/listening on/);
    const rb = onPty('rng-backend', run('RB'), RNG_BACKEND_BIN, ['-S', s.server]);
    await rb.untilOutput(/serving on .* as peer 0/);
    const pid = rb.childRunning(RNG_BACKEND_BIN);
    await rb.stall();
    const fe = s.spawn('rng-frontend', RNG_FRONTEND_BIN, ['-S', s.server, '-n', '16', '-c', '3']);
    expect((await within(fe.exited, 'the rng front-end to finish')).code, fe.stderr).to.equal(0);
    expect(fe.stdoutText).to.match(/^([0-9a-f]{32}\n){3}$/);
    expect(rb.full(), 'the terminal still full').to.equal(true);
    await terminateWithinBound(rb, pid, 'RB');
  });

  const usageErrors: [string, string, string[]][] = [
    ['vshm-server', SERVER_BIN, ['--bogus']],
    ['vshm-blk-backend', BLK_BACKEND_BIN, ['--bogus']],
    ['vshm-blk-frontend', BLK_FRONTEND_BIN, ['--bogus']],
    ['vshm-rng-backend', RNG_BACKEND_BIN, ['--bogus']],
  ];
  for (const [name, bin, args] of usageErrors) {
    it(`${name}: a usage error on a full terminal exits 2 within the bound`, async () => {
      const status = s.path('status');
      // The terminal is stalled before the command starts: its first line already finds it full.
      const p = onPty(name, 'stty -echo; echo READY; read go; "$@"; echo $? >"$STATUS"; read wait', bin, args, { STATUS: status });
      await p.untilOutput(/READY/);
      await p.stall();
      const t0 = Date.now();
      p.type('\r');
      await p.until(() => existsSync(status) && readFileSync(status, 'utf8').endsWith('\n'), `${name} to exit`, STEP_MS);
      const took = Date.now() - t0;
      expect(readFileSync(status, 'utf8')).to.equal('2\n');
      expect(took).to.be.below(EXIT_OUTPUT_WAIT_MS + SLACK_MS);
    });
  }
});
