/**
 * vshm-inspect against memory it cannot trust: a header whose `size` field is hostile (the
 * snapshot must stay small, whatever the memory size), and --watch writing to a stdout that
 * fails (a full file must be an error, not a silent exit 0). In-process and quick: the memory is
 * either a plain ArrayBuffer or a small POSIX object this test creates.
 */
import { closeSync, mkdtempSync, openSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { HDR_CONFIG, HDR_REVISION, HDR_SIZE, SharedMemoryLayout, STATE_TABLE_SIZE, STATUS_FORMAT, type StatusFile } from '@vshm/transport/inspect';
import { main } from '../src/cli.js';
import { takeSnapshot, type Attachment } from '../src/index.js';

/** An attachment over plain buffers: what takeSnapshot sees of a -M object without status files. */
function fakeAttachment(windowBytes: number, fill: (window: DataView) => void): Attachment {
  const window = new ArrayBuffer(windowBytes);
  fill(new DataView(window));
  return {
    shm: 'fake',
    dev: '0:1',
    ino: 1,
    openedVia: '/dev/shm/fake',
    uid: 0,
    layout: new SharedMemoryLayout(STATE_TABLE_SIZE + windowBytes, 2, 0),
    layoutSource: 'defaults',
    stateTable: new ArrayBuffer(STATE_TABLE_SIZE),
    window,
    status: [],
    refreshStatus() {},
    close() {},
  };
}

describe('vshm-inspect (hostile header)', () => {
  it('a header `size` far past any config (0xffffffff over 1 MiB of R/W) shows a bounded config and says why', () => {
    const att = fakeAttachment(1 << 20, (v) => {
      v.setUint32(HDR_REVISION, 1, true);
      v.setUint32(HDR_SIZE, 0xffffffff, true);
    });
    const snap = takeSnapshot(att);
    expect(snap.header).to.not.equal(null);
    expect(snap.header!.size).to.equal(0xffffffff);
    // Before the fix the config was the whole R/W section in hex: 2 MiB of text per snapshot.
    expect(snap.header!.config.length).to.be.at.most(2 * 4096);
    expect(snap.notes.join('\n')).to.match(/header size 4294967295 .*larger than the R\/W section/);
    expect(JSON.stringify(snap).length).to.be.below(64 * 1024);
  });

  it('a header `size` below 0x4C shows no config bytes and says so', () => {
    const att = fakeAttachment(4096, (v) => {
      v.setUint32(HDR_REVISION, 1, true);
      v.setUint32(HDR_SIZE, 8, true);
    });
    const snap = takeSnapshot(att);
    expect(snap.header!.config).to.equal('');
    expect(snap.notes.join('\n')).to.match(/header size 8 .*below 0x4c/);
  });

  it('a valid `size` shows exactly the config bytes [0x4C, size)', () => {
    const att = fakeAttachment(4096, (v) => {
      v.setUint32(HDR_REVISION, 1, true);
      v.setUint32(HDR_SIZE, HDR_CONFIG + 4, true);
      v.setUint32(HDR_CONFIG, 0xddccbbaa, true);
    });
    const snap = takeSnapshot(att);
    expect(snap.header!.config).to.equal('aabbccdd');
    expect(snap.notes.join('\n')).to.not.match(/header size/);
  });
});

/** A stdout whose every write fails with `code`. */
class FailingSink extends Writable {
  constructor(private readonly code: string) {
    super();
  }
  override _write(_chunk: Buffer, _enc: BufferEncoding, done: (err?: Error) => void): void {
    done(Object.assign(new Error(`write ${this.code}`), { code: this.code }));
  }
}

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

/**
 * A stdout that takes nothing, as a stalled terminal written asynchronously: no write completes.
 * Each tick of --watch asks for `writableLength`; after `ticks` of them the reader goes (EPIPE),
 * which ends the watch.
 */
/** Writable's own `writableLength` getter (declared a property in the typings: `super.` cannot reach it). */
const queuedBytes = Object.getOwnPropertyDescriptor(Writable.prototype, 'writableLength')!.get as (this: Writable) => number;

class StalledSink extends Writable {
  /** The first write's length (the one handed on, never done). */
  first = 0;
  looks = 0;
  private writes = 0;
  constructor(private readonly ticks: number) {
    super();
    // An own accessor (the typings declare writableLength a property, which a class cannot override with one).
    Object.defineProperty(this, 'writableLength', {
      get: (): number => {
        if (++this.looks === this.ticks) this.leave();
        return queuedBytes.call(this);
      },
    });
  }
  /** A watch that does not look (writes every period) is ended after as many writes. */
  override write(chunk: unknown, ...rest: never[]): boolean {
    if (++this.writes === this.ticks) this.leave();
    return super.write(chunk, ...rest);
  }
  private leave(): void {
    setImmediate(() => this.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })));
  }
  /** Bytes queued in all, not counted as a look. */
  get queued(): number {
    return queuedBytes.call(this);
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, _done: () => void): void {
    this.first = chunk.length; // never done: the terminal took nothing
  }
}

