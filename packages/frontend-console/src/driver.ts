/**
 * The virtio-console DRIVER (front-end side, spec §7): a `VirtioDriverOps` table for
 * `VirtioFrontend` that exposes every port as a Node `Duplex` (see port.ts).
 *
 * A vshm console FE MUST support SIZE, MULTIPORT and EMERG_WRITE (§7.3); all three are accepted
 * by default.
 * - SIZE without MULTIPORT: `cols`/`rows` come from config (read on probe and on every config
 *   event, §4.8/§4.9). With MULTIPORT the size comes from RESIZE control messages (§7.3).
 * - MULTIPORT: control receiveq/transmitq (queues 2/3) carry the 8-byte control messages of §7.2;
 *   the driver sends DEVICE_READY(1), answers DEVICE_ADD with PORT_READY(id, 1) and opens the
 *   port (PORT_OPEN(id, 1)); CONSOLE_PORT, PORT_NAME, PORT_OPEN, RESIZE and DEVICE_REMOVE update
 *   the port. Short messages, unknown ids and unknown events are ignored (logged).
 * - EMERG_WRITE: `emergencyWrite(byte)` is a 4-byte config transaction at `emerg_wr` (0x54).
 *
 * Recovery (§4.10): the transport returns every in-flight request through onFailed, then calls
 * remove(); the ports keep unused transmit data and the same Duplex objects, and the next
 * probe() re-attaches them (without MULTIPORT at once, with it on DEVICE_ADD) and re-sends.
 *
 * Kicks are batched: adds made in one synchronous run (a refill, a burst of completions) are
 * published by one kick per queue from a microtask.
 */
import { EventEmitter } from 'node:events';
import { createLogger as createDebug } from '@vshm/transport';
import type { ConfigReader, DriverQueueHandle, DriverSession, QueueBuffers, VirtioDriverOps } from '@vshm/transport';
import {
  CONSOLE_BAD_ID,
  CONSOLE_CONFIG_COLS,
  CONSOLE_CONFIG_EMERG_WR,
  CONSOLE_CONFIG_MAX_NR_PORTS,
  CONSOLE_CONFIG_ROWS,
  CONSOLE_CONTROL_RECEIVEQ,
  CONSOLE_CONTROL_TRANSMITQ,
  ConsoleControlEvent,
  ConsoleFeature,
  VirtioDeviceId,
  consoleControlEventName,
  consoleReceiveQueue,
  consoleTransmitQueue,
  decodeConsolePortName,
  decodeConsoleResize,
  encodeConsoleControl,
  featureBit,
  hasFeature,
  type ConsoleControlMessage,
} from 'virtio-spec-types';
import { CONTROL_RX_BUFFER, ControlQueues } from './control-queues.js';
import { ConsoleError } from './errors.js';
import { ConsolePort, DEFAULT_MULTIPORT_RX_BUFFER, DEFAULT_RX_BUFFER, DEFAULT_TX_PIECE, type ConsolePortOptions, type ConsoleSize } from './port.js';

const debug = createDebug('vshm:console-fe');

/** SIZE | MULTIPORT | EMERG_WRITE. */
export const CONSOLE_DRIVER_FEATURES: bigint =
  featureBit(ConsoleFeature.SIZE) | featureBit(ConsoleFeature.MULTIPORT) | featureBit(ConsoleFeature.EMERG_WRITE);

/** Upper bound of ports we set up queues for (each port costs two rings). */
export const MAX_PORTS_LIMIT = 31;

export interface ConsoleDriverOptions extends ConsolePortOptions {
  /** Device-specific features to accept (subset of CONSOLE_DRIVER_FEATURES). Default: all three. */
  features?: bigint;
  /**
   * Ports to set up queues for when MULTIPORT is negotiated: queueCount = 2·ports + 2 (§7.2).
   * 'auto' (default): the device's `max_nr_ports` (read from config in queueCount, as Linux does),
   * at most MAX_PORTS_LIMIT. A number caps it (never more than `max_nr_ports`); ports the device
   * adds beyond it get PORT_READY(id, 0). 1 … 31.
   */
  maxPorts?: number | 'auto';
  /**
   * How long a port of an earlier session waits for a new device to confirm it (ms, default
   * HELD_PORT_GRACE_MS): counted from the new session's start while the device has not added the
   * id, and — for a named port — from our PORT_READY once it has but has not named it. An unnamed
   * port is confirmed by its id alone (DEVICE_ADD), port 0 included. Then the port is given up as
   * removed ('removed'; a waiting write fails with VSHM_ERR_PORT_REMOVED); port 0 is replaced by
   * a fresh one, as on DEVICE_REMOVE(0).
   */
  heldPortGraceMs?: number;
}

