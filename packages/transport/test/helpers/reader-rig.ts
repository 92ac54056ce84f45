/**
 * Shared setup for the ServerReader tests (§1.8; §8 items 13–16): a fake server sends crafted
 * messages over a socketpair and the test pumps the reader synchronously. Call useReaderRig()
 * inside a describe block; its beforeEach/afterEach create and release everything per test.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { ProtocolError } from '../../src/errors.js';
import { ServerReader, type ReaderSink } from '../../src/ivshmem/peer-reader.js';
import type { InitMessage } from '../../src/ivshmem/protocol.js';
import { FakeServer, countFds } from '../fixtures/peer-fake-server.js';

const b = binding;

export type ReaderEvent = ['init', InitMessage, number, number] | ['eventfd', number, number, number] | ['gone', number];

export class RecordingSink implements ReaderSink {
  readonly events: ReaderEvent[] = [];
  readonly fds: number[] = [];
  init(msg: InitMessage, memFd: number, size: number): void {
    this.events.push(['init', msg, memFd, size]);
    this.fds.push(memFd);
  }
  eventFd(id: number, vector: number, fd: number): void {
    this.events.push(['eventfd', id, vector, fd]);
    this.fds.push(fd);
  }
  peerGone(id: number): void {
    this.events.push(['gone', id]);
  }
  closeAll(): void {
    for (const fd of this.fds.splice(0)) b.close(fd);
  }
}

export function expectProtocolError(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${code}`).to.be.instanceOf(ProtocolError);
  expect((caught as ProtocolError).code).to.equal(code);
  expect((caught as ProtocolError).section).to.equal('1.8');
}

export interface ReaderRig {
  fake: FakeServer;
  sink: RecordingSink;
  reader: ServerReader;
  /** A 64 KiB memfd owned by the fake server. */
  mem: number;
  /** Fds of this process not held by the fake server (which creates some while sending). */
  clientFds(): number;
  /** Runs `send` and expects the pump to fail with `code`, leaking no received fd. */
  rejects(code: string, send: () => void): void;
}

export function useReaderRig(): ReaderRig {
  const rig = {
    clientFds: (): number => countFds() - rig.fake.ownedCount,
    rejects(code: string, send: () => void): void {
      const before = rig.clientFds();
      send();
      expectProtocolError(() => rig.reader.pump(), code);
      rig.sink.closeAll(); // fds of messages accepted before the bad one belong to the sink
      expect(rig.clientFds()).to.equal(before);
    },
  } as ReaderRig;
  beforeEach(() => {
    rig.fake = new FakeServer(b);
    rig.sink = new RecordingSink();
    rig.reader = new ServerReader(b, rig.fake.cli, rig.sink);
    rig.mem = rig.fake.memfd(65536);
  });
  afterEach(() => {
    rig.sink.closeAll();
    b.close(rig.fake.cli);
    rig.fake.close();
  });
  return rig;
}
