/**
 * §8 item 42: control messages are 8 bytes (`id` at 0, `event` at 4, `value` at 6), events
 * numbered as in §7.2; EMERG_WRITE of 0x41 outputs "A".
 */
import { expect } from 'chai';
import { ConsoleControlEvent, ConsoleControlEvent as E, consoleControlEventName, encodeConsoleControl } from 'virtio-spec-types';
import { ConsoleDevice } from '../../src/device.js';
import { sink } from '../fixtures/console-streams.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('§8 item 42: 8-byte control messages, §7.2 event numbers, EMERG_WRITE of 0x41 outputs "A"', function () {
  it('encodes the 8-byte message: id u32 at 0, event u16 at 4, value u16 at 6 (golden bytes)', () => {
    expect(hex(encodeConsoleControl(0, ConsoleControlEvent.DEVICE_READY, 1))).to.equal('0000000000000100');
    expect(hex(encodeConsoleControl(0x04030201, 0x0605, 0x0807))).to.equal('0102030405060708');
    expect(hex(encodeConsoleControl(2, ConsoleControlEvent.PORT_OPEN, 1))).to.equal('0200000006000100');
    expect(hex(encodeConsoleControl(0, ConsoleControlEvent.CONSOLE_PORT, 1))).to.equal('0000000004000100');
  });

  it('item 42: control events are numbered as in §7.2 (DEVICE_READY 0 … PORT_NAME 7)', () => {
    expect([E.DEVICE_READY, E.DEVICE_ADD, E.DEVICE_REMOVE, E.PORT_READY, E.CONSOLE_PORT, E.RESIZE, E.PORT_OPEN, E.PORT_NAME])
      .to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(consoleControlEventName)).to.deep.equal([
      'DEVICE_READY', 'DEVICE_ADD', 'DEVICE_REMOVE', 'PORT_READY', 'CONSOLE_PORT', 'RESIZE', 'PORT_OPEN', 'PORT_NAME']);
  });

  it('EMERG_WRITE of 0x41 outputs "A" on port 0 in any status', () => {
    const d = new ConsoleDevice({ emergWrite: true });
    const out = sink();
    d.port(0).attach(null, out.stream);
    const field = d.configFields.find((f) => f.name === 'emerg_wr');
    expect(field).to.not.equal(undefined);
    d.configWritten(field!, 0x1241);
    expect(out.text()).to.equal('A');
  });
});