/**
 * Default of `heldPortGraceMs`. A device adds its ports as it takes DEVICE_READY and names each as
 * it takes PORT_READY (QEMU and vshm's back-end answer at once), so this only has to outlast a
 * slow, loaded machine; nothing in VIRTIO marks the end of a device's initial port set.
 */
export const HELD_PORT_GRACE_MS = 5000;

/**
 * Events:
 * - 'ready' (features: bigint): a device session is live (probe; again after each recovery).
 * - 'lost' (reason: Error): the session ended (back-end gone, reset, broken); recovery follows.
 * - 'port' (port: ConsolePort): a port appeared (DEVICE_ADD of a new id; port 0 exists from the start).
 * - 'port-name' (port: ConsolePort): PORT_NAME arrived.
 * - 'console-port' (port: ConsolePort): CONSOLE_PORT marked a port as the console.
 * - 'resize' (size: ConsoleSize): the console port's size changed.
 */
export class ConsoleDriver extends EventEmitter implements VirtioDriverOps {
  readonly deviceId = VirtioDeviceId.CONSOLE;
  readonly features: bigint;
  /** Upper bound of ports to set up queues for (MAX_PORTS_LIMIT for 'auto'). */
  private readonly maxPorts: number;
  private readonly portOptions: ConsolePortOptions;
  private readonly portMap = new Map<number, ConsolePort>();
  private session: DriverSession | null = null;
  private multiport = false;
  private maxNrPorts = 1;
  private consoleId = 0;
  private readonly heldPortGraceMs: number;
  /** Ports of an earlier session waiting for this device to confirm them, and their deadline. */
  private readonly heldTimers = new Map<ConsolePort, NodeJS.Timeout>();
  /** Ports some session served (attached): the ones a later device is given a grace to confirm. */
  private readonly served = new WeakSet<ConsolePort>();
  /** A port 0 put in place of a removed one, not yet announced ('port') by a DEVICE_ADD. */
  private readonly unannounced = new WeakSet<ConsolePort>();
  /** Ports the current device has named (PORT_NAME) in this session. */
  private readonly namedInSession = new Set<number>();
  private sizeValue: ConsoleSize | null = null;
  private readonly control: ControlQueues;
  private readonly toKick = new Set<DriverQueueHandle>();
  private kickScheduled = false;
  private readonly kickScheduler = (q: DriverQueueHandle, now?: boolean): void => {
    this.scheduleKick(q);
    if (now === true) this.kickPending();
  };

  constructor(opts: ConsoleDriverOptions = {}) {
    super();
    const features = opts.features ?? CONSOLE_DRIVER_FEATURES;
    if (typeof features !== 'bigint' || (features & ~CONSOLE_DRIVER_FEATURES) !== 0n) {
      throw new ConsoleError('VSHM_ERR_ARGUMENT', '7.2', `features must be a subset of SIZE|MULTIPORT|EMERG_WRITE (0x7n), got ${String(features)}`);
    }
    const maxPorts = opts.maxPorts ?? 'auto';
    if (maxPorts !== 'auto' && (!Number.isInteger(maxPorts) || maxPorts < 1 || maxPorts > MAX_PORTS_LIMIT)) {
      throw new ConsoleError('VSHM_ERR_ARGUMENT', '7.2', `maxPorts must be 'auto' or an integer 1…${MAX_PORTS_LIMIT}, got ${String(maxPorts)}`);
    }
    const grace = opts.heldPortGraceMs ?? HELD_PORT_GRACE_MS;
    if (!Number.isInteger(grace) || grace < 1) {
      throw new ConsoleError('VSHM_ERR_ARGUMENT', '7.2', `heldPortGraceMs must be a positive integer, got ${String(grace)}`);
    }
    this.heldPortGraceMs = grace;
    this.features = features;
    this.maxPorts = maxPorts === 'auto' ? MAX_PORTS_LIMIT : maxPorts;
    this.portOptions = { rxBufferSize: opts.rxBufferSize, txPieceSize: opts.txPieceSize, highWaterMark: opts.highWaterMark };
    this.control = new ControlQueues(this.kickScheduler, (msg) => this.handleControl(msg), () => this.serviceAll());
    this.portMap.set(0, this.newPort(0));
  }

