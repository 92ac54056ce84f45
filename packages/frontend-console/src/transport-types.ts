/**
 * TODO(transport): temporary structural copy of the driver half of
 * packages/transport/src/virtio/device-api.ts, used until '@vshm/transport' exports these
 * types from its index. Delete this file and import from '@vshm/transport' then.
 */
export type ConfigWidth = 1 | 2 | 4;

export interface DriverQueueHandle<T = unknown> {
  readonly index: number;
  readonly size: number;
  add(out: Uint8Array | null, inLen: number, token: T): boolean;
  kick(): void;
  onUsed: ((token: T, data: Uint8Array) => void) | null;
  onFailed: ((token: T, err: Error) => void) | null;
  readonly inFlight: number;
}

export interface DriverSession {
  readonly features: bigint;
  readonly queues: readonly DriverQueueHandle[];
  readConfig(offset: number, width: ConfigWidth): number;
  writeConfig(offset: number, width: ConfigWidth, value: number): Promise<void>;
}

export interface VirtioDriverOps {
  readonly deviceId: number;
  readonly features: bigint;
  queueCount(features: bigint): number;
  queueSize?(index: number, offeredMax: number): number;
  probe(session: DriverSession): void;
  remove(reason: Error): void;
  configChanged?(session: DriverSession): void;
}
