/**
 * A host output that fails (EPIPE: the reader of the back-end's stdout went away, or a
 * `--port-exec` command that closed its stdin) ends the output only: the host input of the same
 * port — the keyboard on port 0, the command's stdout — keeps reaching the device.
 */
import { expect } from 'chai';
import { PassThrough, Writable } from 'node:stream';
import { ConsolePort } from '../src/port.js';

/** A Writable whose every write fails with EPIPE, as a pipe whose reader left. */
function brokenPipe(): Writable {
  return new Writable({
    write(_chunk, _enc, cb) {
      cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    },
  });
}

/** Resolves on the port's next 'input' event. */
const nextInput = (port: ConsolePort): Promise<void> => new Promise((resolve) => port.once('input', () => resolve()));

describe('ConsolePort: a failing host output', function () {
  this.timeout(10_000);
  it('keeps the host input flowing into the buffer after the output failed', async () => {
    const port = new ConsolePort(0, null, 65536);
    const input = new PassThrough();
    const output = brokenPipe();
    const failed = new Promise<void>((resolve) => output.once('error', () => resolve()));
    port.attach(input, output);
    port.write(Buffer.from('console output'));
    await failed;
    const arrived = nextInput(port);
    input.write('typed after the failure');
    await arrived;
    expect(port.buffer.peek(port.buffer.length).toString()).to.equal('typed after the failure');
    expect(port.hostOpen).to.equal(true);
    // Output from now on goes nowhere, without blocking the device.
    expect(port.write(Buffer.from('more output'))).to.equal(true);
    expect(port.outputBlocked).to.equal(false);
  });

  it('says host-close only once the input is gone too', async () => {
    const port = new ConsolePort(1, 'p', 65536);
    const input = new PassThrough();
    const output = brokenPipe();
    let closes = 0;
    port.on('host-close', () => closes++);
    const failed = new Promise<void>((resolve) => output.once('error', () => resolve()));
    port.attach(input, output);
    port.write(Buffer.from('x'));
    await failed;
    expect(closes).to.equal(0);
    port.detach();
    expect(closes).to.equal(1);
    expect(port.hostOpen).to.equal(false);
  });

  it('without an input, a failing output is the end of the host side (host-close)', async () => {
    const port = new ConsolePort(1, 'p', 65536);
    const output = brokenPipe();
    const closed = new Promise<void>((resolve) => port.once('host-close', () => resolve()));
    port.attach(null, output);
    port.write(Buffer.from('x'));
    await closed;
    expect(port.hostOpen).to.equal(false);
  });
});
