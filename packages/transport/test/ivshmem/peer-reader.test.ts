/**
 * §1.8 client framing and validation on the ServerReader alone, beyond the §8 checklist (items
 * 13–16 are in conformance/13–16): burst completion, reassembly, message order, unknown types,
 * EOF. A fake server sends crafted messages over a socketpair; the test pumps the reader.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { encodeInit } from '../../src/ivshmem/protocol.js';
import { useReaderRig } from '../fixtures/reader-rig.js';

const b = binding;

describe('ServerReader (spec §1.8)', () => {
  const rig = useReaderRig();

  it('is not complete before all own eventfds arrived', () => {
    rig.fake.init({ id: 0 }, rig.mem);
    rig.fake.eventFd(0, 0, rig.fake.eventfd());
    rig.fake.eventFd(0, 1, rig.fake.eventfd());
    expect(rig.reader.pump()).to.equal('again');
    expect(rig.reader.burstComplete).to.equal(false);
    rig.fake.eventFd(0, 2, rig.fake.eventfd());
    rig.reader.pump();
    expect(rig.reader.burstComplete).to.equal(true);
  });

  it('reassembles a message delivered in pieces, keeping its fd', () => {
    const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 });
    rig.fake.send(msg.subarray(0, 5), [rig.mem]);
    expect(rig.reader.pump()).to.equal('again');
    rig.fake.send(msg.subarray(5, 20));
    expect(rig.reader.pump()).to.equal('again');
    expect(rig.sink.events).to.have.length(0);
    rig.fake.send(msg.subarray(20));
    rig.reader.pump();
    expect(rig.sink.events).to.have.length(1);
    expect(b.fstat(rig.sink.events[0][2] as number).ino).to.equal(b.fstat(rig.mem).ino);
  });

  it('rejects a first message that is not INIT', () =>
    rig.rejects('VSHM_ERR_MSG_ORDER', () => rig.fake.eventFd(0, 0, rig.fake.eventfd())));

  it('rejects an unknown type from a version-2 server', () =>
    rig.rejects('VSHM_ERR_MSG_TYPE', () => {
      rig.fake.init({}, rig.mem);
      const msg = Buffer.alloc(16);
      msg.writeUInt32LE(7, 0);
      msg.writeUInt32LE(16, 4);
      rig.fake.send(msg, [rig.fake.eventfd()]);
    }));

  it('skips an unknown type from a version-3 server, closing its fd', () => {
    rig.fake.init({ id: 0, vectors: 1, version: 3 }, rig.mem);
    rig.reader.pump();
    const before = rig.clientFds();
    const msg = Buffer.alloc(20);
    msg.writeUInt32LE(9, 0);
    msg.writeUInt32LE(20, 4);
    rig.fake.send(msg, [rig.fake.eventfd()]);
    rig.fake.eventFd(0, 0, rig.fake.eventfd());
    rig.reader.pump();
    expect(rig.sink.events.map((e) => e[0])).to.deep.equal(['init', 'eventfd']);
    // Only the sink's eventfd is new on the client side: the skipped message's fd was closed.
    expect(rig.clientFds()).to.equal(before + 1);
  });

  it('reports EOF, closing the fd of a partial message', () => {
    const before = rig.clientFds();
    const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 });
    rig.fake.send(msg.subarray(0, 10), [rig.mem]);
    expect(rig.reader.pump()).to.equal('again');
    rig.fake.hangUp();
    expect(rig.reader.pump()).to.equal('eof');
    expect(rig.clientFds()).to.equal(before);
  });
});
