import { expect } from 'chai';
import { parseCliArgs, UsageError } from '../src/cli-args.js';
import { capabilities } from '../src/cli.js';
import { EscapeScanner } from '../src/escape.js';

describe('vshm-console-backend arguments', () => {
  it('has Jailhouse defaults, and a queue size that follows the memory', () => {
    const o = parseCliArgs([]);
    expect(o).to.include({ help: false, printCapabilities: false, socketPath: undefined, embedded: false, emergWrite: false, queueSize: 'auto', settleMs: 200, quiet: false });
    expect(o.warnings).to.deep.equal([]);
    expect(o.ports).to.deep.equal([]);
    expect(o.size).to.equal(undefined);
  });

  it('parses ports and their attachments in order', () => {
    const o = parseCliArgs(['-S', '/tmp/x.sock', '--port', 'a', '--port-socket', 'b=/tmp/b.sock', '--port-exec', 'a=cat -u', '--port-exec', 'c=x=y']);
    expect(o.socketPath).to.equal('/tmp/x.sock');
    expect(o.ports).to.deep.equal(['a', 'b', 'c']);
    expect(o.attachments.get('a')).to.deep.equal({ kind: 'exec', command: 'cat -u' });
    expect(o.attachments.get('b')).to.deep.equal({ kind: 'socket', path: '/tmp/b.sock' });
    expect(o.attachments.get('c')).to.deep.equal({ kind: 'exec', command: 'x=y' });
  });

  it('parses --size, --queue-size, --emerg-write, --settle-ms', () => {
    const o = parseCliArgs(['--size', '132x43', '--queue-size', '256', '--emerg-write', '--settle-ms', '0', '-q']);
    expect(o.size).to.deep.equal({ cols: 132, rows: 43 });
    expect(o).to.include({ queueSize: 256, emergWrite: true, settleMs: 0, quiet: true });
    expect(parseCliArgs(['--queue-size', 'auto']).queueSize).to.equal('auto');
    expect(parseCliArgs(['--queue-size', '8']).queueSize).to.equal(8);
    expect(() => parseCliArgs(['--queue-size', 'big'])).to.throw(UsageError, "invalid --queue-size 'big' (expected auto or a power of two)");
  });

  it('-S and --server set the socket; --socket still does, with one deprecation warning', () => {
    expect(parseCliArgs(['--server', '/tmp/a.sock']).socketPath).to.equal('/tmp/a.sock');
    expect(parseCliArgs(['-S', '/tmp/a.sock']).warnings).to.deep.equal([]);
    const o = parseCliArgs(['--socket', '/tmp/b.sock']);
    expect(o.socketPath).to.equal('/tmp/b.sock');
    expect(o.warnings).to.deep.equal(['--socket is deprecated: use -S/--server PATH (same meaning)']);
  });

  it('--drop-blocked-output MS: never by default; 0…3600000 ms', () => {
    expect(parseCliArgs([])).to.include({ dropBlockedOutputMs: null });
    expect(parseCliArgs(['--drop-blocked-output', '250'])).to.include({ dropBlockedOutputMs: 250 });
    expect(parseCliArgs(['--drop-blocked-output', '0'])).to.include({ dropBlockedOutputMs: 0 });
  });

  it('--resize-order ORDER: VIRTIO 1.2 order by default; rows-cols for Linux before its 2025 fix; matters with named ports only', () => {
    expect(parseCliArgs([])).to.include({ resizeOrder: 'cols-rows' });
    expect(parseCliArgs(['--port', 'a', '--resize-order', 'rows-cols'])).to.include({ resizeOrder: 'rows-cols' });
    expect(parseCliArgs(['--port-socket', 'a=/tmp/x.sock', '--resize-order', 'cols-rows'])).to.include({ resizeOrder: 'cols-rows' });
    expect(parseCliArgs(['--port', 'a', '--resize-order', 'rows-cols']).warnings).to.deep.equal([]);
    // Without one it has no effect: said, not refused (it describes the guest, not this command line).
    const o = parseCliArgs(['--resize-order', 'rows-cols']);
    expect(o).to.include({ resizeOrder: 'rows-cols' });
    expect(o.warnings).to.deep.equal(['--resize-order has no effect without a named port (RESIZE messages exist only with MULTIPORT)']);
  });

  it('server restart: reconnect with a 60 s limit by default; --server-timeout S, --no-reconnect (issue 9 item 6)', () => {
    expect(parseCliArgs([])).to.include({ reconnect: true, serverTimeoutMs: 60_000 });
    expect(parseCliArgs(['--server-timeout', '5'])).to.include({ reconnect: true, serverTimeoutMs: 5000 });
    expect(parseCliArgs(['--no-reconnect'])).to.include({ reconnect: false });
  });

  const exact: [string[], string][] = [
    [['--server-timeout', '0'], '--server-timeout 0 out of range 1…86400'],
    [['--server-timeout', 'x'], "invalid --server-timeout 'x' (expected a decimal integer)"],
    [['--server-timeout', '3', '--no-reconnect'], '--server-timeout and --no-reconnect exclude each other'],
    [['--bogus'], "unknown option '--bogus'"],
    [['--settle-ms'], "option '--settle-ms' needs a value"],
    [['--drop-blocked-output', '3600001'], '--drop-blocked-output 3600001 out of range 0…3600000'],
    [['--port', 'a', '--resize-order', 'rows'], "invalid --resize-order 'rows' (expected cols-rows or rows-cols)"],
    [['--drop-blocked-output', '1.5'], "invalid --drop-blocked-output '1.5' (expected a decimal integer)"],
    [['--settle-ms', '-5'], "option '--settle-ms' needs a value; for one starting with '-', write --settle-ms=VALUE"],
    [['--quiet=1'], "option '--quiet' takes no value"],
    [['stray'], "unexpected argument 'stray'"],
    [['--server', '/a', '--socket', '/b'], '--server and --socket (its deprecated spelling) both given'],
    [['--socket', ''], "option '--server' needs a non-empty value"],
    // A port name is printable text (decisions.md "console, server and CLI-kit leftovers (stop 23)"):
    // the front-end prints it and Linux shows it in sysfs and /dev/virtio-ports.
    [['--port', 'log\u001b]0;x\u0007'], '--port: port name contains control character \\x1b at character 4 (names are printable text)'],
    [['--port', 'a\r\nb'], '--port: port name contains control character \\x0d at character 2 (names are printable text)'],
    [['--port', 'tab\there'], '--port: port name contains control character \\x09 at character 4 (names are printable text)'],
    [['--port', 'del\u007f'], '--port: port name contains control character \\x7f at character 4 (names are printable text)'],
    [['--port', 'c1\u009b31m'], '--port: port name contains control character \\x9b at character 3 (names are printable text)'],
    [['--port', '\u202egol'], '--port: port name contains bidi control U+202E at character 1 (names are printable text)'],
    [['--port', 'a\u2066b'], '--port: port name contains bidi control U+2066 at character 2 (names are printable text)'],
    [['--port', 'a\ufffdb'], '--port: port name contains U+FFFD (bytes that are not UTF-8?) at character 2 (names are printable text)'],
    [['--port-socket', 'x\u001bq=/tmp/s'], '--port-socket: port name contains control character \\x1b at character 2 (names are printable text)'],
    [['--port-exec', 'x\u0085=cat'], '--port-exec: port name contains control character \\x85 at character 2 (names are printable text)'],
    [['--port', ''], '--port: empty port name'],
    [['--port', 'é'.repeat(61)], '--port: port name longer than 120 bytes'],
  ];
  for (const [argv, want] of exact) {
    it(`${argv.join(' ')} → "${want} (try --help)"`, () => {
      let err: unknown = null;
      try {
        parseCliArgs(argv);
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(UsageError);
      expect((err as UsageError).lineFor('vshm-console-backend')).to.equal(`vshm-console-backend: ${want} (try --help)`);
    });
  }

  it('--port takes printable names up to 120 bytes: spaces, punctuation and any script', () => {
    const names = ['org.qemu.guest_agent.0', 'my port', 'a/b:c=d', 'журнал', '日本語', 'é'.repeat(60), 'n'.repeat(120)];
    expect(parseCliArgs(names.flatMap((n) => ['--port', n])).ports).to.deep.equal(names);
  });

  it('--print-capabilities: the console as one JSON object (features follow the command line)', () => {
    const plain = capabilities(parseCliArgs(['--print-capabilities']));
    expect(plain).to.deep.equal({
      type: 'console',
      deviceId: 3,
      features: ['SIZE', 'VERSION_1', 'ACCESS_PLATFORM', 'ORDER_PLATFORM'],
      queues: 2,
      options: ['--server', '--embedded', '--port', '--port-socket', '--port-exec', '--size', '--emerg-write', '--queue-size', '--settle-ms', '--drop-blocked-output', '--resize-order', '--server-timeout', '--no-reconnect', '--quiet', '--print-capabilities', '--help'],
    });
    const multi = capabilities(parseCliArgs(['--port', 'a', '--port', 'b', '--emerg-write']));
    expect(multi.features).to.deep.equal(['SIZE', 'MULTIPORT', 'EMERG_WRITE', 'VERSION_1', 'ACCESS_PLATFORM', 'ORDER_PLATFORM']);
    expect(multi.queues).to.equal(2 * 3 + 2); // ports 0, a, b and the two control queues
    expect(JSON.parse(JSON.stringify(multi))).to.deep.equal(multi);
  });

  for (const bad of [
    ['--bogus'], ['-S'], ['extra'], ['--size', '80'], ['--size', '0x24'], ['--size', '80x70000'], ['--queue-size', '12'],
    ['--queue-size', '65536'], ['--queue-size', '-1'], ['--queue-size', 'AUTO'], ['--queue-size', '0'], ['--queue-size', ''], ['--port-socket', 'x'], ['--port-exec', '=cmd'], ['--port', 'a', '--port', 'a'],
    ['--port-socket', 'a=/x', '--port-exec', 'a=cat'], ['--port', ''], ['-S', '/x', '--embedded'], ['--settle-ms', '1e3'],
    ['--port', 'n'.repeat(121)],
  ]) {
    it(`rejects ${JSON.stringify(bad)} with a one-line UsageError`, () => {
      expect(() => parseCliArgs(bad)).to.throw(UsageError).that.satisfies((e: Error) => !e.message.includes('\n'));
    });
  }
});

describe('escape sequence (Ctrl-] q)', () => {
  const scan = (s: EscapeScanner, bytes: number[]): [string, boolean] => {
    const r = s.scan(Uint8Array.from(bytes));
    return [r.data.toString('hex'), r.quit];
  };
  it('passes ordinary bytes, ^C included', () => {
    expect(scan(new EscapeScanner(), [0x61, 0x03, 0x0d])).to.deep.equal(['61030d', false]);
  });
  it('quits on Ctrl-] q or Q, also split across chunks, dropping the rest', () => {
    expect(scan(new EscapeScanner(), [0x61, 0x1d, 0x71, 0x62])).to.deep.equal(['61', true]);
    const s = new EscapeScanner();
    expect(scan(s, [0x1d])).to.deep.equal(['', false]);
    expect(scan(s, [0x51])).to.deep.equal(['', true]);
  });
  it('sends one Ctrl-] for Ctrl-] Ctrl-], and both bytes for Ctrl-] x', () => {
    expect(scan(new EscapeScanner(), [0x1d, 0x1d, 0x1d, 0x78])).to.deep.equal(['1d1d78', false]);
  });
});
