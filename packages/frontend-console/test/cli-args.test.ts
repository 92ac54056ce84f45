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

  it('parses -S, --socket, --port, --max-ports, --wait', () => {
    const o = parseCli(['-S', '/tmp/x.sock', '--socket', '/tmp/b.sock', '--port', 'org.a', '--max-ports', '4', '--wait']);
    expect(o.server).to.equal('/tmp/x.sock');
    expect(o.attach).to.deep.equal({ kind: 'socket', path: '/tmp/b.sock' });
    expect(o.portName).to.equal('org.a');
    expect(o.maxPorts).to.equal(4);
    expect(o.wait).to.equal(true);
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
    ['--'],
    ['--no-pty'],
    ['--socket', 'p', '--', 'cat'],
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
