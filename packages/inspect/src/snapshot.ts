/**
 * Decoding a read-only mapping into a snapshot: the state table (§2), the virtio header (§4.2)
 * and every queue's live ring fields (§6), with the static facts (sizes, vectors, ring
 * addresses) from the status files. Every offset comes from the transport's own wire-format
 * files through `@vshm/transport/inspect`; only loads are issued, so the session cannot notice.
 */
import { BlkFeature, ConsoleFeature, DeviceStatus, VirtioDeviceId, VirtioFeature } from 'virtio-spec-types';
import {
  HDR_CONFIG,
  HDR_CONFIG_EVENT,
  HDR_CONFIG_GENERATION,
  HDR_DEVICE_FEATURES,
  HDR_DEVICE_FEATURES_SEL,
  HDR_DEVICE_STATUS,
  HDR_DRIVER_FEATURES,
  HDR_DRIVER_FEATURES_SEL,
  HDR_QUEUE_DESC,
  HDR_QUEUE_DEVICE,
  HDR_QUEUE_DEVICE_VECTOR,
  HDR_QUEUE_DRIVER,
  HDR_QUEUE_DRIVER_VECTOR,
  HDR_QUEUE_ENABLE,
  HDR_QUEUE_EVENT,
  HDR_QUEUE_SEL,
  HDR_QUEUE_SIZE,
  HDR_REVISION,
  HDR_SIZE,
  HDR_WRITE_TRANSACTION,
  HeaderView,
  PEER_STATE_READY,
  PEER_STATE_RESET,
  STATE_TABLE_SIZE,
  SplitRingLayout,
  roleOfProtocol,
  type SharedMemoryLayout,
  type StatusFile,
  type StatusQueue,
} from '@vshm/transport/inspect';
import type { Attachment } from './attach.js';

/** Names of the device-type feature bits (0–23) per device id. */
const DEVICE_FEATURES: Readonly<Record<number, Readonly<Record<string, number>>>> = {
  [VirtioDeviceId.CONSOLE]: ConsoleFeature,
  [VirtioDeviceId.BLOCK]: BlkFeature,
};

/** Names of the set bits of a 64-bit feature set (`bit N` for unnamed ones). */
export function featureNames(features: bigint, deviceId?: number): string[] {
  const byBit = new Map<number, string>();
  for (const [name, bit] of Object.entries(VirtioFeature)) byBit.set(bit, name);
  for (const [name, bit] of Object.entries(DEVICE_FEATURES[deviceId ?? -1] ?? {})) byBit.set(bit, name);
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) if ((features >> BigInt(bit)) & 1n) out.push(byBit.get(bit) ?? `bit ${bit}`);
  return out;
}

