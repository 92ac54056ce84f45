/**
 * The driver's MULTIPORT control queues (control-queues.ts) against a back-end that never uses
 * the control transmitq: what waits must stay bounded (a hostile back-end repeating DEVICE_ADD
 * makes the driver answer PORT_READY and PORT_OPEN each time, §7.3).
 */
import { expect } from 'chai';
import { ConsoleControlEvent, encodeConsoleControl } from 'virtio-spec-types';
import type { DriverQueueHandle } from '@vshm/transport';
import { ControlQueues, MAX_CONTROL_BACKLOG } from '../src/control-queues.js';

function fullQueue(index: number): DriverQueueHandle {
  // A ring the device never empties: nothing more can be posted.
  return { index, size: 8, inFlight: 8, onUsed: null, onFailed: null, add: () => false, kick: () => {} } as DriverQueueHandle;
}

describe('console driver control backlog', () => {
  it('stays bounded while the device uses no control transmit buffer', () => {
    const cq = new ControlQueues(() => {}, () => {}, () => {});
    cq.attach(fullQueue(2), fullQueue(3));
    // Repeats of a waiting message are kept once; different messages up to the bound.
    for (let i = 0; i < 100_000; i++) cq.send(encodeConsoleControl(i % 31, ConsoleControlEvent.PORT_READY, 1));
    expect(cq.backlog).to.equal(31);
    for (let i = 0; i < 100_000; i++) cq.send(encodeConsoleControl(i, ConsoleControlEvent.PORT_READY, 0));
    expect(cq.backlog).to.equal(MAX_CONTROL_BACKLOG);
  });
});
