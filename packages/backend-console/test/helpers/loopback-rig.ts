/**
 * In-process rig: the real VirtioBackend (with a ConsoleDevice) and VirtioFrontend (with a
 * minimal console driver) over createLoopbackPair.
 *
 * TODO(transport): import VirtioBackend / VirtioFrontend and the driver-side types from
 * '@vshm/transport' once its index exports them; the deep imports below are test-only.
 */
import { createLoopbackPair } from '../../../transport/src/testing/loopback.js';
import type { IvshmemDevice } from '../../../transport/src/ivshmem/device.js';
import { VirtioBackend } from '../../../transport/src/virtio/backend.js';
import { VirtioFrontend } from '../../../transport/src/virtio/frontend.js';
import type { DriverSession, VirtioDriverOps } from '../../../transport/src/virtio/device-api.js';
import { consoleQueueCount, ConsoleFeature, featureBit, hasFeature, VirtioDeviceId } from 'virtio-spec-types';
import { RigList } from '../../../transport/test/fixtures/loopback-rigs.js';
import { ConsoleDevice, type ConsoleDeviceOptions } from '../../src/device.js';

type Token = { kind: 'rx' | 'tx'; q: number };

/**
 * A minimal console driver: keeps `rxBuffers` receive buffers posted on every receive queue
 * (ports and control), records what arrives per queue, sends bytes on a transmit queue.
 */
export class MiniDriver implements VirtioDriverOps {
  readonly deviceId = VirtioDeviceId.CONSOLE;
  readonly features: bigint;
  session: DriverSession | null = null;
  probes = 0;
  configEvents = 0;
  /** Bytes received per queue index, in completion order. */
  readonly received = new Map<number, Buffer[]>();
  private readonly maxNrPorts: number;
  private readonly rxBufferSize: number;

  constructor(features: bigint, maxNrPorts = 0, rxBufferSize = 64) {
    this.features = features;
    this.maxNrPorts = maxNrPorts;
    this.rxBufferSize = rxBufferSize;
  }

  queueCount(features: bigint): number {
    return consoleQueueCount(hasFeature(features, ConsoleFeature.MULTIPORT), this.maxNrPorts);
  }

  probe(session: DriverSession): void {
    this.session = session;
    this.probes++;
    session.queues.forEach((q, i) => {
      // Even indices are receive queues (device → driver): 0, 2 and 2n+2.
      if (i % 2 !== 0) return;
      q.onUsed = (_t, data) => {
        this.chunks(i).push(Buffer.from(data));
        q.add(null, this.rxBufferSize, { kind: 'rx', q: i } satisfies Token);
        q.kick();
      };
      while (q.add(null, this.rxBufferSize, { kind: 'rx', q: i } satisfies Token));
      q.kick();
    });
  }

  remove(): void {
    this.session = null;
  }

  configChanged(): void {
    this.configEvents++;
  }

  chunks(q: number): Buffer[] {
    let c = this.received.get(q);
    if (c === undefined) this.received.set(q, (c = []));
    return c;
  }

  text(q: number): string {
    return Buffer.concat(this.chunks(q)).toString();
  }

  send(q: number, data: Uint8Array | string): void {
    const s = this.session;
    if (s === null) throw new Error('not probed');
    const ok = s.queues[q].add(typeof data === 'string' ? Buffer.from(data) : data, 0, { kind: 'tx', q } satisfies Token);
    if (!ok) throw new Error(`queue ${q} full`);
    s.queues[q].kick();
  }
}

export interface Rig {
  be: IvshmemDevice;
  fe: IvshmemDevice;
  device: ConsoleDevice;
  backend: VirtioBackend;
  driver: MiniDriver;
  frontend: VirtioFrontend;
}

const rigs = new RigList<Rig>();

export const F = {
  SIZE: featureBit(ConsoleFeature.SIZE),
  MULTIPORT: featureBit(ConsoleFeature.MULTIPORT),
  EMERG_WRITE: featureBit(ConsoleFeature.EMERG_WRITE),
};

/** Start a rig and wait until the driver was probed. */
export async function startRig(dev: ConsoleDeviceOptions | ConsoleDevice, driver: MiniDriver): Promise<Rig> {
  const [be, fe] = createLoopbackPair({ size: 65536, vectors: 3, protocol: 0x8003 });
  const device = dev instanceof ConsoleDevice ? dev : new ConsoleDevice(dev);
  const backend = new VirtioBackend(be, device);
  const frontend = new VirtioFrontend(fe, driver);
  const rig = rigs.add({ be, fe, device, backend, driver, frontend });
  backend.start();
  await frontend.start();
  return rig;
}

/** A new front-end (fresh driver) on the same back-end, after the old one closed. */
export async function replaceFrontend(rig: Rig, driver: MiniDriver): Promise<void> {
  await rig.frontend.close();
  rig.driver = driver;
  rig.frontend = new VirtioFrontend(rig.fe, driver);
  await rig.frontend.start();
}

/** Close every rig started so far (afterEach). */
export function closeRigs(): Promise<void> {
  return rigs.closeAll();
}
