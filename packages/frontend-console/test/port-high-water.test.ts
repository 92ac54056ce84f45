// The console port's writable highWaterMark default (port.ts DEFAULT_WRITABLE_HIGH_WATER): a
// writer may hand over a batch of 64 KiB chunks before write() says wait; an explicit
// highWaterMark still sets both sides, and the readable side keeps Node's default.
import { expect } from 'chai';
import { Duplex } from 'node:stream';
import { ConsolePort, DEFAULT_WRITABLE_HIGH_WATER } from '../src/port.js';

describe('console port highWaterMark', () => {
  it('defaults the writable side to 1 MiB and leaves the readable side alone', () => {
    const p = new ConsolePort(0, () => {});
    expect(DEFAULT_WRITABLE_HIGH_WATER).to.equal(1 << 20);
    expect(p.writableHighWaterMark).to.equal(DEFAULT_WRITABLE_HIGH_WATER);
    expect(p.readableHighWaterMark).to.equal(new Duplex().readableHighWaterMark);
    // Detached: nothing is posted, so the chunks wait in the stream; 15 × 64 KiB fit, the 16th says wait.
    const chunk = Buffer.alloc(65536);
    for (let i = 0; i < 15; i++) expect(p.write(chunk), `write ${i}`).to.equal(true);
    expect(p.write(chunk)).to.equal(false);
    p.destroy();
  });

  it('an explicit highWaterMark sets both sides', () => {
    const p = new ConsolePort(0, () => {}, { highWaterMark: 4096 });
    expect([p.writableHighWaterMark, p.readableHighWaterMark]).to.deep.equal([4096, 4096]);
    p.destroy();
  });
});