  // ------------------------------------------------------------------------------ public API

  /** Port `id` (port 0 always exists), or undefined. */
  port(id: number): ConsolePort | undefined {
    return this.portMap.get(id);
  }

  /** All known ports by id. */
  get ports(): ReadonlyMap<number, ConsolePort> {
    return this.portMap;
  }

  /** The console port: port 0 without MULTIPORT, else the one CONSOLE_PORT named (default 0). */
  get consolePort(): ConsolePort {
    return this.portMap.get(this.consoleId) ?? (this.portMap.get(0) as ConsolePort);
  }

  /** Size of the console port, or null if the device never told one. */
  get size(): ConsoleSize | null {
    return this.sizeValue;
  }

  /** Whether a device session is live. */
  get ready(): boolean {
    return this.session !== null;
  }

  /** Negotiated features of the live session (0n when none). */
  get negotiatedFeatures(): bigint {
    return this.session?.features ?? 0n;
  }

  /** The port named `name` once PORT_NAME announced it (MULTIPORT). */
  waitForPort(name: string): Promise<ConsolePort> {
    for (const p of this.portMap.values()) if (p.portName === name) return Promise.resolve(p);
    return new Promise((resolve) => {
      const onName = (p: ConsolePort): void => {
        if (p.portName !== name) return;
        this.off('port-name', onName);
        resolve(p);
      };
      this.on('port-name', onName);
    });
  }

  /**
   * EMERG_WRITE (§7.3): a 4-byte config transaction at `emerg_wr` (header 0x54); the device
   * outputs the low byte on port 0, in any status. Resolves once the back-end completed it.
   */
  async emergencyWrite(byte: number): Promise<void> {
    if (!Number.isInteger(byte) || byte < 0 || byte > 0xff) {
      throw new ConsoleError('VSHM_ERR_ARGUMENT', '7.2', `emergency write takes a byte 0…255, got ${String(byte)}`);
    }
    const s = this.session;
    if (s === null) throw new ConsoleError('VSHM_ERR_NOT_READY', '4.10', 'no live console device session');
    if (!hasFeature(s.features, ConsoleFeature.EMERG_WRITE)) {
      throw new ConsoleError('VSHM_ERR_FEATURE', '7.2', 'EMERG_WRITE was not negotiated');
    }
    await s.writeConfig(CONSOLE_CONFIG_EMERG_WR, 4, byte);
  }

  // ------------------------------------------------------------------------ VirtioDriverOps

  queueCount(features: bigint, config: ConfigReader): number {
    // §7.2: Q = 2, or 2·max_nr_ports + 2 with MULTIPORT (limited to the ports we serve).
    if (!hasFeature(features, ConsoleFeature.MULTIPORT)) return 2;
    const max = config.read(CONSOLE_CONFIG_MAX_NR_PORTS, 4);
    const ports = this.portsToServe(max);
    debug('queueCount: max_nr_ports %d, setting up queues for %d ports', max, ports);
    return 2 * ports + 2;
  }

  /**
   * The buffers each queue keeps posted (`VirtioDriverOps.queueBuffers`), so that the transport
   * picks queue sizes the shared memory can serve: every receiveq is kept full of `size` receive
   * buffers (rxBufferSize, or its default: 4 KiB, 1 KiB with MULTIPORT), the control receiveq of
   * `size` control buffers (CONTROL_RX_BUFFER); a transmitq needs room for at least one piece.
   */
  queueBuffers(index: number, size: number, features: bigint): QueueBuffers {
    const multiport = hasFeature(features, ConsoleFeature.MULTIPORT);
    if (multiport && index === CONSOLE_CONTROL_RECEIVEQ) return { writable: { bytes: CONTROL_RX_BUFFER, count: size } };
    if (multiport && index === CONSOLE_CONTROL_TRANSMITQ) return { readable: { bytes: 8, count: 1 } }; // one 8-byte control message
    // Port queues (§7.2): receiveqs are 0 and 2n + 2, transmitqs 1 and 2n + 3 — receive is even.
    if (index % 2 === 0) {
      const bytes = this.portOptions.rxBufferSize ?? (multiport ? DEFAULT_MULTIPORT_RX_BUFFER : DEFAULT_RX_BUFFER);
      return { writable: { bytes, count: size } };
    }
    return { readable: { bytes: this.portOptions.txPieceSize ?? DEFAULT_TX_PIECE, count: 1 } };
  }

