/**
 * attachPty (attach-pty.ts) against a stand-in port: the command waits for the port to attach,
 * starts at the port's size, follows 'resize' (RESIZE / config SIZE changes) with the pty's size,
 * and its status settles `done` once its output was written to the port.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachPty, findExecutable } from '../src/attach-pty.js';
import type { ConsolePort } from '../src/port.js';
import { FakePort } from './fixtures/fake-port.js';

describe('attachPty', function () {
  this.timeout(30000);

  it('starts on attach at the port size and applies every resize to the pty', async () => {
    const port = new FakePort();
    const a = attachPty(port as unknown as ConsolePort, '/bin/sh', ['-c', 'stty size; read x; stty size; read y; stty size'], (e) => expect.fail(e.message));
    port.size = { cols: 77, rows: 21 };
    port.attached = true;
    port.emit('attach');
    await port.until(/21 77\r\n/);
    port.size = { cols: 91, rows: 33 };
    port.emit('resize', port.size);
    port.type('\r');
    await port.until(/33 91\r\n/);
    port.emit('resize', { cols: 0, rows: 0 }); // no size known: ignored
    port.type('\r');
    expect(await a.done).to.equal(0);
    expect(port.output).to.match(/21 77\r\n[\s\S]*33 91\r\n[\s\S]*33 91\r\n$/);
    await a.close();
  });

  it('does not start before the port attaches; close() before that starts nothing', async () => {
    const port = new FakePort();
    const a = attachPty(port as unknown as ConsolePort, '/bin/sh', ['-c', 'echo started'], (e) => expect.fail(e.message));
    await new Promise((r) => setImmediate(r));
    await a.close();
    port.attached = true;
    port.emit('attach');
    await new Promise((r) => setImmediate(r));
    expect(port.output).to.equal('');
  });

  it('reports the exit status of a signalled command as 128 + signal', async () => {
    const port = new FakePort();
    port.attached = true;
    const a = attachPty(port as unknown as ConsolePort, '/bin/sh', ['-c', 'kill -TERM $$'], (e) => expect.fail(e.message));
    expect(await a.done).to.equal(128 + 15);
  });

  it('findExecutable: PATH lookup, paths, and the errno of what is missing', () => {
    expect(findExecutable('sh')).to.equal(null);
    expect(findExecutable('/bin/sh')).to.equal(null);
    expect(findExecutable('no-such-vshm-command')).to.equal('ENOENT');
    const dir = mkdtempSync(join(tmpdir(), 'vshm-pty-'));
    try {
      writeFileSync(join(dir, 'data'), 'not a program\n', { mode: 0o644 });
      expect(findExecutable(join(dir, 'data'))).to.equal('EACCES');
      expect(findExecutable(dir)).to.equal('EACCES');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
