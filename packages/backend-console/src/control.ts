/**
 * The MULTIPORT control channel of one driver session (spec §7.2, OASIS VIRTIO 1.2 §5.3.6.2):
 * control receiveq (queue 2, device → driver) and control transmitq (queue 3, driver → device).
 *
 * Outgoing messages wait in order until the driver posts control receive buffers; each message
 * takes one chain. Incoming messages are decoded once from a private copy (read once); short
 * messages are dropped here, `id` range and unknown events are the session's business.
 */
import { createLogger } from '@vshm/transport';
import type { DeviceChain, DeviceQueueHandle } from '@vshm/transport';
import {
  CONSOLE_CONTROL_SIZE,
  ConsoleControlEvent,
  consoleControlEventName,
  decodeConsoleControl,
  sameConsoleControl,
  sameConsoleControlPort,
  type ConsoleControlMessage,
} from 'virtio-spec-types';

const debug = createLogger('vshm:console-be');

/** Largest control message the device reads: header + a PORT_NAME-sized payload. */
const MAX_CONTROL_IN = 4096;

/**
 * Most messages kept for a driver that posts no control receive buffers. A session sends a
 * handful per port (≤ 64 ports), so a legitimate backlog stays far below; beyond it a front-end
 * repeating DEVICE_READY would grow our memory without bound, so further messages are dropped.
 */
export const MAX_CONTROL_BACKLOG = 1024;

export class ControlChannel {
  private readonly rxq: DeviceQueueHandle | undefined;
  private readonly txq: DeviceQueueHandle | undefined;
  private readonly onMessage: (msg: ConsoleControlMessage) => void;
  private readonly pending: Uint8Array[] = [];
  private closed = false;

  constructor(
    rxq: DeviceQueueHandle | undefined,
    txq: DeviceQueueHandle | undefined,
    onMessage: (msg: ConsoleControlMessage) => void,
  ) {
    this.rxq = rxq;
    this.txq = txq;
    this.onMessage = onMessage;
    if (rxq !== undefined) rxq.onAvailable = () => this.pumpOut();
    if (txq !== undefined) txq.onAvailable = () => this.pumpIn();
  }

  /** Queue one encoded message for the driver and send it as soon as a buffer is available. */
  send(msg: Uint8Array): void {
    if (this.closed) return;
    if (debug.enabled) debug('control → %s id=%d', consoleControlEventName(msg[4] | (msg[5] << 8)), msg[0] | (msg[1] << 8));
    // A driver that posts no control buffers must not make state messages pile up: a RESIZE or
    // PORT_OPEN still waiting for the same port is replaced, since only the latest size and the
    // latest host-side state matter. Else a host side that opens and closes often enough would
    // fill the backlog, and the driver would get a stale state and no later resize at all.
    // Likewise a message identical to one still waiting (DEVICE_ADD again for a driver repeating
    // DEVICE_READY, CONSOLE_PORT and PORT_NAME again for one repeating PORT_READY) says nothing
    // new: it is not kept twice, so repeats cannot crowd a later message out of the backlog. This
    // holds because the device never removes a port (no DEVICE_REMOVE): were it to, ADD, REMOVE
    // and ADD again would be three messages, not two.
    const ev = stateEvent(msg);
    const i = ev >= 0 ? this.pending.findIndex((m) => stateEvent(m) === ev && sameConsoleControlPort(m, msg)) : -1;
    if (i >= 0) this.pending[i] = msg;
    else if (ev < 0 && this.pending.some((m) => sameConsoleControl(m, msg))) debug('control: the same message already waits, not queued again');
    else if (this.pending.length < MAX_CONTROL_BACKLOG) this.pending.push(msg);
    else debug('control: %d messages wait for receive buffers, message dropped', this.pending.length);
    this.pumpOut();
  }

  /** Messages not yet handed to the driver. */
  get backlog(): number {
    return this.pending.length;
  }

  /** Process what the driver already posted (called once at activation). */
  start(): void {
    this.pumpIn();
    this.pumpOut();
  }

  /** The session ended: stop touching the queues; unsent messages are dropped with it. */
  close(): void {
    this.closed = true;
    this.pending.length = 0;
    if (this.rxq !== undefined) this.rxq.onAvailable = null;
    if (this.txq !== undefined) this.txq.onAvailable = null;
  }

  private pumpOut(): void {
    const q = this.rxq;
    if (q === undefined || this.closed) return;
    let pushed = false;
    while (this.pending.length > 0) {
      const chain = q.pop();
      if (chain === null) break;
      const msg = this.pending.shift() as Uint8Array;
      const n = chain.write(msg);
      if (n < msg.length) debug('control receive buffer of %d bytes truncated a %d-byte message', chain.writableLength, msg.length);
      q.push(chain, n);
      pushed = true;
    }
    if (pushed) q.flush();
  }

  private pumpIn(): void {
    const q = this.txq;
    if (q === undefined) return;
    let pushed = false;
    while (!this.closed) {
      const chain = q.pop();
      if (chain === null) break;
      const bytes = readChain(chain);
      q.push(chain, 0);
      pushed = true;
      let msg: ConsoleControlMessage;
      try {
        msg = decodeConsoleControl(bytes);
      } catch {
        debug('control ← short message of %d bytes ignored', bytes.length);
        continue;
      }
      if (debug.enabled) debug('control ← %s id=%d value=%d', consoleControlEventName(msg.event), msg.id, msg.value);
      this.onMessage(msg);
    }
    if (pushed && !this.closed) q.flush();
  }
}

/** The event of a message that states a port's current state (RESIZE, PORT_OPEN), else -1. */
function stateEvent(m: Uint8Array): number {
  if (m.length < CONSOLE_CONTROL_SIZE) return -1;
  const ev = m[4] | (m[5] << 8);
  return ev === ConsoleControlEvent.RESIZE || ev === ConsoleControlEvent.PORT_OPEN ? ev : -1;
}

function readChain(chain: DeviceChain): Uint8Array {
  const buf = new Uint8Array(Math.min(chain.readableLength, MAX_CONTROL_IN));
  const n = chain.read(buf);
  return buf.subarray(0, n);
}
