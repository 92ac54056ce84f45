/**
 * The shared CLI kit: parseArgs errors rephrased into one line, UsageError's printed line, I/O
 * errors that name the path and the errno, and the exit that lets queued output out first.
 * (asyncTerminalOutput needs a real terminal: test/terminal-output.test.ts.)
 */
import { expect } from 'chai';
import { Console } from 'node:console';
import { openSync } from 'node:fs';
import { Writable } from 'node:stream';
import { asyncTerminalOutput, boundQueuedOutput, describeIoError, exitAfterOutput, parseCommandLine, parseOrUsage, printable, UsageError } from '../src/cli-kit.js';
import { ArgumentError } from '../src/errors.js';

const OPTIONS = {
  server: { type: 'string', short: 'S' },
  'settle-ms': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

function message(argv: string[], allowPositionals = false): string {
  try {
    parseCommandLine(argv, OPTIONS, allowPositionals);
  } catch (err) {
    expect(err).to.be.instanceOf(UsageError).and.instanceOf(ArgumentError);
    expect((err as UsageError).code).to.equal('VSHM_ERR_ARGUMENT');
    return (err as Error).message;
  }
  throw new Error(`${JSON.stringify(argv)} parsed`);
}

describe('cli-kit: parseCommandLine', () => {
  it('parses values, short and long, and operands when allowed', () => {
    const r = parseCommandLine(['-S', '/a', '--settle-ms=5', '-q', 'x'], OPTIONS, true);
    expect(r.values).to.deep.equal({ server: '/a', 'settle-ms': '5', quiet: true });
    expect(r.positionals).to.deep.equal(['x']);
  });

  const table: [string[], string][] = [
    [['--bogus'], "unknown option '--bogus'"],
    [['-x'], "unknown option '-x'"],
    [['--settle-ms'], "option '--settle-ms' needs a value"],
    [['-S'], "option '--server' needs a value"],
    [['--settle-ms', '-5'], "option '--settle-ms' needs a value; for one starting with '-', write --settle-ms=VALUE"],
    [['--quiet=1'], "option '--quiet' takes no value"],
    [['stray'], "unexpected argument 'stray'"],
    // The long form's '=' on a short option: not the cluster '-q -= -1', not the path '=/a'.
    [['-q=1'], "option '-q' takes no value (in '-q=1')"],
    [['-S=/a'], "write '-S VALUE' or '--server=VALUE', not '-S=/a'"],
    [['-z=1'], "unknown option '-z'"],
  ];
  for (const [argv, want] of table) {
    it(`${argv.join(' ')} → ${want}`, () => {
      const got = message(argv);
      expect(got).to.equal(want);
      expect(got).to.not.match(/\n|positional|Did you forget/);
    });
  }

  it("a short option's inline value without '=' still parses; after -- an '=' word is an operand", () => {
    expect(parseCommandLine(['-S/a'], OPTIONS).values).to.deep.equal({ server: '/a' });
    expect(parseCommandLine(['--server==a'], OPTIONS).values).to.deep.equal({ server: '=a' });
    expect(parseCommandLine(['-q', '--', '-S=/a'], OPTIONS, true).positionals).to.deep.equal(['-S=/a']);
  });

  it('UsageError.lineFor gives NAME: message (try --help)', () => {
    expect(new UsageError("unknown option '--bogus'").lineFor('vshm-x')).to.equal("vshm-x: unknown option '--bogus' (try --help)");
  });

  it('printable: C0, DEL and C1 controls as \\xHH, bidi controls as \\uHHHH; other text (UTF-8 included) unchanged; idempotent', () => {
    const p = printable;
    expect(p('\x1b[2J\r\n\x00\x7f\u009b\u202e\u2066\u061c')).to.equal('\\x1b[2J\\x0d\\x0a\\x00\\x7f\\x9b\\u202e\\u2066\\u061c');
    expect(p('disk-é ✓ 端口 a b')).to.equal('disk-é ✓ 端口 a b');
    expect(p(p('a\x1bb'))).to.equal('a\\x1bb');
  });
});

describe('cli-kit: parseOrUsage (the start every command shares)', () => {
  function capture(): { io: { stdout: { write(s: string): boolean }; stderr: { write(s: string): boolean } }; out: string[]; err: string[] } {
    const out: string[] = [];
    const err: string[] = [];
    return { io: { stdout: { write: (s) => out.push(s) > 0 }, stderr: { write: (s) => err.push(s) > 0 } }, out, err };
  }

  it('options to go on with; their warnings as NAME: warning: … lines', () => {
    const c = capture();
    const opts = parseOrUsage('prog', 'Usage: prog', () => ({ help: false, warnings: ['-x is deprecated'], n: 3 }), c.io);
    expect(opts).to.deep.equal({ help: false, warnings: ['-x is deprecated'], n: 3 });
    expect(c.err).to.deep.equal(['prog: warning: -x is deprecated\n']);
    expect(c.out).to.deep.equal([]);
  });

  it('--help: the usage once, with one newline, status 0; no warnings', () => {
    for (const usage of ['Usage: prog', 'Usage: prog\n']) {
      const c = capture();
      expect(parseOrUsage('prog', usage, () => ({ help: true, warnings: ['w'] }), c.io)).to.equal(0);
      expect(c.out).to.deep.equal(['Usage: prog\n']);
      expect(c.err).to.deep.equal([]);
    }
  });

  it('--help that cannot be written: status 1, one line naming the errno; a reader that left (EPIPE) gets none', () => {
    for (const [code, line] of [['ENOSPC', ['prog: cannot write to stdout: ENOSPC (no space left on device)\n']], ['EPIPE', []]] as const) {
      // A stream that fails at once, as stdout on /dev/full or on a pipe whose reader left does.
      const stdout = new Writable({ write: (_c, _e, done) => done(Object.assign(new Error(`${code}: write`), { code, syscall: 'write' })) });
      const err: string[] = [];
      expect(parseOrUsage('prog', 'Usage: prog', () => ({ help: true }), { stdout, stderr: { write: (t: string) => err.push(t) > 0 } })).to.equal(1);
      expect(err).to.deep.equal(line);
    }
  });

  it('--print-capabilities with a capabilities function: its JSON once, status 0; without one, the options go on', () => {
    const caps = { type: 'x', deviceId: 9, features: ['VERSION_1'], queues: 1, options: ['--print-capabilities'] };
    const c = capture();
    const parse = () => ({ help: false, printCapabilities: true, warnings: ['w'] });
    expect(parseOrUsage('prog', 'u', parse, c.io, () => caps)).to.equal(0);
    expect(c.out.map((t) => JSON.parse(t))).to.deep.equal([caps]);
    expect(c.err).to.deep.equal([]);
    expect(parseOrUsage('prog', 'u', parse, capture().io)).to.deep.include({ printCapabilities: true });
  });

  it('a bad command line: one line, status 2 (UsageError and any ArgumentError)', () => {
    const c = capture();
    expect(parseOrUsage('prog', 'u', () => ({ help: false, ...parseCommandLine(['--bogus'], OPTIONS) }), c.io)).to.equal(2);
    expect(parseOrUsage('prog', 'u', () => { throw new ArgumentError('bad size\n  (expected 1..2)'); }, c.io)).to.equal(2);
    expect(c.err).to.deep.equal(["prog: unknown option '--bogus' (try --help)\n", 'prog: bad size (expected 1..2) (try --help)\n']);
    expect(c.out).to.deep.equal([]);
  });

  it('any other error is not a usage error: it propagates', () => {
    const c = capture();
    expect(() => parseOrUsage('prog', 'u', () => { throw new TypeError('bug'); }, c.io)).to.throw(TypeError, 'bug');
    expect(c.err).to.deep.equal([]);
  });
});

describe('cli-kit: describeIoError', () => {
  it('addon errors: the syscall text becomes the path', () => {
    const err = Object.assign(new Error('bind failed: ENOENT (No such file or directory)'), { code: 'ENOENT', errno: 2, syscall: 'bind' });
    expect(describeIoError('bind', '/x/y.sock', err)).to.equal('cannot bind /x/y.sock: ENOENT (no such file or directory)');
  });

  it('a failed mmap while connecting says the mapping failed, not the connect', () => {
    const err = Object.assign(new Error('mmap failed: ENOMEM (Cannot allocate memory)'), { code: 'ENOMEM', errno: 12, syscall: 'mmap' });
    expect(describeIoError('connect to', '/x/y.sock', err)).to.equal(
      'cannot map the shared memory of /x/y.sock: ENOMEM (not enough memory)',
    );
  });

  it('node:fs errors', () => {
    let err: unknown;
    try {
      openSync('/nonexistent-vshm-dir/f', 'r');
    } catch (e) {
      err = e;
    }
    expect(describeIoError('open', '/nonexistent-vshm-dir/f', err)).to.equal('cannot open /nonexistent-vshm-dir/f: ENOENT (no such file or directory)');
  });

  it('errors without an errno keep their message (they name their path themselves)', () => {
    const err = Object.assign(new Error('/x is in use by a live server'), { code: 'VSHM_ERR_SOCKET_IN_USE' });
    expect(describeIoError('bind', '/x', err)).to.equal('/x is in use by a live server');
  });
});

describe('cli-kit: exitAfterOutput', () => {
  /** The codes process.exit was called with, while the test runs (it does not exit). */
  let exits: number[] = [];
  const realExit = process.exit;
  beforeEach(() => {
    exits = [];
    process.exit = ((code?: number) => void exits.push(code ?? 0)) as typeof process.exit;
  });
  afterEach(() => {
    process.exit = realExit;
  });

  /** A stream whose writes complete only when the test says so (`release()`), as a slow terminal's. */
  function heldStream(): { stream: Writable; release: () => void } {
    const held: (() => void)[] = [];
    const stream = new Writable({ write: (_chunk, _enc, cb) => void held.push(() => cb()) });
    return { stream, release: () => held.splice(0).forEach((cb) => cb()) };
  }

  it('exits at once when nothing is queued', async () => {
    const idle = new Writable({ write: (_chunk, _enc, cb) => cb() });
    idle.write('done\n');
    await exitAfterOutput(3, 60_000, [idle]);
    expect(exits).to.deep.equal([3]);
  });

  it('waits until what is queued is written, then exits with the code', async () => {
    const { stream, release } = heldStream();
    stream.write('the last line\n');
    stream.write('and one more\n');
    const turns = async (): Promise<void> => {
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    };
    const exited = exitAfterOutput(2, 60_000, [stream]);
    await turns();
    expect(exits, 'nothing written yet').to.deep.equal([]);
    release(); // the first line
    await turns();
    expect(exits, 'one line still queued').to.deep.equal([]);
    // The second line, then the empty write that marks the end.
    while (exits.length === 0) {
      release();
      await turns();
    }
    await exited;
    expect(exits).to.deep.equal([2]);
    expect(stream.writableLength).to.equal(0);
  });

  it('a stream that takes nothing does not keep the process: it exits after the wait', async () => {
    const { stream } = heldStream();
    stream.write('never written\n');
    const t0 = Date.now();
    await exitAfterOutput(1, 50, [stream]);
    expect(exits).to.deep.equal([1]);
    expect(Date.now() - t0).to.be.at.least(45);
  });

  it('a stream that fails while the exit waits for it (EPIPE) ends the wait, not the process', async () => {
    const { stream } = heldStream();
    stream.write('queued\n');
    const exited = exitAfterOutput(4, 60_000, [stream]);
    await new Promise((resolve) => setImmediate(resolve));
    // Unheard, this 'error' would throw out of destroy() (an uncaught exception in a command).
    stream.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    await exited;
    expect(exits).to.deep.equal([4]);
  });

  it('what is written while it waits is waited for too (a line that came due meanwhile)', async () => {
    const { stream, release } = heldStream();
    const taken: string[] = [];
    stream.write('first\n', () => {
      taken.push('first');
      stream.write('written during the wait\n', () => taken.push('second'));
    });
    const exited = exitAfterOutput(5, 60_000, [stream]);
    while (exits.length === 0) {
      release();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await exited;
    expect(taken).to.deep.equal(['first', 'second']);
    expect(exits).to.deep.equal([5]);
  });

  it('a second call while one waits changes nothing: the first status stands', async () => {
    const { stream, release } = heldStream();
    stream.write('queued\n');
    const first = exitAfterOutput(1, 60_000, [stream]);
    const second = exitAfterOutput(0, 60_000, [stream]);
    while (exits.length === 0) {
      release();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all([first, second]);
    expect(exits).to.deep.equal([1]);
  });

  it('a failure that comes up while it waits for a success is not lost: the first non-zero status stands', async () => {
    // exitOnUncaughtException's exitAfterOutput(1) during the exit wait of a clean teardown: the
    // stack is printed, so the status must say so too.
    const { stream, release } = heldStream();
    stream.write('queued\n');
    const calls = [exitAfterOutput(0, 60_000, [stream]), exitAfterOutput(1, 60_000, [stream]), exitAfterOutput(2, 60_000, [stream]), exitAfterOutput(0, 60_000, [stream])];
    while (exits.length === 0) {
      release();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(calls);
    expect(exits).to.deep.equal([1]);
  });

  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${sig} during the wait ends it: exit with the code; the process's own ${sig} listener does not run, and is back after`, async () => {
      const { stream } = heldStream();
      stream.write('never taken\n');
      let own = 0;
      const mine = (): void => void own++;
      process.on(sig, mine);
      const listeners = process.listeners(sig);
      try {
        const exited = exitAfterOutput(6, 60_000, [stream]);
        await new Promise((resolve) => setImmediate(resolve));
        expect(exits, 'still waiting').to.deep.equal([]);
        process.emit(sig, sig);
        await exited;
        expect(exits).to.deep.equal([6]);
        expect(own, 'the own listener ran').to.equal(0);
        expect(process.listeners(sig), 'the listeners as they were').to.have.members(listeners);
        process.emit(sig, sig);
        expect(own, 'the own listener back').to.equal(1);
      } finally {
        process.off(sig, mine);
      }
    });
  }

  it('a signal ends the wait before any listener added during the wait runs (the command still starting up)', async () => {
    const { stream } = heldStream();
    stream.write('never taken\n');
    const exited = exitAfterOutput(6, 60_000, [stream]);
    // Added after the call: a command whose start-up goes on while an internal error's exit waits.
    let exitsWhenLateRan: number[] | null = null;
    const late = (): void => void (exitsWhenLateRan = [...exits]);
    process.on('SIGTERM', late);
    try {
      process.emit('SIGTERM', 'SIGTERM');
      await exited;
      expect(exits).to.deep.equal([6]);
      // process.exit does not return outside a test: the late listener never runs.
      expect(exitsWhenLateRan, 'process.exit called before the late listener').to.deep.equal([6]);
    } finally {
      process.off('SIGTERM', late);
    }
  });

  it('a destroyed stream is not waited for', async () => {
    const { stream } = heldStream();
    stream.write('lost\n');
    stream.destroy();
    await exitAfterOutput(0, 60_000, [stream]);
    expect(exits).to.deep.equal([0]);
  });
});

describe('cli-kit: asyncTerminalOutput', () => {
  it('leaves streams that are not a terminal alone: nothing to report', function () {
    // On a terminal it would change this very test run's output: that case runs on a pty.
    if (process.stdout.isTTY || process.stderr.isTTY) this.skip();
    const said: unknown[][] = [];
    const log = Object.assign((...args: unknown[]) => void said.push(args), { enabled: true, namespace: 'vshm:test' });
    expect(asyncTerminalOutput('vshm-test', { log })).to.deep.equal({ stdout: null, stderr: null });
    expect(said, 'nothing to log').to.deep.equal([]);
    expect(Symbol.for('vshm.cli.boundQueuedOutput') in process.stderr, 'stderr not bounded').to.equal(false);
  });
});

describe('cli-kit: boundQueuedOutput (a terminal stderr that takes nothing)', () => {
  const LIMIT = 64 * 1024;
  const NOTICE = /^vshm-test: (\d+) messages? \((\d+) bytes\) (?:was|were) dropped while the terminal took no output\n$/;

  /** A stream whose writes complete only when released; `taken` is what it wrote, in order. */
  function stalled(): { stream: Writable; taken: string[]; release: () => Promise<void> } {
    const held: (() => void)[] = [];
    const taken: string[] = [];
    const stream = new Writable({
      write: (chunk: Buffer, _enc, cb) =>
        void held.push(() => {
          if (chunk.length > 0) taken.push(chunk.toString());
          cb();
        }),
    });
    /** Let it write everything, what comes meanwhile included. */
    const release = async (): Promise<void> => {
      while (held.length > 0 || stream.writableLength > 0) {
        held.splice(0).forEach((f) => f());
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    return { stream, taken, release };
  }

  it('10 MiB of lines: at most the limit plus one line queued; the rest dropped, their callbacks called; once released, one line with the counts', async () => {
    const { stream, taken, release } = stalled();
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    const line = `${'x'.repeat(99)}\n`;
    const total = Math.ceil((10 << 20) / line.length);
    let peak = 0;
    let falses = 0;
    let called = 0;
    for (let i = 0; i < total; i++) {
      if (!stream.write(line, () => called++)) falses++;
      peak = Math.max(peak, stream.writableLength);
    }
    expect(peak).to.be.at.most(LIMIT + line.length);
    const kept = Math.ceil(LIMIT / line.length);
    await new Promise((resolve) => setImmediate(resolve));
    expect(called, 'the dropped writes called back').to.equal(total - kept);
    expect(falses, 'write() says false while over the limit').to.be.at.least(total - kept);
    await release();
    expect(called, 'every write called back').to.equal(total);
    const notices = taken.filter((t) => NOTICE.test(t));
    expect(notices).to.have.length(1);
    const [, messages, bytes] = NOTICE.exec(notices[0])!;
    expect(Number(messages)).to.equal(total - kept);
    expect(Number(bytes)).to.equal((total - kept) * line.length);
    // What was kept is the first lines, then the notice, nothing else.
    expect(taken.slice(0, -1)).to.deep.equal(Array<string>(kept).fill(line));
    expect(taken.at(-1)).to.equal(notices[0]);
  });

  it('a zero-length write always passes (its callback marks the end of what is queued), however much is queued', async () => {
    const { stream, taken, release } = stalled();
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    stream.write(Buffer.alloc(LIMIT, 0x61));
    stream.write('dropped\n');
    let emptyDone = false;
    stream.write('', () => (emptyDone = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(emptyDone, 'not before what is queued').to.equal(false);
    await release();
    expect(emptyDone).to.equal(true);
    expect(taken.filter((t) => NOTICE.test(t)).map((t) => NOTICE.exec(t)!.slice(1, 3))).to.deep.equal([['1', '8']]);
  });

  it('a notice that comes due after end() is not written (no write after end: no error on the stream)', async () => {
    const { stream, taken, release } = stalled();
    const errors: unknown[] = [];
    stream.on('error', (err) => errors.push(err));
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    stream.write(Buffer.alloc(LIMIT, 0x61));
    stream.write('dropped\n');
    stream.end();
    await release();
    expect(errors).to.deep.equal([]);
    expect(taken.filter((t) => NOTICE.test(t))).to.deep.equal([]);
  });

  it("over the limit, what Node refuses it still refuses: a write after end() or destroy() gets Node's error, a chunk or encoding it does not take throws", async () => {
    const answers: unknown[] = [];
    const writeOver = (stream: Writable): void => void stream.write('late\n', (err) => answers.push((err as NodeJS.ErrnoException | null)?.code ?? null));
    const ended = stalled().stream;
    ended.on('error', () => {});
    boundQueuedOutput(ended, 'vshm-test', LIMIT);
    ended.write(Buffer.alloc(LIMIT, 0x61));
    ended.end();
    writeOver(ended);
    const destroyed = stalled().stream;
    boundQueuedOutput(destroyed, 'vshm-test', LIMIT);
    destroyed.write(Buffer.alloc(LIMIT, 0x61));
    destroyed.destroy();
    expect(destroyed.writableLength, 'the write in progress still counted').to.equal(LIMIT);
    writeOver(destroyed);
    await new Promise((resolve) => setImmediate(resolve));
    expect(answers).to.deep.equal(['ERR_STREAM_WRITE_AFTER_END', 'ERR_STREAM_DESTROYED']);
    const full = stalled().stream;
    boundQueuedOutput(full, 'vshm-test', LIMIT);
    full.write(Buffer.alloc(LIMIT, 0x61));
    expect(() => full.write(42 as unknown as string)).to.throw().with.property('code', 'ERR_INVALID_ARG_TYPE');
    expect(full.write(new DataView(new ArrayBuffer(8)) as unknown as Uint8Array), 'a view: bytes, dropped').to.equal(false);
    expect(full.writableLength).to.equal(LIMIT);
    expect(() => full.write('x', 'no-such-encoding' as BufferEncoding)).to.throw().with.property('code', 'ERR_UNKNOWN_ENCODING');
  });

  it("each episode of drops gets its own line; 'drain' follows a write that returned false; bounding twice changes nothing", async () => {
    const { stream, taken, release } = stalled();
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    boundQueuedOutput(stream, 'other', 1);
    let drained = 0;
    stream.on('drain', () => drained++);
    for (const n of [3, 5]) {
      stream.write(Buffer.alloc(LIMIT, 0x61));
      for (let i = 0; i < n; i++) expect(stream.write('dropped\n')).to.equal(false);
      await release();
    }
    expect(drained).to.equal(2);
    expect(taken.filter((t) => NOTICE.test(t)).map((t) => NOTICE.exec(t)!.slice(1, 3))).to.deep.equal([['3', '24'], ['5', '40']]);
  });

  it('console.error on the stream goes through the bound (it writes with a callback)', async () => {
    const { stream, taken, release } = stalled();
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    stream.write(Buffer.alloc(LIMIT, 0x61));
    const console = new Console({ stdout: stream, stderr: stream });
    for (let i = 0; i < 4; i++) console.error('dropped %d', i);
    expect(stream.writableLength).to.equal(LIMIT);
    await release();
    expect(taken.filter((t) => NOTICE.test(t)).map((t) => NOTICE.exec(t)!.slice(1, 3))).to.deep.equal([['4', '40']]);
    expect(stream.listenerCount('error'), 'no error listener left behind').to.equal(0);
  });

  it("the limit is never below the stream's high-water mark, so that 'drain' follows every false", () => {
    const { stream } = stalled();
    boundQueuedOutput(stream, 'vshm-test', 1);
    expect(stream.write(Buffer.alloc(stream.writableHighWaterMark - 1))).to.equal(true);
    expect(stream.write('passes\n')).to.equal(false); // over the high-water mark, queued
    expect(stream.writableLength).to.equal(stream.writableHighWaterMark + 6);
  });
});
