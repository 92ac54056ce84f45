/**
 * `vshm-blk-frontend` as a process: argument errors (exit 2, one line), runtime errors (exit 1,
 * path and errno code), and the NBD scenario against an embedded vshm server and the in-memory
 * fixture device as back-end (peer 0): qemu-img/qemu-io through the socket, back-end loss and
 * return, --wait, SIGTERM (exit 0, socket removed).
 */
import { expect } from 'chai';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { IvshmemServer, openBackend } from '@vshm/transport';
import { parseCli, CliUsageError } from '../src/cli-args.js';
import { blockSizeWarning } from '../src/cli.js';
import type { BlockGeometry } from '../src/driver.js';
import { MemBlkDevice } from './fixtures/mem-blk-device.js';
import { hasPrlimit, lowerFdLimit } from '../../transport/test/fixtures/fd-limit.js';

const run = promisify(execFile);
const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'vshm-blk-frontend.js');
const BACKEND_BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'backend-blk', 'bin', 'vshm-blk-backend.js');
const MiB = 1024 * 1024;

function hasBin(b: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => existsSync(join(d, b)));
}

interface Proc {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
  waitFor(re: RegExp): Promise<void>;
}

function startCli(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  const waiters: (() => void)[] = [];
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => {
    for (const w of waiters.splice(0)) w();
    r(code);
  }));
  return {
    child,
    stderr: () => err,
    exited,
    async waitFor(re: RegExp) {
      while (!re.test(err)) {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${err}`);
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

describe('vshm-blk-frontend: the line for an ignored blk_size', () => {
  const geo = (blockSize: number, reportedBlockSize: number | null): BlockGeometry =>
    ({ blockSize, reportedBlockSize } as BlockGeometry);
  it('names the value the device reported and the block size used instead', () => {
    expect(blockSizeWarning(geo(512, 2 ** 31))).to.equal("the device's blk_size 2147483648 is not a power of two from 512 to 65536: ignored, 512-byte blocks used");
    expect(blockSizeWarning(geo(512, 0))).to.match(/blk_size 0 /);
  });
  it('says nothing for a blk_size in use, a device without BLK_SIZE, or no device', () => {
    expect(blockSizeWarning(geo(4096, 4096))).to.equal(null);
    expect(blockSizeWarning(geo(512, null))).to.equal(null);
    expect(blockSizeWarning(null)).to.equal(null);
  });
});

describe('vshm-blk-frontend arguments', () => {
  it('parses the options and refuses bad ones with a CliUsageError', () => {
    expect(parseCli(['--nbd', '/tmp/a.sock', '-S', '/tmp/s', '--export-name', 'd', '-q', '--wait'])).to.deep.equal({
      help: false, server: '/tmp/s', nbd: '/tmp/a.sock', exportName: 'd', wait: true, quiet: true, queues: 1, maxConnections: 16,
    });
    expect(parseCli(['--nbd', 'x', '--queues', '4']).queues).to.equal(4);
    expect(parseCli(['--nbd', 'x', '--max-connections', '1']).maxConnections).to.equal(1);
    expect(parseCli(['--nbd', 'x', '--max-connections', '1024']).maxConnections).to.equal(1024);
    expect(parseCli(['--nbd', 'x']).server).to.equal('/tmp/ivshmem_socket');
    expect(parseCli(['-h']).help).to.equal(true);
    for (const bad of [[], ['--nbd'], ['--nbd', ''], ['--nbd', 'x', '--bogus'], ['--nbd', 'x', 'extra'], ['--nbd', 'x', '-S'], ['--nbd', 'x', '--queues', '0'], ['--nbd', 'x', '--queues', '65'], ['--nbd', 'x', '--queues', 'two'], ['--nbd', 'x', '--max-connections', '0'], ['--nbd', 'x', '--max-connections', '1025'], ['--nbd', 'x', '--max-connections', '2x']]) {
      expect(() => parseCli(bad), bad.join(' ')).to.throw(CliUsageError);
    }
  });

  it('usage errors: one stderr line, exit 2; --help: stdout, exit 0; no server: exit 1 naming path and errno', async () => {
    const bad = await run(process.execPath, [BIN, '--nbd', '/tmp/x.sock', '--bogus']).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.equal("vshm-blk-frontend: unknown option '--bogus' (try --help)\n");
    const help = await run(process.execPath, [BIN, '--help']);
    expect(help.stdout).to.match(/^Usage: vshm-blk-frontend --nbd PATH/);
    const dir = mkdtempSync(join(tmpdir(), 'vshm-blkcli-'));
    const noServer = await run(process.execPath, [BIN, '--nbd', join(dir, 'n.sock'), '-S', join(dir, 'none')]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    rmSync(dir, { recursive: true, force: true });
    expect(noServer.code).to.equal(1);
    expect(noServer.stderr).to.match(/^vshm-blk-frontend: cannot connect to the vshm server at .*\/none: ENOENT \(no such file or directory\)\n$/);
  });
});

describe('vshm-blk-frontend with a vshm server and a back-end', function () {
  this.timeout(60000);
  let dir: string;
  let socketPath: string;
  let nbdPath: string;
  let server: IvshmemServer | null;
  let device: MemBlkDevice;
  const cleanups: (() => Promise<void> | void)[] = [];

  async function startServer(): Promise<void> {
    server = new IvshmemServer({ socketPath, memorySize: 16 * MiB, maxPeers: 2, vectors: 3, protocol: 0x8002 });
    await server.start();
  }

  async function startBackend(): Promise<() => Promise<void>> {
    for (;;) {
      try {
        const { peer, transport } = await openBackend(socketPath, device);
        const stop = async (): Promise<void> => {
          await transport.close();
          peer.close();
        };
        cleanups.push(stop);
        return stop;
      } catch (err) {
        // The front-end may hold peer 0 for a moment while it waits (--wait): retry.
        if ((err as { code?: string }).code !== 'VSHM_ERR_ROLE') throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-blkcli-'));
    socketPath = join(dir, 'vshm.sock');
    nbdPath = join(dir, 'disk.sock');
    device = new MemBlkDevice({ capacity: 8 * MiB, queueSize: 64, indirect: true, sizeMax: 65536, segMax: 32, serial: 'cli' });
    server = null;
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function track(p: Proc): Proc {
    cleanups.push(async () => {
      if (p.child.exitCode === null) {
        p.child.kill('SIGKILL');
        await p.exited;
      }
    });
    return p;
  }

  it('serves NBD: qemu-io writes reach the device; back-end loss and return are reported; SIGTERM exits 0 and removes the socket', async function () {
    await startServer();
    const stopBackend = await startBackend();
    const fe = track(startCli(['-S', socketPath, '--nbd', nbdPath]));
    await fe.waitFor(/serving NBD on .*disk\.sock \(8388608 bytes\)/);
    const uri = `nbd+unix:///?socket=${nbdPath}`;
    if (hasBin('qemu-io')) {
      await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5c 4096 64k', '-c', 'read -P 0x5c 4096 64k', uri]);
      expect(device.disk.subarray(4096, 4096 + 65536).every((b) => b === 0x5c)).to.equal(true);
    } else {
      // eslint-disable-next-line no-console
      console.log("      (qemu-io part skipped: 'qemu-io' is not installed)");
    }
    await stopBackend();
    cleanups.splice(cleanups.indexOf(stopBackend), 1);
    await fe.waitFor(/back-end lost, waiting/);
    await startBackend();
    await fe.waitFor(/back-end back/);
    fe.child.kill('SIGTERM');
    expect(await fe.exited).to.equal(0);
    expect(existsSync(nbdPath)).to.equal(false);
  });

  it('SIGTERM with a WRITE waiting for a back-end: the NBD client gets ESHUTDOWN (the spec), then the close; exit 0', async () => {
    await startServer();
    const stopBackend = await startBackend();
    const fe = track(startCli(['-S', socketPath, '--nbd', nbdPath]));
    await fe.waitFor(/serving NBD/);
    const net = await import('node:net');
    const sock = net.connect(nbdPath);
    let got = Buffer.alloc(0);
    let ended = false;
    const waiters: (() => void)[] = [];
    sock.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      for (const w of waiters.splice(0)) w();
    });
    sock.on('close', () => {
      ended = true;
      for (const w of waiters.splice(0)) w();
    });
    sock.on('error', () => undefined);
    const take = async (n: number): Promise<Buffer> => {
      while (got.length < n) {
        if (ended) throw new Error(`closed with ${got.length} of ${n} bytes`);
        await new Promise<void>((r) => waiters.push(r));
      }
      const out = got.subarray(0, n);
      got = got.subarray(n);
      return out;
    };
    await take(18); // greeting
    const go = Buffer.alloc(4 + 16 + 6);
    go.writeUInt32BE(3, 0); // client flags
    go.writeBigUInt64BE(0x49484156454f5054n, 4); // IHAVEOPT
    go.writeUInt32BE(7, 12); // GO
    go.writeUInt32BE(6, 16);
    sock.write(go);
    for (;;) {
      const h = await take(20);
      await take(h.readUInt32BE(16));
      if (h.readUInt32BE(12) === 1) break; // ACK
    }
    await stopBackend();
    cleanups.splice(cleanups.indexOf(stopBackend), 1);
    await fe.waitFor(/back-end lost, waiting/);
    const w = Buffer.alloc(28 + 512, 0x5a);
    w.writeUInt32BE(0x25609513, 0);
    w.writeUInt16BE(0, 4);
    w.writeUInt16BE(1, 6); // WRITE
    w.writeBigUInt64BE(42n, 8);
    w.writeBigUInt64BE(0n, 16);
    w.writeUInt32BE(512, 24);
    // Then a CACHE (not advertised: answered EINVAL at once, without the device). Requests are
    // read in order, so its reply proves the front-end holds the WRITE before the signal.
    const cache = Buffer.alloc(28);
    cache.writeUInt32BE(0x25609513, 0);
    cache.writeUInt16BE(5, 6); // CACHE
    cache.writeBigUInt64BE(43n, 8);
    cache.writeUInt32BE(512, 24);
    sock.write(Buffer.concat([w, cache]));
    const early = await take(16);
    expect([early.readBigUInt64BE(8), early.readUInt32BE(4)]).to.deep.equal([43n, 22]);
    fe.child.kill('SIGTERM');
    const reply = await take(16);
    expect(reply.readUInt32BE(0)).to.equal(0x67446698);
    expect(reply.readUInt32BE(4)).to.equal(108); // ESHUTDOWN
    expect(reply.readBigUInt64BE(8)).to.equal(42n);
    while (!ended) await new Promise<void>((r) => waiters.push(r));
    expect(await fe.exited).to.equal(0);
    expect(device.disk.subarray(0, 512).every((b) => b === 0)).to.equal(true);
  });

  it('--wait: started before the server and the back-end, it serves once they are up; -q silences link lines', async () => {
    const fe = track(startCli(['-S', socketPath, '--nbd', nbdPath, '--wait', '-q']));
    await startServer();
    await startBackend();
    while (!existsSync(nbdPath)) {
      if (fe.child.exitCode !== null) throw new Error(`exited: ${fe.stderr()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    fe.child.kill('SIGINT');
    expect(await fe.exited).to.equal(0);
    expect(fe.stderr()).to.equal('');
  });

  it('an NBD path too long for a UNIX socket, or in a missing directory: exit 1 naming that errno, no socket file left', async () => {
    await startServer();
    await startBackend();
    // 108 bytes and more do not fit sun_path: bind() must fail, not create a shortened name.
    const long = join(dir, 'n'.repeat(120));
    const missing = join(dir, 'missing', 'disk.sock');
    for (const [path, errno] of [[long, 'ENAMETOOLONG \\(name too long\\)'], [missing, 'ENOENT \\(no such file or directory\\)']] as const) {
      const fe = track(startCli(['-S', socketPath, '--nbd', path]));
      expect(await fe.exited, fe.stderr()).to.equal(1);
      const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      expect(fe.stderr()).to.match(new RegExp(`^vshm-blk-frontend: cannot serve NBD on ${escaped}: ${errno}\n$`));
    }
    expect(readdirSync(dir).sort()).to.deep.equal(['vshm.sock']);
  });

  it('an NBD path that is a dangling symbolic link: exit 1 saying it is not a socket (not EADDRINUSE); the link stays', async () => {
    await startServer();
    await startBackend();
    symlinkSync(join(dir, 'nowhere'), nbdPath);
    const fe = track(startCli(['-S', socketPath, '--nbd', nbdPath]));
    expect(await fe.exited, fe.stderr()).to.equal(1);
    expect(fe.stderr()).to.match(/^vshm-blk-frontend: cannot serve NBD on .*disk\.sock: it exists and is not a socket\n$/);
    expect(lstatSync(nbdPath).isSymbolicLink()).to.equal(true);
  });

  it('a device it must refuse (a queue that does not fit the shared memory): one line saying why, then SIGTERM exits 0', async () => {
    server = new IvshmemServer({ socketPath, memorySize: 16 * 1024, maxPeers: 2, vectors: 3, protocol: 0x8002 });
    await server.start();
    // The product back-end offering 64 queues: their rings cannot fit a 12 KiB R/W section.
    const image = join(dir, 'disk.img');
    writeFileSync(image, Buffer.alloc(MiB));
    const be = spawn(process.execPath, [BACKEND_BIN, '-S', socketPath, '--queues', '64', image], { stdio: ['ignore', 'ignore', 'pipe'] });
    const beExited = new Promise((r) => be.once('exit', r));
    cleanups.push(async () => {
      be.kill('SIGKILL');
      await beExited;
    });
    // Connected as peer 0 before the front-end starts (else the front-end would get peer 0).
    let beErr = '';
    await new Promise<void>((resolve, reject) => {
      be.stderr!.on('data', (d: Buffer) => {
        beErr += d.toString();
        if (/serving .* as peer 0/.test(beErr)) resolve();
      });
      void beExited.then(() => reject(new Error(`back-end exited: ${beErr}`)));
    });
    const fe = track(startCli(['-S', socketPath, '--nbd', nbdPath, '--queues', '64']));
    await fe.waitFor(/\n$/);
    expect(fe.stderr()).to.match(/^vshm-blk-frontend: device error \(waiting for the back-end to recover\): queue 0: .*give the server more shared memory \(-l\)\n$/);
    fe.child.kill('SIGTERM');
    expect(await fe.exited).to.equal(0);
  });

  it('a device reporting blk_size 2^31: one line saying it is ignored, then the disk is served', async () => {
    await startServer();
    device = new MemBlkDevice({ capacity: MiB, blkSize: 2 ** 31 });
    await startBackend();
    const fe = track(startCli(['-S', socketPath, '--nbd', nbdPath]));
    await fe.waitFor(/serving NBD.*\n$/);
    expect(fe.stderr()).to.match(/^vshm-blk-frontend: the device's blk_size 2147483648 is not a power of two from 512 to 65536: ignored, 512-byte blocks used\nvshm-blk-frontend: serving NBD on .*disk\.sock \(1048576 bytes\)\n$/);
    fe.child.kill('SIGTERM');
    expect(await fe.exited).to.equal(0);
  });

  it('an NBD client over --max-connections: one line saying it was refused and why, the daemon serves on', async () => {
    await startServer();
    await startBackend();
    const fe = track(startCli(['-S', socketPath, '--nbd', nbdPath, '--max-connections', '1']));
    await fe.waitFor(/serving NBD/);
    const net = await import('node:net');
    const open = (): Promise<import('node:net').Socket> =>
      new Promise((resolve, reject) => {
        const c = net.createConnection(nbdPath, () => resolve(c));
        c.once('error', reject);
      });
    const first = await open();
    await new Promise<void>((r) => first.once('data', () => r())); // its greeting: it is served
    const second = await open();
    await new Promise<void>((r) => second.once('close', () => r())); // closed on arrival
    await fe.waitFor(/NBD client refused/);
    expect(fe.stderr()).to.match(/^vshm-blk-frontend: NBD client refused: 1 connected, the limit \(--max-connections 1\); more refusals are counted$/m);
    const third = await open();
    await new Promise<void>((r) => third.once('close', () => r()));
    first.destroy();
    fe.child.kill('SIGTERM');
    expect(await fe.exited).to.equal(0);
    // One line for the first, the total at exit: a flood is not a flood of lines.
    expect(fe.stderr().match(/NBD client/g)).to.have.length(2);
    expect(fe.stderr()).to.match(/^vshm-blk-frontend: 2 NBD clients were refused in all \(--max-connections 1\)$/m);
  });

  it("an NBD client's export name with terminal controls (ESC, CSI, CR/LF, C1, bidi) reaches the debug lines escaped", async () => {
    await startServer();
    await startBackend();
    const fe = track(startCli(['-S', socketPath, '--nbd', nbdPath], { DEBUG: 'vshm:blk-fe,vshm:blk-nbd', DEBUG_COLORS: 'no' }));
    await fe.waitFor(/serving NBD/);
    const net = await import('node:net');
    const sock = net.connect(nbdPath);
    sock.on('error', () => undefined);
    let got = 0;
    sock.on('data', (d: Buffer) => (got += d.length));
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    const name = Buffer.from('\x1b]0;owned\x07\x1b[2J\r\nvshm-blk-frontend: forged\u009b31m\u202eevil', 'utf8');
    const opt = Buffer.alloc(4 + 16);
    opt.writeUInt32BE(3, 0); // client flags
    opt.writeBigUInt64BE(0x49484156454f5054n, 4); // IHAVEOPT
    opt.writeUInt32BE(1, 12); // EXPORT_NAME: an unknown name closes the connection
    opt.writeUInt32BE(name.length, 16);
    sock.write(Buffer.concat([opt, name]));
    await closed;
    expect(got).to.equal(18); // the greeting, then nothing: closed
    await fe.waitFor(/NBD client \d+: unknown export/);
    const line = fe.stderr().split('\n').find((l) => /unknown export/.test(l))!;
    // Any C0 control but LF, DEL, C1 controls and bidi controls: none may reach the terminal raw.
    expect(fe.stderr()).to.not.match(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/); // eslint-disable-line no-control-regex
    expect(line).to.contain("unknown export '\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x0avshm-blk-frontend: forged\\x9b31m\\u202eevil'");
    expect(fe.stderr()).to.not.match(/^vshm-blk-frontend: forged/m);
    fe.child.kill('SIGTERM');
    expect(await fe.exited).to.equal(0);
  });

  it('at its open-file limit (prlimit on the running CLI): one warning line naming the limit; the waiting clients are served once descriptors are free', async function () {
    if (!hasPrlimit()) {
      // eslint-disable-next-line no-console
      console.log("      (skipped: 'prlimit' is not installed — apt-get install util-linux)");
      this.skip();
    }
    await startServer();
    await startBackend();
    const fe = track(startCli(['-S', socketPath, '--nbd', nbdPath]));
    await fe.waitFor(/serving NBD/);
    const pid = fe.child.pid!;
    // Soft limit := the lowest free fd number: the next descriptor the CLI takes — an accepted
    // client's — is refused with EMFILE.
    const [lowest, restore] = lowerFdLimit(pid);
    const net = await import('node:net');
    const greeted = (): { sock: import('node:net').Socket; greeting: Promise<number> } => {
      const sock = net.connect(nbdPath).on('error', () => undefined);
      let got = 0;
      const greeting = new Promise<number>((resolve) => {
        sock.on('data', (d: Buffer) => {
          got += d.length;
          if (got >= 18) resolve(got);
        });
        sock.on('close', () => resolve(got));
      });
      return { sock, greeting };
    };
    const a = greeted();
    await fe.waitFor(/cannot accept an NBD client/);
    const b = greeted(); // a second client in the same episode: no second line
    await new Promise<void>((r) => b.sock.once('connect', () => r()));
    restore();
    expect(await a.greeting).to.equal(18); // served: the greeting, not a closed connection
    expect(await b.greeting).to.equal(18);
    const lines = fe.stderr().split('\n').filter((l) => /cannot accept/.test(l));
    expect(lines).to.deep.equal([
      `vshm-blk-frontend: warning: cannot accept an NBD client on ${nbdPath}: EMFILE (too many open files); the open-file limit here is ${lowest} (ulimit -n): clients wait and are served once descriptors are free`,
    ]);
    a.sock.destroy();
    b.sock.destroy();
    fe.child.kill('SIGTERM');
    expect(await fe.exited).to.equal(0);
  });

  it('an NBD path in use: exit 1 with the path and EADDRINUSE', async () => {
    await startServer();
    await startBackend();
    const first = track(startCli(['-S', socketPath, '--nbd', nbdPath]));
    await first.waitFor(/serving NBD/);
    // A second front-end cannot connect (no free peer id); name a different server state instead:
    // stop the first, keep its socket path busy with a plain listener.
    first.child.kill('SIGTERM');
    await first.exited;
    const net = await import('node:net');
    const busy = net.createServer().listen(nbdPath);
    await new Promise((r) => busy.once('listening', r));
    cleanups.push(() => new Promise<void>((r) => busy.close(() => r())));
    const second = track(startCli(['-S', socketPath, '--nbd', nbdPath]));
    expect(await second.exited).to.equal(1);
    expect(second.stderr(), second.stderr()).to.match(/vshm-blk-frontend: cannot serve NBD on .*disk\.sock: EADDRINUSE \(address already in use\)\n$/);
  });
});
