/**
 * §1.8 client framing and validation (checklist items 13–17), on the ServerReader alone: a fake
 * server sends crafted messages over a socketpair, the test pumps the reader synchronously.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { ProtocolError } from '../src/errors.js';
import { ServerReader, type ReaderSink } from '../src/ivshmem/peer-reader.js';
import { encodeInit, type InitMessage } from '../src/ivshmem/protocol.js';
import { FakeServer, countFds } from './fixtures/peer-fake-server.js';

const b = binding;

type Event = ['init', InitMessage, number, number] | ['eventfd', number, number, number] | ['gone', number];

class RecordingSink implements ReaderSink {
  readonly events: Event[] = [];
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

function expectProtocolError(fn: () => unknown, code: string): void {
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

describe('ServerReader (spec §1.8)', () => {
  let fake: FakeServer;
  let sink: RecordingSink;
  let reader: ServerReader;
  let mem: number;

  beforeEach(() => {
    fake = new FakeServer(b);
    sink = new RecordingSink();
    reader = new ServerReader(b, fake.cli, sink);
    mem = fake.memfd(65536);
  });
  afterEach(() => {
    sink.closeAll();
    b.close(fake.cli);
    fake.close();
  });

  /** Fds of this process not held by the fake server (which creates some while sending). */
  const clientFds = (): number => countFds() - fake.ownedCount;

  /** Runs `send` and expects the pump to fail with `code`, leaking no received fd. */
  function rejects(code: string, send: () => void): void {
    const before = clientFds();
    send();
    expectProtocolError(() => reader.pump(), code);
    sink.closeAll(); // fds of messages accepted before the bad one belong to the sink
    expect(clientFds()).to.equal(before);
  }

  it('attributes each fd to its message in a back-to-back burst (item 16)', () => {
    // Tag every eventfd by its counter so the receiving side can tell which fd it got.
    const tags = new Map<string, number>();
    fake.init({ id: 1 }, mem);
    for (const id of [0, 1]) {
      for (let v = 0; v < 3; v++) {
        const tag = 10 * (id + 1) + v;
        tags.set(`${id}/${v}`, tag);
        fake.eventFd(id, v, fake.eventfd(tag));
      }
    }
    expect(reader.pump()).to.equal('again');
    expect(reader.burstComplete).to.equal(true);
    expect(sink.events.map((e) => e[0])).to.deep.equal(['init', ...Array(6).fill('eventfd')]);
    const [, init, memFd, size] = sink.events[0] as ['init', InitMessage, number, number];
    expect(init).to.include({ id: 1, maxPeers: 2, vectors: 3 });
    expect(size).to.equal(65536);
    expect(b.fstat(memFd).ino).to.equal(b.fstat(mem).ino);
    for (const e of sink.events.slice(1)) {
      const [, id, v, fd] = e as ['eventfd', number, number, number];
      expect(b.eventfdRead(fd), `fd of ${id}/${v}`).to.equal(tags.get(`${id}/${v}`));
    }
  });

  it('is not complete before all own eventfds arrived', () => {
    fake.init({ id: 0 }, mem);
    fake.eventFd(0, 0, fake.eventfd());
    fake.eventFd(0, 1, fake.eventfd());
    expect(reader.pump()).to.equal('again');
    expect(reader.burstComplete).to.equal(false);
    fake.eventFd(0, 2, fake.eventfd());
    reader.pump();
    expect(reader.burstComplete).to.equal(true);
  });

  it('reassembles a message delivered in pieces, keeping its fd', () => {
    const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 });
    fake.send(msg.subarray(0, 5), [mem]);
    expect(reader.pump()).to.equal('again');
    fake.send(msg.subarray(5, 20));
    expect(reader.pump()).to.equal('again');
    expect(sink.events).to.have.length(0);
    fake.send(msg.subarray(20));
    reader.pump();
    expect(sink.events).to.have.length(1);
    expect(b.fstat(sink.events[0][2] as number).ino).to.equal(b.fstat(mem).ino);
  });

  it('accepts an INIT with len 48, skipping the extra bytes (item 13)', () => {
    const msg = Buffer.alloc(48);
    encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 }).copy(msg);
    msg.writeUInt32LE(48, 4);
    msg.fill(0xee, 40);
    fake.send(msg, [mem]);
    fake.eventFd(0, 0, fake.eventfd());
    reader.pump();
    expect(sink.events.map((e) => e[0])).to.deep.equal(['init', 'eventfd']);
    expect(reader.burstComplete).to.equal(true);
  });

  describe('rejects INIT (item 13)', () => {
    it('compatible_version 3', () => rejects('VSHM_ERR_INIT_VERSION', () => fake.init({ compatibleVersion: 3 }, mem)));
    it('len 39', () =>
      rejects('VSHM_ERR_MSG_SHORT', () => {
        const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 }).subarray(0, 39);
        msg.writeUInt32LE(39, 4);
        fake.send(msg, [mem]);
      }));
    it('vectors 0', () => rejects('VSHM_ERR_INIT_VECTORS', () => fake.init({ vectors: 0 }, mem)));
    it('vectors 1025', () => rejects('VSHM_ERR_INIT_VECTORS', () => fake.init({ vectors: 1025 }, mem)));
    it('id ≥ max_peers', () => rejects('VSHM_ERR_INIT_ID', () => fake.init({ id: 2, maxPeers: 2 }, mem)));
    it('max_peers 0', () => rejects('VSHM_ERR_INIT_MAX_PEERS', () => fake.init({ maxPeers: 0 }, mem)));
    it('too little memory', () =>
      rejects('VSHM_ERR_INIT_MEMORY', () => fake.init({ maxPeers: 2, outputSectionSize: 32768 }, fake.memfd(65536))));
    it('virtio protocol with max_peers 3', () =>
      rejects('VSHM_ERR_INIT_PROTOCOL', () => fake.init({ maxPeers: 3, protocol: 0x8003 }, mem)));
    it('without the memory fd', () => rejects('VSHM_ERR_MSG_NO_FD', () => fake.init({}, null)));
    it('a second INIT', () =>
      rejects('VSHM_ERR_MSG_ORDER', () => {
        fake.init({}, mem);
        fake.init({}, mem);
      }));
    it('len above 4096', () =>
      rejects('VSHM_ERR_MSG_LEN', () => {
        const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 });
        msg.writeUInt32LE(4097, 4);
        fake.send(msg, [mem]);
      }));
  });

  it('rejects a first message that is not INIT', () =>
    rejects('VSHM_ERR_MSG_ORDER', () => fake.eventFd(0, 0, fake.eventfd())));

  describe('rejects EVENT_FD (item 14)', () => {
    beforeEach(() => fake.init({ id: 1, vectors: 3 }, mem));
    it('out of order', () => rejects('VSHM_ERR_EVENTFD_ORDER', () => fake.eventFd(0, 1, fake.eventfd())));
    it('repeated vector', () =>
      rejects('VSHM_ERR_EVENTFD_ORDER', () => {
        fake.eventFd(0, 0, fake.eventfd());
        fake.eventFd(0, 0, fake.eventfd());
      }));
    it('vector ≥ vectors', () =>
      rejects('VSHM_ERR_EVENTFD_VECTOR', () => {
        for (let v = 0; v < 3; v++) fake.eventFd(0, v, fake.eventfd());
        fake.eventFd(0, 3, fake.eventfd());
      }));
    it('id ≥ max_peers', () => rejects('VSHM_ERR_EVENTFD_ID', () => fake.eventFd(2, 0, fake.eventfd())));
    it('without fd', () => rejects('VSHM_ERR_MSG_NO_FD', () => fake.eventFd(0, 0, null)));
  });

  describe('PEER_GONE (item 15)', () => {
    beforeEach(() => {
      fake.init({ id: 1, maxPeers: 3, vectors: 1 }, mem);
      fake.eventFd(0, 0, fake.eventfd());
    });
    it('is accepted for a present peer, which may then come back', () => {
      fake.peerGone(0);
      fake.eventFd(0, 0, fake.eventfd());
      reader.pump();
      expect(sink.events.map((e) => e[0])).to.deep.equal(['init', 'eventfd', 'gone', 'eventfd']);
    });
    it('rejects an unknown id', () => rejects('VSHM_ERR_PEER_GONE_ID', () => fake.peerGone(2)));
    it('rejects the own id', () => rejects('VSHM_ERR_PEER_GONE_ID', () => fake.peerGone(1)));
    it('rejects an id ≥ max_peers', () => rejects('VSHM_ERR_PEER_GONE_ID', () => fake.peerGone(3)));
    it('rejects a peer gone twice', () =>
      rejects('VSHM_ERR_PEER_GONE_ID', () => {
        fake.peerGone(0);
        fake.peerGone(0);
      }));
    it('rejects an fd on PEER_GONE', () => rejects('VSHM_ERR_MSG_FDS', () => fake.peerGone(0, fake.eventfd())));
  });

  it('rejects truncated control data (two fds on one message) without leaking (item 16)', () =>
    rejects('VSHM_ERR_MSG_CTRUNC', () => {
      const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 });
      fake.send(msg, [mem, fake.eventfd()]);
    }));

  it('rejects an unknown type from a version-2 server', () =>
    rejects('VSHM_ERR_MSG_TYPE', () => {
      fake.init({}, mem);
      const msg = Buffer.alloc(16);
      msg.writeUInt32LE(7, 0);
      msg.writeUInt32LE(16, 4);
      fake.send(msg, [fake.eventfd()]);
    }));

  it('skips an unknown type from a version-3 server, closing its fd', () => {
    fake.init({ id: 0, vectors: 1, version: 3 }, mem);
    reader.pump();
    const before = clientFds();
    const msg = Buffer.alloc(20);
    msg.writeUInt32LE(9, 0);
    msg.writeUInt32LE(20, 4);
    fake.send(msg, [fake.eventfd()]);
    fake.eventFd(0, 0, fake.eventfd());
    reader.pump();
    expect(sink.events.map((e) => e[0])).to.deep.equal(['init', 'eventfd']);
    // Only the sink's eventfd is new on the client side: the skipped message's fd was closed.
    expect(clientFds()).to.equal(before + 1);
  });

  it('reports EOF, closing the fd of a partial message', () => {
    const before = clientFds();
    const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 });
    fake.send(msg.subarray(0, 10), [mem]);
    expect(reader.pump()).to.equal('again');
    fake.hangUp();
    expect(reader.pump()).to.equal('eof');
    expect(clientFds()).to.equal(before);
  });
});
