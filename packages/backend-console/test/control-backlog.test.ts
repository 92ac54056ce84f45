/**
 * The MULTIPORT control channel (control.ts) against a driver that posts no control receive
 * buffers: what waits for it must stay bounded (a hostile front-end repeating DEVICE_READY makes
 * the session queue DEVICE_ADD for every port each time, §7.3).
 */
import { expect } from 'chai';
import { ConsoleControlEvent, encodeConsoleControl } from 'virtio-spec-types';
import type { DeviceQueueHandle } from '@vshm/transport';
import { ControlChannel, MAX_CONTROL_BACKLOG } from '../src/control.js';

function emptyQueue(index: number): DeviceQueueHandle {
  return { index, size: 8, onAvailable: null, pop: () => null, push: () => {}, flush: () => {} } as unknown as DeviceQueueHandle;
}

describe('console control channel backlog', () => {
  it('stays bounded while the driver posts no control receive buffers', () => {
    const ch = new ControlChannel(emptyQueue(2), emptyQueue(3), () => {});
    // Repeats of a waiting message are kept once; different messages up to the bound.
    for (let i = 0; i < 100_000; i++) ch.send(encodeConsoleControl(i % 64, ConsoleControlEvent.DEVICE_ADD, 1));
    expect(ch.backlog).to.equal(64);
    for (let i = 0; i < 100_000; i++) ch.send(encodeConsoleControl(i, ConsoleControlEvent.DEVICE_ADD, 1));
    expect(ch.backlog).to.equal(MAX_CONTROL_BACKLOG);
    expect(MAX_CONTROL_BACKLOG).to.be.at.least(64 * 5); // every message of 64 ports still fits
  });
});