describe('vshm-inspect (odd-sized memory)', () => {
  it('a memory whose window has an odd length (a peer that accepted reduced protection) still shows the live ring fields', () => {
    // S = 4096 + 8193: no page alignment, which a peer maps with acceptReducedProtection.
    const att = fakeAttachment(8193, (v) => {
      v.setUint32(HDR_REVISION, 1, true);
      v.setUint32(HDR_SIZE, HDR_CONFIG, true);
      v.setUint16(0x1000 + 2, 7, true); // avail.idx
      v.setUint16(0x1800 + 2, 5, true); // used.idx
    });
    const status: StatusFile = {
      format: STATUS_FORMAT,
      pid: process.pid,
      updated: new Date().toISOString(),
      peer: { id: 0, maxPeers: 2, vectors: 3, protocol: 0x8003 },
      memory: { ino: 1, size: STATE_TABLE_SIZE + 8193, outputSectionSize: 0 },
      transport: {
        role: 'back-end', phase: 'serving', deviceId: 3, offeredFeatures: null, negotiatedFeatures: null, status: 15, headerSize: HDR_CONFIG,
        queues: [{ index: 0, maxSize: 8, size: 8, enabled: true, running: true, deviceVector: 1, driverVector: 0, desc: '0x800', avail: '0x1000', used: '0x1800' }],
      },
    };
    att.status = [status];
    const snap = takeSnapshot(att);
    expect(snap.queues[0].note).to.equal(undefined);
    expect(snap.queues[0].live).to.include({ availIdx: 7, usedIdx: 5, inFlight: 2 });
  });
});

describe('vshm-inspect -M in process (a failing stdout, a removed working directory)', function () {
  this.timeout(20_000);
  const name = `vshm-inspect-hostile-${process.pid}`;
  before(() => {
    const fd = openSync(`/dev/shm/${name}`, 'w', 0o600);
    writeSync(fd, Buffer.alloc(STATE_TABLE_SIZE + 4096));
    closeSync(fd);
  });
  after(() => unlinkSync(`/dev/shm/${name}`));

  it('a full stdout (ENOSPC): one line naming the errno, exit 1 — as without --watch', async () => {
    const err = new Sink();
    expect(await main(['-M', name, '--watch', '10'], new FailingSink('ENOSPC'), err)).to.equal(1);
    expect(err.text).to.equal('vshm-inspect: cannot write to stdout: ENOSPC (no space left on device)\n');
  });

  it('run from a working directory that was removed: the snapshot is taken (status files are looked for by absolute path)', async () => {
    const home = process.cwd();
    const gone = mkdtempSync(join(tmpdir(), 'vshm-inspect-cwd-'));
    process.chdir(gone);
    rmdirSync(gone);
    const out = new Sink();
    const err = new Sink();
    try {
      expect(await main(['-M', name, '--json'], out, err)).to.equal(0);
    } finally {
      process.chdir(home);
    }
    expect(err.text).to.equal('');
    expect((JSON.parse(out.text) as { target: { shm: string } }).target.shm).to.equal(name);
  });

  it('--watch on a stdout that takes nothing: one snapshot is queued, the later ones are skipped, not piled up', async () => {
    const out = new StalledSink(20);
    const err = new Sink();
    expect(await main(['-M', name, '--watch', '10'], out, err)).to.equal(0);
    expect(out.first).to.be.above(0);
    expect(out.queued).to.equal(out.first);
    expect(err.text).to.equal('');
  });

  it('the reader gone (EPIPE): ends quietly with exit 0, like Ctrl-C', async () => {
    const err = new Sink();
    expect(await main(['-M', name, '--watch', '10'], new FailingSink('EPIPE'), err)).to.equal(0);
    expect(err.text).to.equal('');
  });
});
