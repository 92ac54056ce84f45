/**
 * The shared CLI kit: parseArgs errors rephrased into one line, UsageError's printed line, I/O
 * errors that name the path and the errno, and the exit that lets queued output out first.
 * (asyncTerminalOutput needs a real terminal: test/terminal-output.test.ts.)
 */
import { expect } from 'chai';
import { openSync } from 'node:fs';
import { Writable } from 'node:stream';
import { asyncTerminalOutput, describeIoError, exitAfterOutput, parseCommandLine, parseOrUsage, printable, printDiagnostic, UsageError } from '../src/cli-kit.js';
import { ArgumentError } from '../src/errors.js';
import { boundQueuedOutput } from '../src/output-bound.js';
import { stalledStream } from './fixtures/stalled-stream.js';

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

  it('an unknown option is named whole, whatever it holds: a line break, a quote, an escape (was cut to "\'\'")', () => {
    expect(message(['--bo\ngus'])).to.equal("unknown option '--bo\ngus'");
    expect(message(["--it's=1"])).to.equal("unknown option '--it's'");
    expect(message(['-q', '-S', '/a', '-qx\x1b'])).to.equal("unknown option '-x'");
    expect(message(['--bogus\x1b[31m\r\n', '--other'])).to.equal("unknown option '--bogus\x1b[31m\r\n'");
  });

  it('printDiagnostic writes PROG: line, the line escaped, one line', () => {
    const out: string[] = [];
    printDiagnostic('vshm-x', "cannot open /a\x1b[2J\nb: ENOENT", { write: (t: string) => out.push(t) });
    expect(out).to.deep.equal(['vshm-x: cannot open /a\\x1b[2J\\x0ab: ENOENT\n']);
  });

  it('UsageError.lineFor escapes control characters the message quotes: one line, nothing for the terminal to act on', () => {
    let err: unknown;
    try {
      parseCommandLine(['--bogus\x1b]0;title\x07\r\n\u202e'], OPTIONS);
    } catch (e) {
      err = e;
    }
    expect((err as UsageError).lineFor('vshm-x')).to.equal("vshm-x: unknown option '--bogus\\x1b]0;title\\x07\\x0d\\x0a\\u202e' (try --help)");
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

  it('an ArgumentError or a warning that quotes control characters prints them escaped', () => {
    const c = capture();
    expect(parseOrUsage('prog', 'u', () => { throw new ArgumentError("invalid size '1\x1b[2J'"); }, c.io)).to.equal(2);
    expect(parseOrUsage('prog', 'u', () => ({ help: false, warnings: ["path '/a\x1b]0;t\x07' is odd"] }), c.io)).to.not.be.a('number');
    expect(c.err).to.deep.equal(["prog: invalid size '1\\x1b[2J' (try --help)\n", "prog: warning: path '/a\\x1b]0;t\\x07' is odd\n"]);
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

  it('a stream that takes its output slowly but steadily keeps the wait going until all is out (a serial console)', async () => {
    // Each line is taken long after the wait's bound (30 ms) would have run out, but never more
    // than one look (7.5 ms) after the one before.
    const { stream, release } = heldStream();
    for (let i = 0; i < 20; i++) stream.write(`line ${i}\n`);
    const exited = exitAfterOutput(0, 30, [stream]);
    const t0 = Date.now();
    const steady = setInterval(release, 2);
    try {
      await exited;
    } finally {
      clearInterval(steady);
    }
    expect(exits).to.deep.equal([0]);
    expect(stream.writableLength, 'everything written').to.equal(0);
    expect(Date.now() - t0, 'longer than the bound').to.be.at.least(30);
  });

  it("progress inside one large write counts: the handle's write queue shrinking (a partial write)", async () => {
    // A net.Socket-like stream: one write stays incomplete (writableLength unchanged) while the
    // handle's queue of unsent bytes goes down, as a terminal taking a large chunk slowly.
    let done: (() => void) | null = null;
    const stream = new Writable({ write: (_chunk, _enc, cb) => void (done = () => cb()) }) as Writable & { _handle: { writeQueueSize: number } };
    stream._handle = { writeQueueSize: 64 * 1024 };
    stream.write(Buffer.alloc(64 * 1024));
    const exited = exitAfterOutput(0, 30, [stream]);
    const t0 = Date.now();
    const steady = setInterval(() => {
      stream._handle.writeQueueSize = Math.max(0, stream._handle.writeQueueSize - 1024);
      if (stream._handle.writeQueueSize === 0) done?.();
    }, 2);
    try {
      await exited;
    } finally {
      clearInterval(steady);
    }
    expect(exits).to.deep.equal([0]);
    expect(stream.writableLength, 'the large write completed').to.equal(0);
    expect(Date.now() - t0, 'longer than the bound').to.be.at.least(30);
  });

  it('a stream that took some and then stalls is given up on once it has not moved for the bound', async () => {
    const { stream, release } = heldStream();
    for (let i = 0; i < 5; i++) stream.write(`line ${i}\n`);
    const exited = exitAfterOutput(9, 40, [stream]);
    release(); // one line taken, then nothing more
    await exited;
    expect(exits).to.deep.equal([9]);
    expect(stream.writableLength, 'the rest never taken').to.be.greaterThan(0);
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

  it('drops that begin during the wait (the queue full before it) still get their notice out before the exit', async () => {
    // The wait's probe (an empty write) is queued before the bound's own end marker: once the
    // bytes before the probe are written nothing is queued, yet the notice is still owed.
    const { stream, taken, releaseHeld } = stalledStream();
    boundQueuedOutput(stream, 'vshm-test', 1024); // the bound is at least the high-water mark
    stream.write('x'.repeat(stream.writableHighWaterMark));
    const exited = exitAfterOutput(7, 60_000, [stream]);
    stream.write('dropped during the wait\n');
    while (exits.length === 0) {
      releaseHeld();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await exited;
    expect(exits).to.deep.equal([7]);
    expect(taken.filter((t) => /^vshm-test: 1 message \(24 bytes\) was dropped while the terminal took no output\n$/.test(t)), 'the notice, before the exit').to.have.length(1);
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
