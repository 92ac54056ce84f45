/**
 * Small helpers shared by the ConsoleDevice tests over FakeSession (console-device.test.ts and
 * conformance/40–42): host-side streams of a port, and control messages on the MULTIPORT control
 * queues (§7.2: control receiveq 2, control transmitq 3).
 */
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { decodeConsoleControl, encodeConsoleControl } from 'virtio-spec-types';
import type { ConsolePort } from '../../src/port.js';
import { FakeChain, type FakeQueue, type FakeSession } from './fake-session.js';

/** Collects what the device writes to a port's host output. */
export function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

/** Writes `text` to a port's host input and waits until the port took it. */
export async function feed(input: PassThrough, port: ConsolePort, text: string): Promise<void> {
  const took = once(port, 'input'); // registered first: 'data' may fire synchronously inside write()
  input.write(text);
  await took;
}

/** The control messages the device put on `q` (the control receiveq), decoded. */
export function controlMessages(q: FakeQueue): Array<{ id: number; event: number; value: number; payload: Uint8Array }> {
  return q.used.map((u) => decodeConsoleControl(u.chain.writable.subarray(0, u.written)));
}

/** The driver sends one control message on the control transmitq (queue 3). */
export function sendControl(s: FakeSession, id: number, event: number, value: number): void {
  s.queues[3].post(new FakeChain(encodeConsoleControl(id, event, value)));
}
