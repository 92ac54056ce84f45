/**
 * InputBuffer (host input waiting for receive buffers): bytes come out in order across block
 * boundaries, and consumed blocks are reused rather than allocated afresh (perf).
 */
import { expect } from 'chai';
import { INPUT_BLOCK_SIZE, InputBuffer } from '../src/input-buffer.js';

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

describe('console BE InputBuffer', () => {
  it('returns the bytes in order whatever the chunk and read sizes', () => {
    const buf = new InputBuffer(1 << 20);
    const chunks = [10, INPUT_BLOCK_SIZE - 3, 5000, 3 * INPUT_BLOCK_SIZE + 17, 1, 4096].map((n, i) => pattern(n, i));
    for (const c of chunks) buf.push(c);
    const all = Buffer.concat(chunks);
    expect(buf.length).to.equal(all.length);
    const got: Buffer[] = [];
    const steps = [4096, 7, 65536, 1, 100000];
    for (let i = 0; buf.length > 0; i++) {
      const step = steps[i % steps.length]; // reads of every size, across block boundaries
      const v = Buffer.from(buf.peek(step)); // a view is valid until consume(): copy it
      expect(v.length).to.equal(Math.min(step, buf.length));
      buf.consume(v.length);
      got.push(v);
    }
    expect(buf.length).to.equal(0);
    expect(Buffer.concat(got).equals(all)).to.equal(true);
  });

  it('peek does not consume; consume beyond the length throws and changes nothing', () => {
    const buf = new InputBuffer(100);
    buf.push(Buffer.from('hello world'));
    expect(buf.peek(5).toString()).to.equal('hello');
    expect(buf.peek(5).toString()).to.equal('hello');
    expect(() => buf.consume(12)).to.throw(RangeError);
    buf.consume(6);
    expect(buf.peek(100).toString()).to.equal('world');
    expect(buf.peek(0).length).to.equal(0);
  });

  it('keeps a copy: the source may reuse its chunk after push', () => {
    const buf = new InputBuffer(100);
    const chunk = Buffer.from('abc');
    buf.push(chunk);
    chunk.fill(0x78);
    expect(buf.peek(3).toString()).to.equal('abc');
  });

  it('is full at the limit and no longer after consume', () => {
    const buf = new InputBuffer(10);
    buf.push(Buffer.alloc(9));
    expect(buf.full).to.equal(false);
    buf.push(Buffer.alloc(5)); // overshoots once
    expect(buf.full).to.equal(true);
    buf.consume(5);
    expect(buf.full).to.equal(false);
  });

  it('reuses consumed blocks instead of allocating new memory', () => {
    const buf = new InputBuffer(INPUT_BLOCK_SIZE);
    buf.push(pattern(INPUT_BLOCK_SIZE, 1));
    const first = buf.peek(16).buffer;
    buf.consume(INPUT_BLOCK_SIZE);
    buf.push(pattern(INPUT_BLOCK_SIZE, 2));
    const second = buf.peek(16);
    expect(second.buffer).to.equal(first);
    expect(second.equals(pattern(INPUT_BLOCK_SIZE, 2).subarray(0, 16))).to.equal(true);
  });
});
