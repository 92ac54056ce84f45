/**
 * The MULTIPORT control queues of the driver (spec §7.2): control receiveq (2) kept full of
 * empty buffers, control transmitq (3) fed from a FIFO of encoded messages. Knows bytes only —
 * decoding and the port state machine live in driver.ts.
 */
import { createLogger as createDebug } from '@vshm/transport';
import type { DriverQueueHandle } from '@vshm/transport';
import { ConsoleControlEvent, CONSOLE_CONTROL_SIZE, decodeConsoleControl, sameConsoleControl, sameConsoleControlPort, type ConsoleControlMessage } from 'virtio-spec-types';
import type { KickScheduler } from './port.js';

const debug = createDebug('vshm:console-fe');

/** Control buffers posted on the control receiveq; PORT_NAME payloads longer than this minus 8 are cut. */
export const CONTROL_RX_BUFFER = 256;

/**
 * Most messages kept while the device uses no control transmit buffer. A session needs a few per
 * port (≤ 31); beyond this a device repeating DEVICE_ADD would grow our memory without bound,
 * so further messages are dropped.
 */
export const MAX_CONTROL_BACKLOG = 1024;

export class ControlQueues {
  private rx: DriverQueueHandle | null = null;
  private tx: DriverQueueHandle | null = null;
  /** Messages not yet posted (the control transmitq was full or memory short). */
  private pending: Uint8Array[] = [];
  private readonly kick: KickScheduler;
  /** A decoded message from the device (malformed ones are dropped here, §7.3). */
  private readonly onMessage: (msg: ConsoleControlMessage) => void;
  /** Any completion: shared memory may have been freed. */
  private readonly onCompletion: () => void;

  constructor(kick: KickScheduler, onMessage: (msg: ConsoleControlMessage) => void, onCompletion: () => void) {
    this.kick = kick;
    this.onMessage = onMessage;
    this.onCompletion = onCompletion;
  }

  attach(rx: DriverQueueHandle, tx: DriverQueueHandle): void {
    this.rx = rx;
    this.tx = tx;
    this.pending = [];
    rx.onUsed = (_t, data) => this.received(data);
    rx.onFailed = () => {};
    tx.onUsed = () => this.onCompletion();
    // Control state is rebuilt from DEVICE_READY on the next session: failed messages are dropped.
    tx.onFailed = () => {};
    this.service();
  }

  detach(): void {
    this.rx = null;
    this.tx = null;
    this.pending = [];
  }

  send(msg: Uint8Array): void {
    if (this.tx === null) return;
    // A device that takes none of our messages must not let repeats crowd a later one out of the
    // bounded backlog: a PORT_OPEN still waiting for the same port gives way to the new one (only
    // the latest state matters), and a message identical to one still waiting (PORT_READY again
    // for a device repeating DEVICE_ADD) is not kept twice.
    if (isPortOpen(msg)) {
      const i = this.pending.findIndex((m) => isPortOpen(m) && sameConsoleControlPort(m, msg));
      if (i >= 0) this.pending.splice(i, 1); // the new state goes last, after what led to it
    } else if (this.pending.some((m) => sameConsoleControl(m, msg))) {
      return;
    }
    if (this.pending.length >= MAX_CONTROL_BACKLOG) {
      debug('control: %d messages wait for the device, message dropped', this.pending.length);
      return;
    }
    this.pending.push(msg);
    this.pump();
  }

  /** Messages not yet posted. */
  get backlog(): number {
    return this.pending.length;
  }

  /** Retry posting after a completion anywhere. */
  service(): void {
    this.pump();
    this.refill();
  }

  private pump(): void {
    const tx = this.tx;
    if (tx === null) return;
    let added = 0;
    while (this.pending.length > 0 && tx.inFlight < tx.size && tx.add(this.pending[0], 0, null)) {
      this.pending.shift();
      added++;
    }
    if (added > 0) this.kick(tx);
  }

  private refill(): void {
    const rx = this.rx;
    if (rx === null) return;
    let added = 0;
    while (rx.inFlight < rx.size && rx.add(null, CONTROL_RX_BUFFER, null)) added++;
    if (added > 0) this.kick(rx);
  }

  private received(data: Uint8Array): void {
    let msg: ConsoleControlMessage | null = null;
    try {
      msg = decodeConsoleControl(data);
    } catch {
      debug('control: ignoring a short message of %d bytes', data.length);
    }
    if (msg !== null) this.onMessage(msg);
    this.onCompletion();
  }
}

function isPortOpen(m: Uint8Array): boolean {
  return m.length >= CONSOLE_CONTROL_SIZE && (m[4] | (m[5] << 8)) === ConsoleControlEvent.PORT_OPEN;
}
