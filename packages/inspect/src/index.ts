/**
 * `@vshm/inspect`: a read-only look inside a live vshm session — the library behind the
 * `vshm-inspect` command. Attach to a process ({@link attachPid}) or a POSIX shared-memory
 * object ({@link attachShm}), take {@link takeSnapshot} as often as you like (loads only; the
 * session never notices), render it with {@link formatSnapshot} or as JSON, and `close()`.
 */
export { attachPid, attachShm, findStatusFiles, parseMaps, InspectError, type Attachment, type LayoutOverride, type LayoutSource, type SharedMapping } from './attach.js';
export {
  takeSnapshot,
  featureNames,
  statusNames,
  sectionOf,
  type Snapshot,
  type HeaderSnapshot,
  type QueueSnapshot,
  type RingArea,
  type PeerEntry,
  type SideSnapshot,
} from './snapshot.js';
export { formatSnapshot } from './format.js';
