/**
 * TODO(transport): temporary structural copy of the device half of
 * packages/transport/src/virtio/device-api.ts, used until '@vshm/transport' exports these types
 * from its index. Delete this file and import from '@vshm/transport' then. Structural typing
 * keeps it interchangeable with the real interfaces.
 */
export type ConfigWidth = 1 | 2 | 4;

export interface ConfigField {
  readonly name: string;
  readonly offset: number;
  readonly width: ConfigWidth;
  readonly driverWritable?: boolean;
}

export interface ConfigSpace {
  readonly size: number;
  read(offset: number, width: ConfigWidth): number;
  write(offset: number, width: ConfigWidth, value: number): void;
}

export type SessionEndReason = 'driver-reset' | 'driver-gone' | 'needs-reset' | 'shutdown';

export interface DeviceChain {
  readonly head: number;
  readonly readableLength: number;
  readonly writableLength: number;
  read(dst: Uint8Array, offset?: number): number;
  write(src: Uint8Array, offset?: number): number;
}

export interface DeviceQueueHandle {
  readonly index: number;
  readonly size: number;
  onAvailable: (() => void) | null;
  pop(): DeviceChain | null;
  push(chain: DeviceChain, written: number): void;
  flush(): void;
}

export interface DeviceSession {
  readonly features: bigint;
  readonly queues: readonly (DeviceQueueHandle | undefined)[];
  updateConfig(mutate: (config: ConfigSpace) => void): void;
  notifyConfig(): void;
}

export interface VirtioDeviceOps {
  readonly deviceId: number;
  readonly features: bigint;
  queueCount(features: bigint): number;
  queueMaxSize(index: number): number;
  readonly configSize: number;
  readonly configFields: readonly ConfigField[];
  initConfig(config: ConfigSpace): void;
  acceptFeatures?(features: bigint): boolean;
  configWritten?(field: ConfigField, value: number): void;
  activate(session: DeviceSession): void;
  deactivate(reason: SessionEndReason): void;
}
