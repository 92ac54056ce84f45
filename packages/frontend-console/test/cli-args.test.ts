/**
 * Argument parsing of vshm-console-frontend and the terminal escape filter (pure parts of the CLI).
 */
import { expect } from 'chai';
import { CliUsageError, DEFAULT_SERVER_SOCKET, parseCli } from '../src/cli-args.js';
import { ESCAPE_BYTE, EscapeFilter } from '../src/attach-terminal.js';

describe('vshm-console-frontend arguments', () => {
  it('defaults to the terminal on /tmp/ivshmem_socket', () => {
    const o = parseCli([]);
    expect(o.server).to.equal(DEFAULT_SERVER_SOCKET);
    expect(o.attach).to.deep.equal({ kind: 'terminal' });
    expect(o.maxPorts).to.equal('auto');
    expect(o.wait).to.equal(false);
    expect(o.portName).to.equal(null);
  });

  it('parses -S, --bridge, --port, --max-ports, --wait, -q', () => {
    const o = parseCli(['-S', '/tmp/x.sock', '--bridge', '/tmp/b.sock', '--port', 'org.a', '--max-ports', '4', '--wait', '-q']);
    expect(o.server).to.equal('/tmp/x.sock');
    expect(o.attach).to.deep.equal({ kind: 'socket', path: '/tmp/b.sock' });
    expect(o.portName).to.equal('org.a');
    expect(o.maxPorts).to.equal(4);
    expect(o.wait).to.equal(true);
    expect(o.quiet).to.equal(true);
    expect(o.warnings).to.deep.equal([]);
  });

  it("--max-ports auto is the default spelled out (the device's max_nr_ports)", () => {
    expect(parseCli(['--max-ports', 'auto']).maxPorts).to.equal('auto');
    expect(parseCli([]).maxPorts).to.equal('auto');
  });

  it('--server is the long form of -S', () => {
    expect(parseCli(['--server', '/tmp/y.sock']).server).to.equal('/tmp/y.sock');
  });

  it('--socket still bridges, with one warning saying it is not the server socket', () => {
    const o = parseCli(['--socket', '/tmp/vshm.sock']);
    expect(o.attach).to.deep.equal({ kind: 'socket', path: '/tmp/vshm.sock' });
    expect(o.server).to.equal(DEFAULT_SERVER_SOCKET);
    expect(o.warnings).to.deep.equal([
      '--socket is deprecated and is not the server socket: it creates a bridge socket at /tmp/vshm.sock (write --bridge); the vshm-server socket is -S/--server (now /tmp/ivshmem_socket)',
    ]);
  });

  it('stall policy: 5000 ms and 3 attempts by default; --transaction-timeout, --stall-retries, --wait-forever', () => {
    expect(parseCli([])).to.include({ transactionTimeoutMs: 5000, stallRetries: 3 });
    expect(parseCli(['--transaction-timeout', '250', '--stall-retries', '7'])).to.include({ transactionTimeoutMs: 250, stallRetries: 7 });
    expect(parseCli(['--wait-forever']).stallRetries).to.equal(Infinity);
  });

  it('server restart: reconnect with a 60 s limit by default; --server-timeout S, --no-reconnect (issue 9 item 6)', () => {
    expect(parseCli([])).to.include({ reconnect: true, serverTimeoutMs: 60_000 });
    expect(parseCli(['--server-timeout', '5'])).to.include({ reconnect: true, serverTimeoutMs: 5000 });
    expect(parseCli(['--no-reconnect'])).to.include({ reconnect: false });
  });

  it('takes everything after -- as the command, options included', () => {
    const o = parseCli(['-S', 's', '--', '/bin/sh', '-c', 'echo hi', '--socket']);
    expect(o.attach).to.deep.equal({ kind: 'command', command: '/bin/sh', args: ['-c', 'echo hi', '--socket'], pty: true });
    expect(parseCli(['--no-pty', '--', 'cat']).attach).to.deep.equal({ kind: 'command', command: 'cat', args: [], pty: false });
  });

  for (const bad of [
    ['--bogus'],
    ['-S'],
    ['-S', ''],
    ['extra'],
    ['--max-ports', '0'],
    ['--max-ports', '32'],
    ['--max-ports', '2x'],
    ['--max-ports', 'Auto'],
    ['--'],
    ['--no-pty'],
    ['--socket', 'p', '--', 'cat'],
    ['--bridge', 'p', '--', 'cat'],
    ['--bridge', 'p', '--socket', 'q'],
    ['--stall-retries', '0'],
    ['--stall-retries', '2', '--wait-forever'],
    ['--transaction-timeout', 'soon'],
    ['--wait=yes'],
  ]) {
    it(`rejects ${JSON.stringify(bad)} with a one-line CliUsageError`, () => {
      let err: unknown = null;
      try {
        parseCli(bad);
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(CliUsageError);
      expect((err as Error).message).to.not.include('\n');
    });
  }
});

describe('vshm-console-frontend usage errors: exact one-line messages', () => {
  const table: [string[], string][] = [
    [['--bogus'], "unknown option '--bogus'"],
    [['-S'], "option '--server' needs a value"],
    [['--bridge'], "option '--bridge' needs a value"],
    [['-S', ''], "option '--server' needs a non-empty value"],
    [['--wait=yes'], "option '--wait' takes no value"],
    [['extra'], "unexpected argument 'extra' (a command goes after --)"],
    [['--bridge', 'p', '--', 'cat'], '--bridge and -- COMMAND exclude each other'],
    [['--stall-retries', '2', '--wait-forever'], '--stall-retries and --wait-forever exclude each other'],
    [['--server-timeout', '0'], "--server-timeout must be an integer 1-86400, got '0'"],
    [['--server-timeout', '1.5'], "--server-timeout must be an integer 1-86400, got '1.5'"],
    [['--server-timeout', '3', '--no-reconnect'], '--server-timeout and --no-reconnect exclude each other'],
  ];
  for (const [argv, want] of table) {
    it(`${argv.join(' ')} → ${want}`, () => {
      let err: unknown = null;
      try {
        parseCli(argv);
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(CliUsageError);
      expect((err as CliUsageError).lineFor('vshm-console-frontend')).to.equal(`vshm-console-frontend: ${want} (try --help)`);
    });
  }
});

describe('terminal escape filter', () => {
  const enc = (s: string): Uint8Array => Buffer.from(s, 'latin1');
  const ESC = String.fromCharCode(ESCAPE_BYTE);

  it('passes ordinary bytes (including ^C and ^D) through', () => {
    const r = new EscapeFilter().feed(enc('ab\x03\x04'));
    expect(Buffer.from(r.data).toString('latin1')).to.equal('ab\x03\x04');
    expect(r.quit).to.equal(false);
  });

  it('quits on Ctrl-] q, also across chunks, keeping the bytes before it', () => {
    const f = new EscapeFilter();
    const a = f.feed(enc(`xy${ESC}`));
    expect(Buffer.from(a.data).toString('latin1')).to.equal('xy');
    expect(a.quit).to.equal(false);
    const b = f.feed(enc('q-ignored'));
    expect(b.quit).to.equal(true);
    expect(b.data.length).to.equal(0);
  });

  it('sends one Ctrl-] for Ctrl-] Ctrl-], and both bytes for Ctrl-] x', () => {
    const r = new EscapeFilter().feed(enc(`${ESC}${ESC}${ESC}x`));
    expect(Buffer.from(r.data).toString('latin1')).to.equal(`${ESC}${ESC}x`);
    expect(r.quit).to.equal(false);
  });
});
