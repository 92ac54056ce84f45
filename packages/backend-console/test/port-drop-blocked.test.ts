/**
 * `dropBlockedOutputMs`: a host output that pushes back holds the driver's output (the device
 * stops taking transmit buffers, nothing is lost) — for ever by default, for that long with the
 * option, after which the port discards output until the host output drains again.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { ConsoleDevice } from '../src/device.js';
import { ConsolePort } from '../src/port.js';

/**
 * A Writable whose reader is stuck: it takes a chunk but calls back only once `release()` was
 * called (from then on at once), so later chunks wait in its buffer.
 */
function stuckOutput(highWaterMark = 16): { stream: Writable; written: Buffer[]; release: () => void } {
  const written: Buffer[] = [];
  let held: (() => void) | null = null;
  let reading = false;
  const stream = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      written.push(Buffer.from(chunk));
      if (reading) cb();
      else held = () => cb();
    },
  });
  return {
    stream,
    written,
    release: () => {
      reading = true;
      const cb = held;
      held = null;
      cb?.();
    },
  };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ConsolePort: output of a host side that stopped reading', () => {
  it('by default stays blocked: the driver waits and nothing is discarded', async () => {
    const held = new ConsolePort(0, null, 1024);
    const bounded = new ConsolePort(0, null, 1024, 1);
    const a = stuckOutput();
    const b = stuckOutput();
    held.attach(null, a.stream);
    bounded.attach(null, b.stream);
    let dropping = 0;
    held.on('output-dropping', () => dropping++);
    expect(held.write(Buffer.alloc(64, 1))).to.equal(false);
    expect(bounded.write(Buffer.alloc(64, 1))).to.equal(false);
    // The bounded port's clock ran out; the default one has no clock at all.
    await once(bounded, 'output-dropping');
    for (let i = 0; i < 5; i++) await turn();
    expect(dropping).to.equal(0);
    expect(held.outputBlocked).to.equal(true);
    expect(held.outputRoom).to.equal(0);
    a.release();
    b.release();
  });

  it('with dropBlockedOutputMs: discards output once blocked that long, counts it, and resumes when the output drains', async () => {
    const port = new ConsolePort(0, null, 1024, 5);
    const out = stuckOutput();
    port.attach(null, out.stream);
    const events: string[] = [];
    port.on('writable', () => events.push('writable'));
    expect(port.write(Buffer.from('first'))).to.equal(true);
    expect(port.write(Buffer.alloc(32, 0x61))).to.equal(false); // past the 16-byte mark
    expect(port.outputBlocked).to.equal(true);
    await once(port, 'output-dropping');
    expect(events).to.deep.equal(['writable']); // the device is told to take buffers again
    expect(port.outputBlocked).to.equal(false);
    expect(port.outputRoom).to.equal(Infinity);
    expect(port.write(Buffer.alloc(100, 0x62))).to.equal(true);
    expect(port.write(Buffer.alloc(23, 0x63))).to.equal(true);
    expect(out.stream.writableLength).to.equal(37); // nothing more reached the output
    const resumed = once(port, 'output-resumed');
    out.release();
    expect((await resumed)[0]).to.equal(123);
    expect(port.outputBlocked).to.equal(false);
    expect(port.write(Buffer.from('after'))).to.equal(true);
    expect(out.written.map((b) => b.toString('latin1')).at(-1)).to.equal('after');
  });

  it('a reused output buffer written while dropping goes straight back to the pool', async () => {
    const port = new ConsolePort(0, null, 1024, 0);
    const out = stuckOutput();
    port.attach(null, out.stream, { reuseOutputBuffers: true });
    const first = port.outputBuffer(64);
    first.fill(0x41, 0, 64);
    expect(port.writeOutput(first, 64)).to.equal(false);
    await once(port, 'output-dropping');
    const second = port.outputBuffer(64);
    expect(second).to.not.equal(first); // the first is still the output's
    expect(port.writeOutput(second, 64)).to.equal(true);
    expect(port.outputBuffer(64)).to.equal(second); // never written out: free at once
    expect(out.stream.writableLength).to.equal(64);
    out.release();
  });

  it('detaching a dropping output reports what was dropped; a new output starts undropped', async () => {
    const port = new ConsolePort(1, 'p', 1024, 0);
    const out = stuckOutput();
    port.attach(null, out.stream);
    port.write(Buffer.alloc(32));
    await once(port, 'output-dropping');
    port.write(Buffer.alloc(10));
    const resumed = once(port, 'output-resumed');
    port.detach();
    expect((await resumed)[0]).to.equal(10);
    const next = stuckOutput(1024);
    port.attach(null, next.stream);
    expect(port.write(Buffer.from('hello'))).to.equal(true);
    expect(next.written.map(String)).to.deep.equal(['hello']);
  });

  it("'output-resumed' says whether the output drained or went away (detached, failed)", async () => {
    const port = new ConsolePort(0, null, 1024, 0);
    const seen: Array<[number, boolean]> = [];
    port.on('output-resumed', (dropped: number, drained: boolean) => seen.push([dropped, drained]));
    // Drained: the reader took what was waiting.
    const a = stuckOutput();
    port.attach(null, a.stream);
    port.write(Buffer.alloc(32));
    await once(port, 'output-dropping');
    port.write(Buffer.alloc(3));
    const drained = once(port, 'output-resumed');
    a.release();
    await drained;
    // Detached while dropping.
    const b = stuckOutput();
    port.attach(null, b.stream);
    port.write(Buffer.alloc(32));
    await once(port, 'output-dropping');
    port.write(Buffer.alloc(5));
    port.detach();
    // Failed while dropping (EPIPE: its reader went away), the input staying attached.
    const c = stuckOutput();
    const input = new PassThrough();
    port.attach(input, c.stream);
    port.write(Buffer.alloc(32));
    await once(port, 'output-dropping');
    port.write(Buffer.alloc(7));
    const failed = once(port, 'output-resumed');
    c.stream.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    await failed;
    expect(seen).to.deep.equal([[3, true], [5, false], [7, false]]);
    expect(port.hostOpen).to.equal(true); // the input is still there
  });

  it('ConsoleDevice checks the option and hands it to every port', () => {
    expect(new ConsoleDevice({ ports: ['a'], dropBlockedOutputMs: 250 }).ports.map((p) => p.dropBlockedOutputMs)).to.deep.equal([250, 250]);
    expect(new ConsoleDevice().port(0).dropBlockedOutputMs).to.equal(null);
    for (const bad of [-1, 1.5, 3_600_001, Number.NaN]) {
      expect(() => new ConsoleDevice({ dropBlockedOutputMs: bad }), String(bad)).to.throw(/dropBlockedOutputMs must be an integer 0…3600000/);
    }
  });
});
