/**
 * The snapshot each transport side gives of its private state (`VirtioBackend.describe()`,
 * `VirtioFrontend.describe()`): what a status report or `vshm-inspect` needs and cannot read
 * from shared memory — the header shows only the selected queue's window (§4.2), and the ring
 * addresses of the other queues live in the two sides' private registers (§4.3).
 */

/** One queue as a transport side describes it (`describe()`): sizes, vectors, ring addresses (§4.6, §4.7). */
export interface QueueDescription {
  readonly index: number;
  /** Largest size the device offers (BE); the chosen size on the FE. */
  readonly maxSize: number;
  /** Negotiated size once enabled, else 0. */
  readonly size: number;
  readonly enabled: boolean;
  /** Enabled and not stopped by a violation (§6.3). */
  readonly running: boolean;
  readonly deviceVector: number;
  readonly driverVector: number;
  /** Ring addresses (window offsets, §4.7) as the FE gave them; 0 while unset. */
  readonly desc: bigint;
  readonly avail: bigint;
  readonly used: bigint;
}

/** What `VirtioBackend.describe()` / `VirtioFrontend.describe()` return: one side's private view of the link. */
export interface TransportDescription {
  readonly role: 'back-end' | 'front-end';
  readonly phase: string;
  readonly deviceId: number;
  /** Features the BE offers (BE), or read from the device (FE; null before the first session). */
  readonly offeredFeatures: bigint | null;
  /** Features accepted with FEATURES_OK, or null. */
  readonly negotiatedFeatures: bigint | null;
  /** This side's copy of `device_status` (§4.5). */
  readonly status: number;
  /** The header `size` (§4.2). */
  readonly headerSize: number;
  readonly queues: readonly QueueDescription[];
}