  probe(session: DriverSession): void {
    this.session = session;
    this.multiport = hasFeature(session.features, ConsoleFeature.MULTIPORT);
    debug('probe: features 0x%s, multiport %s', session.features.toString(16), this.multiport);
    // A new device: the console is port 0 until CONSOLE_PORT says otherwise.
    this.consoleId = 0;
    this.namedInSession.clear();
    if (hasFeature(session.features, ConsoleFeature.SIZE)) this.readConfigSize(session);
    if (!this.multiport) {
      this.maxNrPorts = 1;
      const p0 = this.portMap.get(0) as ConsolePort;
      p0.isConsole = true;
      this.attachPort(p0, session);
      // A port 0 put in place of a removed one is announced when a device serves it, as on
      // DEVICE_ADD(0): without MULTIPORT that is now.
      if (this.unannounced.delete(p0)) this.emit('port', p0);
    } else {
      const max = session.readConfig(CONSOLE_CONFIG_MAX_NR_PORTS, 4);
      // Ports with queues: what queueCount chose (max_nr_ports may have changed since, §4.8).
      this.maxNrPorts = Math.min(this.portsToServe(max), Math.max(0, (session.queues.length - 2) >> 1));
      debug('probe: max_nr_ports %d, serving %d', max, this.maxNrPorts);
      const rx = session.queues[CONSOLE_CONTROL_RECEIVEQ];
      const tx = session.queues[CONSOLE_CONTROL_TRANSMITQ];
      if (rx !== undefined && tx !== undefined) {
        this.control.attach(rx, tx);
        this.sendControl(encodeConsoleControl(CONSOLE_BAD_ID, ConsoleControlEvent.DEVICE_READY, 1));
      }
    }
    // Ports an earlier device served wait for this one to add them (and name them, if named) —
    // for a bounded time. A port no device has served yet (port 0 before the first DEVICE_ADD(0))
    // is not held: there is nothing to give up but the wait for a device that has it.
    for (const p of this.portMap.values()) {
      if (!p.attached && (this.served.has(p) || (p.id !== 0 && p.portName !== null))) this.holdUntil(p);
    }
    this.emit('ready', session.features);
  }

  remove(reason: Error): void {
    debug('remove: %s', reason.message);
    const wasLive = this.session !== null;
    this.session = null;
    // No device, no deadline: the next device gets its own grace.
    for (const t of this.heldTimers.values()) clearTimeout(t);
    this.heldTimers.clear();
    this.control.detach();
    this.toKick.clear();
    for (const p of this.portMap.values()) {
      p.detach();
      // What the old device said about its host side no longer holds; the next one says its own
      // (PORT_OPEN after PORT_READY). No 'host-close': the back-end going away is not a close.
      p.hostOpen = null;
    }
    if (wasLive) this.emit('lost', reason);
  }

  configChanged(session: DriverSession): void {
    if (session !== this.session) return;
    // §7.3: without MULTIPORT a terminal resize is a config update + config event.
    if (hasFeature(session.features, ConsoleFeature.SIZE) && !this.multiport) this.readConfigSize(session);
  }

  // ------------------------------------------------------------------------------- internals

  /** Ports to serve for a device with `maxNrPorts`: port 0 always, at most `maxPorts`. */
  private portsToServe(maxNrPorts: number): number {
    return Math.max(1, Math.min(maxNrPorts, this.maxPorts));
  }

  private newPort(id: number): ConsolePort {
    const p = new ConsolePort(id, this.kickScheduler, this.portOptions);
    // Memory freed by one port's completion may unblock another (one shared allocator, §5.1).
    p.on('completion', () => this.serviceAll());
    // The application closed the port (the stream was destroyed): tell the device (§7.2 PORT_OPEN 0).
    p.once('close', () => {
      if (this.multiport && this.session !== null && p.attached) {
        this.sendControl(encodeConsoleControl(p.id, ConsoleControlEvent.PORT_OPEN, 0));
      }
    });
    return p;
  }

  private attachPort(port: ConsolePort, session: DriverSession, holdTransmit = false): boolean {
    const rx = session.queues[consoleReceiveQueue(port.id)];
    const tx = session.queues[consoleTransmitQueue(port.id)];
    if (rx === undefined || tx === undefined) return false;
    port.attach(rx, tx, this.multiport ? DEFAULT_MULTIPORT_RX_BUFFER : DEFAULT_RX_BUFFER, holdTransmit);
    this.served.add(port);
    return true;
  }

