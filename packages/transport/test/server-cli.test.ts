/**
 * The `vshm-server` CLI in a child process (spec §1.9): §8 server items 8, 9, 10, 11 and 12 as seen
 * from the command line. Tests wait for the "listening on" stderr line, for the child's exit or
 * for messages — never a sleep.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import binding from '@vshm/addon';
import type { InitMessage } from '../src/ivshmem/protocol.js';
import { countFds, RawClient, removeIfExists, tmpPath } from './helpers/raw-client.js';

const CLI = fileURLToPath(new URL('../src/cli/server-cli.ts', import.meta.url));
const TIMEOUT = 30000;

interface Child {
  proc: ChildProcess;
  stdout: () => string;
  stderrLines: () => string[];
  /** Resolves with the first stderr line matching `re` (already seen or future). */
  line(re: RegExp): Promise<string>;
  /** Resolves once at least `n` stderr lines match `re`. */
  lines(re: RegExp, n: number): Promise<string>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DEBUG: '' },
  });
  let out = '';
  let err = '';
  let waiters: { test: () => string | undefined; resolve: (s: string) => void }[] = [];
  const lines = (): string[] => err.split('\n').filter((l) => l.length > 0);
  const check = (): void => {
    waiters = waiters.filter((w) => {
      const hit = w.test();
      if (hit !== undefined) w.resolve(hit);
      return hit === undefined;
    });
  };
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    check();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const wait = (what: string, test: () => string | undefined): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no stderr ${what} within ${TIMEOUT} ms; got: ${err}`)), TIMEOUT);
      const w = {
        test,
        resolve: (s: string) => {
          clearTimeout(timer);
          resolve(s);
        },
      };
      waiters.push(w);
      check();
      void exit.then(() => {
        check();
        if (waiters.includes(w)) {
          waiters = waiters.filter((x) => x !== w);
          clearTimeout(timer);
          reject(new Error(`server exited before printing ${what}; stderr: ${err}`));
        }
      });
    });
  return {
    proc,
    stdout: () => out,
    stderrLines: lines,
    exit,
    line: (re) => wait(String(re), () => lines().find((l) => re.test(l))),
    lines: (re, n) => wait(`${n}× ${re}`, () => {
      const hits = lines().filter((l) => re.test(l));
      return hits.length >= n ? hits[n - 1] : undefined;
    }),
  };
}

describe('vshm-server CLI (§1.9)', function () {
  let children: Child[] = [];
  let clients: RawClient[] = [];
  let paths: string[] = [];

  function sock(): string {
    const p = tmpPath('cli');
    paths.push(p);
    return p;
  }

  function server(args: string[]): Child {
    const c = run(args);
    children.push(c);
    return c;
  }

  async function ready(args: string[]): Promise<Child> {
    const c = server(args);
    await c.line(/listening on/);
    return c;
  }

  function connect(path: string): RawClient {
    const c = RawClient.connect(binding, path);
    clients.push(c);
    return c;
  }

  afterEach(async () => {
    for (const c of clients) c.close();
    clients = [];
    for (const c of children) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) {
        c.proc.kill('SIGKILL');
        await c.exit;
      }
    }
    children = [];
    for (const p of paths) removeIfExists(p);
    paths = [];
  });

  describe('item 11: argument errors exit 2 with one stderr line and create nothing', () => {
    const cases = [
      ['-V', '0'],
      ['-V', '65'],
      ['-n', '0'],
      ['-n', '1025'],
      ['-P', '0x10000'],
      ['-P', '0x8003', '-n', '3'],
      ['-o', '1000'],
      ['-l', '64K', '-o', '32K'],
      ['-l', '0'],
      ['-x'],
      ['-l'],
      ['-l', '12Q'],
      ['stray'],
    ];
    for (const args of cases) {
      it(`${args.join(' ')}`, async () => {
        const path = sock();
        const pid = tmpPath('cli', '.pid');
        paths.push(pid);
        const c = server(['-S', path, '-p', pid, ...args]);
        const { code } = await c.exit;
        expect(code).to.equal(2);
        expect(c.stderrLines(), c.stderrLines().join('\n')).to.have.length(1);
        expect(c.stderrLines()[0]).to.match(/^vshm-server: /);
        expect(existsSync(path), 'no socket file').to.equal(false);
        expect(existsSync(pid), 'no pid file').to.equal(false);
      });
    }
  });

  it('-h prints usage and exits 0', async () => {
    const c = server(['-h']);
    expect((await c.exit).code).to.equal(0);
    expect(c.stdout()).to.match(/^Usage: vshm-server/);
    expect(c.stdout()).to.include('-P N');
  });

  it('K/M/G and 0x values parse (-l 1M -V 0x3 -P 0x8003 -n 02 -o 4k, -l 1g)', async () => {
    const path = sock();
    const c = await ready(['-S', path, '-l', '1M', '-V', '0x3', '-P', '0x8003', '-n', '02', '-o', '4k']);
    expect(c.stderrLines().at(-1)).to.equal(
      `vshm-server: listening on ${path} (1048576 bytes, 2 peers, 3 vectors, protocol 0x8003)`,
    );
    const a = connect(path);
    const [init] = await a.take(4);
    expect(init.msg).to.deep.include({ id: 0, maxPeers: 2, vectors: 3, protocol: 0xc003, outputSectionSize: 4096 });
    expect(binding.fstat(init.fds[0]).size).to.equal(1048576);
    const g = await ready(['-S', sock(), '-l', '1g']);
    expect(g.stderrLines().at(-1)).to.include('(1073741824 bytes,');
  });

  it('item 9: -l 60K gives a 65536-byte memfd sealed against shrink and grow', async () => {
    const path = sock();
    await ready(['-S', path, '-l', '60K']);
    const [init] = await connect(path).take(2);
    const fd = init.fds[0];
    expect(binding.fstat(fd).size).to.equal(65536);
    const seals = binding.getSeals(fd);
    expect(seals & (binding.F_SEAL_SHRINK | binding.F_SEAL_GROW)).to.equal(binding.F_SEAL_SHRINK | binding.F_SEAL_GROW);
  });

  it('warns about a virtio protocol whose R/W section is below 8 KiB', async () => {
    const c = await ready(['-S', sock(), '-l', '8K', '-P', '0x8003']);
    expect(c.stderrLines()[0]).to.match(/^vshm-server: warning: .*8192/);
  });

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`item 8: ${sig} sends PEER_GONE for departing peers, removes socket, pid file and -M object, exits 0`, async () => {
      const path = sock();
      const pid = tmpPath('cli', '.pid');
      paths.push(pid);
      const name = `/vshm-cli-${process.pid}-${Date.now().toString(36)}`;
      const c = await ready(['-S', path, '-p', pid, '-M', name, '-l', '64K', '-V', '2']);
      expect(readFileSync(pid, 'utf8')).to.equal(`${c.proc.pid}\n`);
      const a = connect(path);
      await a.take(3);
      const b = connect(path);
      await b.take(5);
      await a.take(2);
      c.proc.kill(sig);
      expect(await c.exit).to.deep.equal({ code: 0, signal: null });
      expect((await a.untilEof()).map((m) => m.msg)).to.deep.equal([]);
      expect((await b.untilEof()).map((m) => m.msg)).to.deep.equal([{ type: 2, len: 12, id: 0 }]);
      expect(existsSync(path), 'socket removed').to.equal(false);
      expect(existsSync(pid), 'pid file removed').to.equal(false);
      let err: unknown;
      try {
        binding.close(binding.shmOpen(name, binding.O_RDWR, 0));
        binding.shmUnlink(name);
      } catch (e) {
        err = e;
      }
      expect(err, '-M object unlinked').to.have.property('code', 'ENOENT');
    });
  }

  it('item 10: socket mode 0600; a stale socket is replaced', async () => {
    const path = sock();
    binding.close(binding.socketListen(path, 0o644, 1));
    await ready(['-S', path]);
    expect(statSync(path).mode & 0o777).to.equal(0o600);
    const [init] = await connect(path).take(2);
    expect((init.msg as InitMessage).id).to.equal(0);
  });

  it('item 10: a live socket gives exit 1 and the live server sees no connection', async () => {
    const path = sock();
    const live = await ready(['-v', '-S', path]);
    const second = server(['-S', path]);
    expect((await second.exit).code).to.equal(1);
    expect(second.stderrLines()).to.have.length(1);
    expect(second.stderrLines()[0]).to.match(/in use/);
    const a = connect(path);
    await a.take(2);
    await live.line(/peer 0 connected/);
    expect(live.stderrLines().filter((l) => /connected|refused|gone/.test(l))).to.deep.equal(['vshm-server: peer 0 connected']);
  });

  it('item 10: a non-socket path gives exit 1 and is left alone', async () => {
    const path = sock();
    writeFileSync(path, 'data');
    const c = server(['-S', path]);
    expect((await c.exit).code).to.equal(1);
    expect(c.stderrLines()).to.have.length(1);
    expect(readFileSync(path, 'utf8')).to.equal('data');
  });

  it('a runtime failure exits 1', async () => {
    const c = server(['-S', '/nonexistent-vshm-dir/x.sock']);
    expect((await c.exit).code).to.equal(1);
    expect(c.stderrLines()).to.have.length(1);
  });

  it('item 12: the state table is zero after start for a reused -M object', async () => {
    const name = `/vshm-cli-${process.pid}-${Date.now().toString(36)}-z`;
    const fd = binding.shmOpen(name, binding.O_RDWR | binding.O_CREAT, 0o600);
    try {
      binding.ftruncate(fd, 65536);
      const junk = binding.mmap(fd, 0, 4096, binding.PROT_READ | binding.PROT_WRITE);
      new Uint32Array(junk).fill(0xdeadbeef);
      binding.munmap(junk);
      const path = sock();
      await ready(['-S', path, '-M', name, '-l', '64K']);
      const [init] = await connect(path).take(2);
      const view = binding.mmap(init.fds[0], 0, 4096, binding.PROT_READ);
      expect(new Uint32Array(view).every((x) => x === 0)).to.equal(true);
      binding.munmap(view);
    } finally {
      binding.close(fd);
      try {
        binding.shmUnlink(name);
      } catch {
        // the server unlinked it
      }
    }
  });

  it('leaks no fds in the server process as clients come, get refused and go', async () => {
    const path = sock();
    const c = await ready(['-v', '-S', path, '-V', '3']);
    const pid = c.proc.pid!;
    let n = 0;
    const cycle = async (): Promise<void> => {
      const a = connect(path);
      await a.take(4);
      const b = connect(path);
      await b.take(7);
      const x = connect(path);
      await x.untilEof();
      a.close();
      await b.next();
      b.write(Buffer.from([1]));
      n++;
      await c.lines(/peer 1 gone/, n);
      for (const cl of clients) cl.close();
      clients = [];
    };
    await cycle();
    const before = countFds(pid);
    await cycle();
    await cycle();
    expect(countFds(pid)).to.equal(before);
  });
});
