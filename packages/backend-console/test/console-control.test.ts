/**
 * The console control codec (spec §7.2), beyond the §8 checklist (the 8-byte layout and the event
 * numbers, item 42, are in conformance/42-console-control-emerg.test.ts).
 */
import { expect } from 'chai';
import {
  ConsoleControlError, ConsoleControlEvent, consoleControlEventName, decodeConsoleControl, decodeConsolePortName,
  decodeConsoleResize, encodeConsoleControl, encodeConsolePortName, encodeConsoleResize,
} from 'virtio-spec-types';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('console control codec (spec §7.2)', () => {

  it('encodes RESIZE as cols then rows (VIRTIO 1.2 order)', () => {
    // cols 132 (0x84), rows 43 (0x2b)
    expect(hex(encodeConsoleResize(0, 132, 43))).to.equal('0000000005000000' + '8400' + '2b00');
  });

  it('encodes PORT_NAME with the name bytes after the header, no NUL', () => {
    expect(hex(encodeConsolePortName(3, 'ab'))).to.equal('0300000007000100' + '6162');
    expect(() => encodeConsolePortName(1, '')).to.throw(RangeError);
  });

  it('decodes and round-trips messages, RESIZE and PORT_NAME', () => {
    const m = decodeConsoleControl(Buffer.from('0102030405060708ff', 'hex'));
    expect([m.id, m.event, m.value, hex(m.payload)]).to.deep.equal([0x04030201, 0x0605, 0x0807, 'ff']);
    const r = decodeConsoleControl(encodeConsoleResize(7, 80, 24));
    expect([r.id, r.event]).to.deep.equal([7, ConsoleControlEvent.RESIZE]);
    expect(decodeConsoleResize(r)).to.deep.equal({ cols: 80, rows: 24 });
    const n = decodeConsoleControl(encodeConsolePortName(2, 'org.vshm.näme'));
    expect(decodeConsolePortName(n)).to.equal('org.vshm.näme');
    // A NUL-terminated name (as some devices send) is cut at the NUL.
    expect(decodeConsolePortName(decodeConsoleControl(Buffer.from('0200000007000100616200ff', 'hex')))).to.equal('ab');
  });

  it('decodes from a view with a non-zero byteOffset', () => {
    const backing = Buffer.from('ffff' + '0500000003000100', 'hex');
    const m = decodeConsoleControl(new Uint8Array(backing.buffer, backing.byteOffset + 2, 8));
    expect([m.id, m.event, m.value]).to.deep.equal([5, ConsoleControlEvent.PORT_READY, 1]);
  });

  it('rejects short messages and truncated RESIZE with a typed error', () => {
    const short = (): unknown => decodeConsoleControl(new Uint8Array(7));
    expect(short).to.throw(ConsoleControlError).with.property('code', 'VSHM_ERR_CONTROL_SHORT');
    const r = decodeConsoleControl(Buffer.from('0000000005000000' + '8400', 'hex'));
    expect(() => decodeConsoleResize(r)).to.throw(ConsoleControlError).with.property('code', 'VSHM_ERR_CONTROL_SHORT');
  });

  it('range-checks encoder fields', () => {
    expect(() => encodeConsoleControl(-1, 0, 0)).to.throw(RangeError);
    expect(() => encodeConsoleControl(0, 0x10000, 0)).to.throw(RangeError);
    expect(() => encodeConsoleResize(0, 65536, 1)).to.throw(RangeError);
  });

  it('names events', () => {
    expect(consoleControlEventName(7)).to.equal('PORT_NAME');
    expect(consoleControlEventName(99)).to.equal('EVENT_99');
  });
});
