/**
 * One front-end initialisation, §4.10 FE steps (3)–(5), in the exact order the spec (and the
 * Linux virtio_ivshmem driver) uses:
 *   (3) validate the header (§4.2), fresh allocator (§5);
 *   (4) one-shot off, State := READY;
 *   (5) status 0 (reset), ACKNOWLEDGE, DRIVER; features (§4.4); FEATURES_OK + re-read (§4.5);
 *       ops.queueCount(features, config reader);
 *       per queue: select, read the window, allocate rings, size/vectors/addresses/enable (§4.6);
 *       Interrupt Control := 1; DRIVER_OK.
 * Every wait is a transaction (frontend-transactions.ts), so a BE that leaves READY or stops
 * answering makes this throw a back-end failure; the caller (frontend.ts) classifies and recovers.
 */
import createDebug from 'debug';
import { DeviceStatus, VirtioFeatureMask } from 'virtio-spec-types';
import { TransportError } from '../errors.js';
import { PEER_STATE_READY, type IvshmemDevice } from '../ivshmem/device.js';
import { SharedMemoryAllocator } from './allocator.js';
import type { VirtioDriverOps } from './device-api.js';
import type { FrontendHeader } from './frontend-header.js';
import { FrontendQueue } from './frontend-queues.js';
import { FrontendSession, GenerationConfigReader } from './frontend-session.js';
import {
  confirmFeatures,
  enableQueue,
  floorPow2,
  negotiate,
  readDeviceFeatures,
  selectQueue,
  validateHeader,
  writeDriverFeatures,
  writeStatus,
} from './frontend-setup.js';
import type { TransactionWriter } from './frontend-transactions.js';
import type { MemoryView } from './memory.js';
import { driverVectorFor, frontendVectorMode, type FrontendVectorMode } from './vectors.js';

const log = createDebug('vshm:virtio:fe');

export interface InitContext {
  device: IvshmemDevice;
  partner: number;
  header: FrontendHeader;
  memory: MemoryView;
  txn: TransactionWriter;
  ops: VirtioDriverOps;
  /** Generation number of the session being built. */
  generation: number;
  debugName: string;
  /** Throws the failure signalled meanwhile (peer events run between awaits), if any. */
  checkFailed(): void;
  /** A queue found a §6.4 violation or a callback threw. */
  broken(err: Error): void;
  /** A config read found the BE gone. */
  lost(err: Error): void;
  /** The queues, published before the first one is enabled so a failure can fail them. */
  onQueues(queues: FrontendQueue[], mode: FrontendVectorMode, byVector: (FrontendQueue | undefined)[]): void;
}

/** Run steps (3)–(5); resolves with the new (not yet live) session. */
export async function initialiseDevice(c: InitContext): Promise<FrontendSession> {
  const d = c.device;
  const h = c.header;
  const txn = c.txn;
  const size = validateHeader(h, d.layout.rwSize); // (3)
  const alloc = new SharedMemoryAllocator(d.layout, c.memory.u8, d.id, c.partner, size);
  d.oneShot = false; // (4)
  d.setState(PEER_STATE_READY);
  c.checkFailed();
  // (5)
  await writeStatus(txn, DeviceStatus.RESET);
  let status: number = DeviceStatus.ACKNOWLEDGE;
  await writeStatus(txn, status);
  status |= DeviceStatus.DRIVER;
  await writeStatus(txn, status);
  const offered = await readDeviceFeatures(txn, h);
  const features = negotiate(offered, c.ops.features);
  await writeDriverFeatures(txn, features);
  status = await confirmFeatures(txn, h, status);
  // The count may depend on config (console max_nr_ports, §7.2): readable from here on (§4.8).
  const config = new GenerationConfigReader(h, size, d, c.partner, c.lost);
  let count: number;
  try {
    count = c.ops.queueCount(features, config);
  } finally {
    config.close();
  }
  c.checkFailed();
  if (!Number.isInteger(count) || count < 0 || count > 0xffff) throw new TransportError('VSHM_ERR_QUEUE', '4.6', `driver asked for ${count} queues`);
  const mode = frontendVectorMode(count, d.vectors);
  log('%s: features 0x%s, %d queues, %d vectors: %s mode', c.debugName, features.toString(16), count, d.vectors, mode);
  const queues: FrontendQueue[] = [];
  const byVector: (FrontendQueue | undefined)[] = [];
  c.onQueues(queues, mode, byVector);
  const eventIdx = (features & VirtioFeatureMask.RING_EVENT_IDX) !== 0n;
  for (let i = 0; i < count; i++) {
    const w = await selectQueue(txn, h, i);
    if (w.maxSize === 0) throw new TransportError('VSHM_ERR_QUEUE', '4.6', `queue ${i} does not exist on the device`);
    if (w.enabled !== 0) throw new TransportError('VSHM_ERR_QUEUE', '4.6', `queue ${i} is already enabled after reset`);
    let deviceVector = w.deviceVector;
    if (deviceVector >= d.vectors) {
      log('%s: warning: queue %d device vector %d ≥ %d vectors, using 0', c.debugName, i, deviceVector, d.vectors);
      deviceVector = 0;
    }
    const want = c.ops.queueSize?.(i, w.maxSize) ?? w.maxSize;
    if (!Number.isInteger(want) || want < 1 || want > w.maxSize) {
      throw new TransportError('VSHM_ERR_QUEUE', '4.6', `queue ${i}: size ${want} not in 1…${w.maxSize}`);
    }
    const qsize = floorPow2(want);
    const driverVector = driverVectorFor(i, mode);
    const q = new FrontendQueue({
      index: i,
      size: qsize,
      memory: c.memory,
      allocator: alloc,
      eventIdx,
      indirect: (features & VirtioFeatureMask.RING_INDIRECT_DESC) !== 0n,
      deviceVector,
      driverVector,
      kick: (v) => d.doorbell(c.partner, v),
      broken: c.broken,
    });
    queues.push(q);
    if (mode === 'per-queue') byVector[driverVector] = q;
    log('%s: queue %d: size %d (offered %d), device vector %d, driver vector %d', c.debugName, i, qsize, w.maxSize, deviceVector, driverVector);
    await enableQueue(txn, { size: qsize, driverVector, desc: q.rings.desc, avail: q.rings.avail, used: q.rings.used });
  }
  d.interruptsEnabled = true;
  status |= DeviceStatus.DRIVER_OK;
  await writeStatus(txn, status);
  c.checkFailed();
  return new FrontendSession({
    features,
    queues,
    headerSize: size,
    generation: c.generation,
    header: h,
    txn,
    device: d,
    partner: c.partner,
    onLost: c.lost,
  });
}