  /**
   * The device named port `old.id` `name` where `old` had another name: a different port has this
   * id now (a back-end that came back with other ports). The old stream ends as if removed; a new
   * one takes the id, attached and opened, and is announced.
   */
  private replacePort(old: ConsolePort, name: string, session: DriverSession): void {
    const id = old.id;
    this.release(old);
    debug('port %d: named %s by the device, was %s: another port, the old stream ends', id, name, old.portName);
    this.portMap.delete(id);
    old.markRemoved();
    const port = this.newPort(id);
    this.portMap.set(id, port);
    port.portName = name;
    port.isConsole = this.multiport && this.consoleId === id && old.isConsole;
    if (this.attachPort(port, session)) this.sendControl(encodeConsoleControl(id, ConsoleControlEvent.PORT_OPEN, 1));
    this.emit('port', port);
    port.emit('name', name);
    this.emit('port-name', port);
  }

  /** (Re)start the deadline by which this device must confirm `port` (see heldPortGraceMs). */
  private holdUntil(port: ConsolePort): void {
    this.release(port);
    const timer = setTimeout(() => {
      this.heldTimers.delete(port);
      if (this.session === null || this.portMap.get(port.id) !== port) return;
      if (port.attached && !port.transmitHeld) return;
      debug('port %d (%s): not %s by the new device within %d ms: given up as removed', port.id, port.portName, port.attached ? 'named' : 'added', this.heldPortGraceMs);
      this.removePort(port);
    }, this.heldPortGraceMs);
    // The deadline alone must not keep a process alive that has nothing else to do.
    timer.unref();
    this.heldTimers.set(port, timer);
  }

  /**
   * `port` is gone (DEVICE_REMOVE, or not confirmed in time): its stream ends and the id is free.
   * Port 0 is unplugged like any other (Linux's virtio_console does so too), but port(0) must
   * still answer, so a fresh, unattached port 0 takes the id at once; a later DEVICE_ADD(0)
   * attaches and announces it.
   */
  private removePort(port: ConsolePort): void {
    this.release(port);
    this.portMap.delete(port.id);
    if (port.id === 0) {
      const fresh = this.newPort(0);
      this.portMap.set(0, fresh);
      this.unannounced.add(fresh);
    }
    port.markRemoved();
  }

  /** `port` no longer waits for confirmation (confirmed, replaced or removed). */
  private release(port: ConsolePort): void {
    const t = this.heldTimers.get(port);
    if (t === undefined) return;
    clearTimeout(t);
    this.heldTimers.delete(port);
  }

  private readConfigSize(session: DriverSession): void {
    // One generation check for both (§4.8): a resize between two separate reads would give a
    // size the terminal never had (the new cols with the old rows).
    const [cols, rows] = session.readConfigMany((read) => [read(CONSOLE_CONFIG_COLS, 2), read(CONSOLE_CONFIG_ROWS, 2)]);
    this.setSize(this.consoleId, { cols, rows });
  }

  private setSize(portId: number, size: ConsoleSize): void {
    const port = this.portMap.get(portId);
    if (port !== undefined) {
      const old = port.size;
      port.size = size;
      if (old === null || old.cols !== size.cols || old.rows !== size.rows) port.emit('resize', size);
    }
    if (portId !== this.consoleId) return;
    const old = this.sizeValue;
    this.sizeValue = size;
    if (old === null || old.cols !== size.cols || old.rows !== size.rows) {
      debug('resize: %dx%d', size.cols, size.rows);
      this.emit('resize', size);
    }
  }

  private scheduleKick(q: DriverQueueHandle): void {
    this.toKick.add(q);
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    queueMicrotask(() => {
      this.kickScheduled = false;
      this.kickPending();
    });
  }

  /** Kick every queue with adds not yet published (one kick each); the microtask then finds none. */
  private kickPending(): void {
    if (this.toKick.size === 0) return;
    const s = this.session;
    for (const queue of this.toKick) {
      // A queue of a session that ended meanwhile must not be touched (§4.10).
      if (s !== null && s.queues[queue.index] === queue) queue.kick();
    }
    this.toKick.clear();
  }

  private serviceAll(): void {
    for (const p of this.portMap.values()) p.service();
    this.control.service();
  }

  // ----------------------------------------------------------------------- control (§7.2)

  private sendControl(msg: Uint8Array): void {
    this.control.send(msg);
  }

