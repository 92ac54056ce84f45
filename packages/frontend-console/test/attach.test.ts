/**
 * The CLI attachments against a fake port (a plain Duplex standing in for a ConsolePort):
 * command over pipes, UNIX socket bridge, terminal pass-through without a TTY.
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex, PassThrough } from 'node:stream';
import { attachCommand, EXIT_CANNOT_RUN } from '../src/attach-command.js';
import { attachSocket } from '../src/attach-socket.js';
import { attachTerminal } from '../src/attach-terminal.js';
import type { Attachment } from '../src/attachment.js';
import type { ConsolePort } from '../src/port.js';

/** A port double: what is written to it is collected; feed() plays device input. */
class FakePort extends Duplex {
  written: Buffer[] = [];
  private waiters: (() => void)[] = [];
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.written.push(chunk);
    for (const w of this.waiters.splice(0)) w();
    cb();
  }
  override _read(): void {}
  feed(data: string | Buffer): void {
    this.push(data);
  }
  text(): string {
    return Buffer.concat(this.written).toString();
  }
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) await new Promise<void>((r) => this.waiters.push(r));
  }
}

describe('CLI attachments (fake port)', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  const track = (a: Attachment): Attachment => {
    cleanups.push(() => a.close());
    return a;
  };

  it('command: port → stdin, stdout+stderr → port, status out', async () => {
    const port = new FakePort();
    const a = track(attachCommand(port as unknown as ConsolePort, '/bin/sh', ['-c', 'read x; echo "got:$x"; echo e >&2; exit 4'], () => {}));
    port.feed('hi\n');
    expect(await a.done).to.equal(4);
    expect(port.text()).to.include('got:hi\n');
    expect(port.text()).to.include('e\n');
  });

  it('command: gets EOF when the device closes the port', async () => {
    const port = new FakePort();
    const a = track(attachCommand(port as unknown as ConsolePort, 'cat', [], () => {}));
    port.feed('abc');
    await port.until(() => port.text() === 'abc');
    port.emit('host-close');
    expect(await a.done).to.equal(0);
  });

  it('command: one that cannot run gives 127 and the error', async () => {
    const port = new FakePort();
    let err: Error | null = null;
    const a = track(attachCommand(port as unknown as ConsolePort, '/nonexistent/cmd', [], (e) => (err = e)));
    expect(await a.done).to.equal(EXIT_CANNOT_RUN);
    expect((err as unknown as NodeJS.ErrnoException).code).to.equal('ENOENT');
  });

  it('socket: bridges one client at a time and removes the file on close', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vshm-fe-attach-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'b.sock');
    const port = new FakePort();
    const a = await attachSocket(port, path);
    cleanups.push(() => a.close());
    port.feed('early'); // before any client: kept, not lost
    const c1: Socket = createConnection(path);
    cleanups.push(() => void c1.destroy());
    let got = '';
    c1.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise<void>((r) => c1.once('connect', () => r()));
    c1.write('to-port');
    await port.until(() => port.text() === 'to-port');
    const c2 = createConnection(path);
    const c2closed = new Promise<void>((r) => c2.once('close', () => r()));
    c2.on('error', () => {});
    await c2closed; // refused while c1 is attached
    port.feed('-late');
    while (got !== 'early-late') await new Promise<void>((r) => c1.once('data', () => r()));
    await a.close();
    expect(existsSync(path)).to.equal(false);
  });

  it('terminal without a TTY: bytes pass through untouched, Ctrl-] included', async () => {
    const port = new FakePort();
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const a = track(attachTerminal(port, stdin, stdout));
    let out = '';
    stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    stdin.write(Buffer.from('a\x1dqb', 'latin1'));
    await port.until(() => port.text() === 'a\x1dqb');
    port.feed('xyz');
    while (out !== 'xyz') await new Promise((r) => setImmediate(r));
    await a.close();
  });
  it('terminal: a drain after close() does not resume stdin', async () => {
    // A port that keeps its first write pending: the writer is held back until we let it go.
    class HeldPort extends FakePort {
      held: (() => void) | null = null;
      override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
        this.written.push(chunk);
        this.held = cb;
      }
    }
    const port = new HeldPort({ writableHighWaterMark: 1 });
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const a = track(attachTerminal(port, stdin, stdout));
    stdin.write('abc');
    while (port.held === null) await new Promise((r) => setImmediate(r));
    expect(stdin.readableFlowing).to.equal(false); // paused for the port's backpressure
    await a.close();
    port.held();
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(stdin.readableFlowing).to.equal(false);
  });
});