/** Names of the set `device_status` bits (§4.5); RESET for 0. */
export function statusNames(status: number): string[] {
  if (status === 0) return ['RESET'];
  const out: string[] = [];
  let rest = status;
  for (const [name, bit] of Object.entries(DeviceStatus)) {
    if (bit !== 0 && (status & bit) === bit) {
      out.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) out.push(`0x${rest.toString(16)}`);
  return out;
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

/** Where a window range lies (§2, §4.7). */
export function sectionOf(layout: SharedMemoryLayout, addr: number, length: number): string {
  const end = addr + length;
  if (addr < 0 || end > layout.windowSize) return 'outside the memory';
  if (end <= layout.rwSize) return 'R/W section';
  const out = layout.outputSectionSize;
  if (out > 0 && addr >= layout.rwSize) {
    const i = Math.floor((addr - layout.rwSize) / out);
    if (end <= layout.rwSize + (i + 1) * out) return `output section ${i}`;
  }
  return 'across sections';
}

/** One state-table entry (§2). */
export interface PeerEntry {
  peer: number;
  value: number;
  meaning: 'RESET' | 'READY' | 'other';
}

/** The §4.2 header, decoded. */
export interface HeaderSnapshot {
  revision: number;
  size: number;
  writeTransaction: string;
  deviceFeaturesSel: number;
  /** The 32-bit window the header shows, and the names of its bits at their 64-bit positions. */
  deviceFeatures: { word: string; names: string[] };
  driverFeaturesSel: number;
  driverFeatures: { word: string; names: string[] };
  deviceStatus: { value: number; names: string[] };
  configGeneration: number;
  configEvent: number;
  queueEvent: number;
  /** Config bytes [0x4C, size) as hex: none when `size` is out of range (§4.2), at most 4096 (a note says so). */
  config: string;
  queueSel: number;
  /** The window 0x20–0x3F: the selected queue only. */
  queueWindow: { size: number; deviceVector: number; driverVector: number; enable: number; desc: string; driver: string; device: string };
}

/** A ring address with the section it lies in. */
export interface RingArea {
  addr: string;
  bytes: number;
  section: string;
}

/** One queue: static facts from a status file, live fields from the memory. */
export interface QueueSnapshot {
  index: number;
  size: number;
  maxSize: number;
  enabled: boolean;
  running: boolean;
  deviceVector: number;
  driverVector: number;
  desc: RingArea;
  avail: RingArea;
  used: RingArea;
  /** Live ring fields; null when the queue is not enabled or its rings do not fit the memory. */
  live: {
    availFlags: number;
    availIdx: number;
    usedFlags: number;
    usedIdx: number;
    /** avail.idx − used.idx (mod 2^16): buffers the device has not returned yet. */
    inFlight: number;
    /** `used_event` (in the avail ring) and `avail_event` (in the used ring); meaningful with RING_EVENT_IDX. */
    usedEvent: number;
    availEvent: number;
  } | null;
  /** Why `live` is null, if it is. */
  note?: string;
}

/** The side of the link a status file describes. */
export interface SideSnapshot {
  pid: number;
  role: 'back-end' | 'front-end';
  peer: number;
  phase: string;
  deviceId: number;
  updated: string;
  offeredFeatures: { value: string; names: string[] } | null;
  negotiatedFeatures: { value: string; names: string[] } | null;
  status: { value: number; names: string[] };
}

/** Everything vshm-inspect shows, in one JSON-friendly object. */
export interface Snapshot {
  time: string;
  target: { pid?: number; shm?: string; openedVia: string; ino: number };
  layout: { size: number; maxPeers: number; outputSectionSize: number; rwSize: number; source: string };
  stateTable: PeerEntry[];
  /** Null when the R/W section cannot hold a header or `revision` is 0 (no back-end has initialised it). */
  header: HeaderSnapshot | null;
  /** The processes on this memory that publish a status file (back-end first). */
  sides: SideSnapshot[];
  /** Queues as the back-end (else the front-end) describes them; empty without a status file. */
  queues: QueueSnapshot[];
  /** Remarks for the reader (missing status file, assumed layout, …). */
  notes: string[];
}

function featureField(v: string | null, deviceId: number): { value: string; names: string[] } | null {
  return v === null ? null : { value: v, names: featureNames(BigInt(v), deviceId) };
}

/** Config bytes shown at most: far more than any device's config (console 12, block 60). */
const CONFIG_SHOWN_MAX = 4096;

function readHeader(window: ArrayBuffer, layout: SharedMemoryLayout, deviceId: number | undefined, notes: string[]): HeaderSnapshot | null {
  if (layout.rwSize < HDR_CONFIG) return null;
  const h = new HeaderView(window, HDR_CONFIG);
  const revision = h.load32(HDR_REVISION);
  if (revision === 0) return null;
  const size = h.load32(HDR_SIZE);
  const dsel = h.load32(HDR_DEVICE_FEATURES_SEL);
  const dword = h.load32(HDR_DEVICE_FEATURES);
  const vsel = h.load32(HDR_DRIVER_FEATURES_SEL);
  const vword = h.load32(HDR_DRIVER_FEATURES);
  const windowNames = (sel: number, word: number): string[] => (sel > 1 ? [] : featureNames(BigInt(word) << BigInt(32 * sel), deviceId));
  const status = h.load32(HDR_DEVICE_STATUS);
  // Config bytes: never past `size` (§4.2) nor past the R/W section, and a `size` the FE would
  // reject (below 0x4C or past the R/W section) shows none: a hostile `size` must not turn the
  // whole R/W section into hex (hundreds of MB, past the longest string Node can build).
  let configEnd = HDR_CONFIG;
  if (size < HDR_CONFIG) notes.push(`header size ${size} is below 0x4c (the FE rejects it, §4.2): config not shown`);
  else if (size > layout.rwSize) notes.push(`header size ${size} is larger than the R/W section of ${layout.rwSize} bytes (the FE rejects it, §4.2): config not shown`);
  else configEnd = Math.min(size, HDR_CONFIG + CONFIG_SHOWN_MAX);
  if (configEnd < size && size <= layout.rwSize) notes.push(`config: only the first ${CONFIG_SHOWN_MAX} of ${size - HDR_CONFIG} bytes shown`);
  const config = Buffer.from(window, HDR_CONFIG, configEnd - HDR_CONFIG).toString('hex');
  return {
    revision,
    size,
    writeTransaction: hex(h.load32(HDR_WRITE_TRANSACTION)),
    deviceFeaturesSel: dsel,
    deviceFeatures: { word: hex(dword), names: windowNames(dsel, dword) },
    driverFeaturesSel: vsel,
    driverFeatures: { word: hex(vword), names: windowNames(vsel, vword) },
    deviceStatus: { value: status, names: statusNames(status) },
    configGeneration: h.load32(HDR_CONFIG_GENERATION),
    configEvent: h.load8(HDR_CONFIG_EVENT),
    queueEvent: h.load8(HDR_QUEUE_EVENT),
    config,
    queueSel: h.load32(HDR_QUEUE_SEL),
    queueWindow: {
      size: h.load16(HDR_QUEUE_SIZE),
      deviceVector: h.load16(HDR_QUEUE_DEVICE_VECTOR),
      driverVector: h.load16(HDR_QUEUE_DRIVER_VECTOR),
      enable: h.load16(HDR_QUEUE_ENABLE),
      desc: hex(h.load64(HDR_QUEUE_DESC)),
      driver: hex(h.load64(HDR_QUEUE_DRIVER)),
      device: hex(h.load64(HDR_QUEUE_DEVICE)),
    },
  };
}

/** Ring addresses a window offset can be (§4.7): below 2^53, else -1 (fails every check). */
function toOffset(v: string): number {
  const b = BigInt(v);
  return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : -1;
}

function readQueue(window: ArrayBuffer, layout: SharedMemoryLayout, q: StatusQueue): QueueSnapshot {
  const size = q.size > 0 ? q.size : q.maxSize;
  const ring = new SplitRingLayout({ size, desc: toOffset(q.desc), avail: toOffset(q.avail), used: toOffset(q.used) });
  const area = (addr: string, at: number, bytes: number): RingArea => ({ addr, bytes, section: sectionOf(layout, at, bytes) });
  const snap: QueueSnapshot = {
    index: q.index,
    size: q.size,
    maxSize: q.maxSize,
    enabled: q.enabled,
    running: q.running,
    deviceVector: q.deviceVector,
    driverVector: q.driverVector,
    desc: area(q.desc, ring.desc, ring.descBytes),
    avail: area(q.avail, ring.avail, ring.availBytes),
    used: area(q.used, ring.used, ring.usedBytes),
    live: null,
  };
  if (!q.enabled || q.size === 0) {
    snap.note = 'not enabled';
    return snap;
  }
  // Only read rings that lie inside the memory with the §6.1 alignment: the status file is a
  // claim, not a proof.
  const fits = (at: number, bytes: number, align: number): boolean => at >= 0 && at % align === 0 && at + bytes <= layout.windowSize;
  if (!fits(ring.avail, ring.availBytes, 2) || !fits(ring.used, ring.usedBytes, 4)) {
    snap.note = 'rings outside the memory or misaligned';
    return snap;
  }
  // The window's length may be odd (S not page-aligned, a peer with reduced protection): a view
  // over the whole of it would throw; every ring field lies in the even part checked above.
  const u16 = new Uint16Array(window, 0, window.byteLength >>> 1);
  const load = (off: number): number => Atomics.load(u16, off >>> 1);
  // used.idx before avail.idx: avail.idx only grows past a used.idx read earlier, so the
  // difference never comes out negative from a torn snapshot.
  const usedIdx = load(ring.usedIdxOff);
  const availIdx = load(ring.availIdxOff);
  snap.live = {
    availFlags: load(ring.availFlagsOff),
    availIdx,
    usedFlags: load(ring.usedFlagsOff),
    usedIdx,
    inFlight: (availIdx - usedIdx) & 0xffff,
    usedEvent: load(ring.usedEventOff),
    availEvent: load(ring.availEventOff),
  };
  return snap;
}

function side(f: StatusFile): SideSnapshot {
  const t = f.transport;
  return {
    pid: f.pid,
    role: t.role,
    peer: f.peer.id,
    phase: t.phase,
    deviceId: t.deviceId,
    updated: f.updated,
    offeredFeatures: featureField(t.offeredFeatures, t.deviceId),
    negotiatedFeatures: featureField(t.negotiatedFeatures, t.deviceId),
    status: { value: t.status, names: statusNames(t.status) },
  };
}

/** Take one snapshot of an attachment: loads only. */
export function takeSnapshot(att: Attachment): Snapshot {
  const layout = att.layout;
  const notes: string[] = [];
  const table = new Uint32Array(att.stateTable, 0, STATE_TABLE_SIZE / 4);
  const stateTable: PeerEntry[] = [];
  for (let i = 0; i < layout.maxPeers; i++) {
    const value = Atomics.load(table, i);
    stateTable.push({ peer: i, value, meaning: value === PEER_STATE_RESET ? 'RESET' : value === PEER_STATE_READY ? 'READY' : 'other' });
  }
  const window = att.window;
  const be = att.status.find((f) => f.transport.role === 'back-end');
  const describer = be ?? att.status[0];
  const deviceId = describer?.transport.deviceId ?? (describer !== undefined ? roleOfProtocol(describer.peer.protocol) : undefined);
  const header = readHeader(window, layout, typeof deviceId === 'number' ? deviceId : undefined, notes);
  if (header === null) notes.push('no virtio header: the R/W section is too small or no back-end has initialised it (revision 0)');
  if (att.layoutSource === 'defaults') notes.push('layout assumed (2 peers, no output sections): no status file, pass -n/-o if that is wrong');
  if (describer === undefined) notes.push('no status file for this memory: queue addresses unknown (the daemons publish one; see docs/decisions.md)');
  const queues = describer === undefined ? [] : describer.transport.queues.map((q) => readQueue(window, layout, q));
  return {
    time: new Date().toISOString(),
    target: { pid: att.pid, shm: att.shm, openedVia: att.openedVia, ino: att.ino },
    layout: { size: layout.size, maxPeers: layout.maxPeers, outputSectionSize: layout.outputSectionSize, rwSize: layout.rwSize, source: att.layoutSource },
    stateTable,
    header,
    sides: att.status.map(side),
    queues,
    notes,
  };
}