  private handleControl(msg: ConsoleControlMessage): void {
    const { id, event, value } = msg;
    if (debug.enabled) debug('control <- %s id %d value %d', consoleControlEventName(event), id, value);
    if (event === ConsoleControlEvent.DEVICE_ADD) {
      this.deviceAdd(id);
      return;
    }
    const port = id < this.maxNrPorts ? this.portMap.get(id) : undefined;
    if (port === undefined) {
      if (debug.enabled) debug('control: ignoring %s for unknown port %d', consoleControlEventName(event), id);
      return;
    }
    switch (event) {
      case ConsoleControlEvent.DEVICE_REMOVE:
        this.namedInSession.delete(id); // added again, it is a new port, to be named anew
        this.removePort(port);
        return;
      case ConsoleControlEvent.CONSOLE_PORT:
        if (value !== 1) return;
        port.isConsole = true;
        this.consoleId = id;
        // VIRTIO 1.2 §5.3.6.2.2: the answer to CONSOLE_PORT MUST be PORT_OPEN(1), whatever the stream's state.
        this.sendControl(encodeConsoleControl(id, ConsoleControlEvent.PORT_OPEN, 1));
        this.emit('console-port', port);
        if (port.size !== null) this.setSize(id, port.size);
        return;
      case ConsoleControlEvent.RESIZE:
        try {
          this.setSize(id, decodeConsoleResize(msg));
        } catch {
          debug('control: ignoring a short RESIZE');
        }
        return;
      case ConsoleControlEvent.PORT_NAME: {
        const name = decodeConsolePortName(msg);
        if (name.length === 0) return;
        // A port is named once per DEVICE_ADD, as Linux names it: a device that renames a port
        // would send what an application picked by name to another port, or give two ports one name.
        if (this.namedInSession.has(id)) {
          debug('port %d: named %s again (was %s): ignored', id, name, port.portName);
          return;
        }
        this.namedInSession.add(id);
        if (port.attached && port.transmitHeld && this.session !== null) {
          // The answer deviceAdd() waits for: the same port, or another one under its id.
          if (name !== port.portName) {
            this.replacePort(port, name, this.session);
            return;
          }
          this.release(port);
          port.releaseTransmit();
          if (!port.destroyed) this.sendControl(encodeConsoleControl(id, ConsoleControlEvent.PORT_OPEN, 1));
          return;
        }
        if (port.portName === name) return;
        port.portName = name;
        port.emit('name', name);
        this.emit('port-name', port);
        return;
      }
      case ConsoleControlEvent.PORT_OPEN: {
        const open = value === 1;
        if (port.hostOpen === open) return;
        port.hostOpen = open;
        port.emit(open ? 'host-open' : 'host-close');
        return;
      }
      default:
        debug('control: ignoring event %d', event);
    }
  }

  private deviceAdd(id: number): void {
    const s = this.session;
    if (s === null) return;
    if (id >= this.maxNrPorts) {
      debug('control: DEVICE_ADD %d beyond the %d ports served: PORT_READY 0', id, this.maxNrPorts);
      this.sendControl(encodeConsoleControl(id, ConsoleControlEvent.PORT_READY, 0));
      return;
    }
    let port = this.portMap.get(id);
    const isNew = port === undefined || this.unannounced.delete(port);
    if (port === undefined) {
      port = this.newPort(id);
      this.portMap.set(id, port);
    }
    // A named port of an earlier session is this device's port `id` only if the device names it
    // so again (PORT_NAME follows our PORT_READY): until then it transmits nothing and is not
    // opened, so neither what it kept back nor the device's input crosses to another port that a
    // back-end started with other ports has put under this id. Port 0 stays the API's anchor.
    const confirm = !port.attached && id !== 0 && port.portName !== null && !this.namedInSession.has(id);
    const ok = port.attached || this.attachPort(port, s, confirm);
    // Held: the device has the id; its name is due in answer to the PORT_READY below.
    if (ok && port.transmitHeld) this.holdUntil(port);
    else this.release(port);
    this.sendControl(encodeConsoleControl(id, ConsoleControlEvent.PORT_READY, ok ? 1 : 0));
    // Our side of the port is open as soon as the stream exists (a getty-like consumer) and until
    // the application destroys it: a destroyed port stays closed in every later session too, or
    // the device would deliver input nobody can read (Linux: a port nobody opened, PORT_READY only).
    if (ok && !port.destroyed && !port.transmitHeld) this.sendControl(encodeConsoleControl(id, ConsoleControlEvent.PORT_OPEN, 1));
    if (isNew) this.emit('port', port);
  }
}
