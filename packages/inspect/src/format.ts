/**
 * The text form of a snapshot: a few aligned lines per part, for a terminal. Scripts use
 * `--json`, which prints the Snapshot object itself.
 */
import type { QueueSnapshot, Snapshot } from './snapshot.js';

const list = (names: readonly string[]): string => (names.length === 0 ? '-' : names.join(' '));

function queueLines(q: QueueSnapshot): string[] {
  const head = `  queue ${q.index}: size ${q.size} (max ${q.maxSize}), ${q.enabled ? (q.running ? 'enabled' : 'stopped') : 'disabled'}, vectors device ${q.deviceVector} driver ${q.driverVector}`;
  const areas = [
    `    desc  ${q.desc.addr.padEnd(10)} ${String(q.desc.bytes).padStart(6)} B  ${q.desc.section}`,
    `    avail ${q.avail.addr.padEnd(10)} ${String(q.avail.bytes).padStart(6)} B  ${q.avail.section}`,
    `    used  ${q.used.addr.padEnd(10)} ${String(q.used.bytes).padStart(6)} B  ${q.used.section}`,
  ];
  const l = q.live;
  const live =
    l === null
      ? [`    (${q.note ?? 'no live fields'})`]
      : [
          `    avail.idx ${l.availIdx}  used.idx ${l.usedIdx}  in flight ${l.inFlight}`,
          `    avail.flags 0x${l.availFlags.toString(16)}  used.flags 0x${l.usedFlags.toString(16)}  used_event ${l.usedEvent}  avail_event ${l.availEvent}`,
        ];
  return [head, ...areas, ...live];
}

/** Render a snapshot as text lines (no trailing newline). */
export function formatSnapshot(s: Snapshot): string {
  const out: string[] = [];
  const t = s.target;
  out.push(`vshm-inspect ${t.pid !== undefined ? `pid ${t.pid}` : `shm ${t.shm}`} (${t.openedVia}, inode ${t.ino}) at ${s.time}`);
  const L = s.layout;
  out.push(`memory: ${L.size} bytes, ${L.maxPeers} peers, R/W ${L.rwSize}, output sections ${L.outputSectionSize} (layout from ${L.source})`);
  out.push(`state table: ${s.stateTable.map((e) => `peer ${e.peer} ${e.meaning === 'other' ? e.value : e.meaning}`).join(', ')}`);
  for (const d of s.sides) {
    out.push(`${d.role} pid ${d.pid} (peer ${d.peer}, device ${d.deviceId}): ${d.phase}, status ${list(d.status.names)}`);
    if (d.offeredFeatures !== null) out.push(`  offered    ${d.offeredFeatures.value} ${list(d.offeredFeatures.names)}`);
    if (d.negotiatedFeatures !== null) out.push(`  negotiated ${d.negotiatedFeatures.value} ${list(d.negotiatedFeatures.names)}`);
  }
  const h = s.header;
  if (h !== null) {
    out.push(`header: revision ${h.revision}, size ${h.size}, write_transaction ${h.writeTransaction}, config_generation ${h.configGeneration}`);
    out.push(`  device_status ${h.deviceStatus.value} ${list(h.deviceStatus.names)}; config_event ${h.configEvent}, queue_event ${h.queueEvent}`);
    out.push(`  device_features[${h.deviceFeaturesSel}] ${h.deviceFeatures.word} ${list(h.deviceFeatures.names)}`);
    out.push(`  driver_features[${h.driverFeaturesSel}] ${h.driverFeatures.word} ${list(h.driverFeatures.names)}`);
    const w = h.queueWindow;
    out.push(`  queue_sel ${h.queueSel}: size ${w.size}, vectors ${w.deviceVector}/${w.driverVector}, enable ${w.enable}, desc ${w.desc} driver ${w.driver} device ${w.device}`);
    out.push(`  config ${h.config || '-'}`);
  }
  if (s.queues.length > 0) out.push('queues:');
  for (const q of s.queues) out.push(...queueLines(q));
  for (const n of s.notes) out.push(`note: ${n}`);
  return out.join('\n');
}
