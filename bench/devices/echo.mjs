// The bench loopback device: one virtqueue; a chain with a writable part is echoed (its readable
// bytes copied back into the writable part), a chain without one is a sink (its bytes are read
// into a private buffer, as a socket receiver copies them out of the kernel). Built on the public
// plug-in API (device-api.ts): VirtioDeviceOps on the back-end, VirtioDriverOps on the front-end.
import { VirtioFeatureMask } from 'virtio-spec-types';

/** An unassigned virtio device id (< 0x4000, §4.1): nobody else binds it. */
export const ECHO_DEVICE_ID = 0x3f00;
const EVENT_IDX = VirtioFeatureMask.RING_EVENT_IDX;

/**
 * Back-end ops. `bufferSize` bounds the private copy buffer (the largest chain the bench posts).
 * The device pops until empty, pushes each chain, and flushes once per wake-up (batched used-ring
 * update and at most one interrupt per batch, §4.9).
 */
export function echoDeviceOps({ queueSize = 256, bufferSize = 65536, eventIdx = true } = {}) {
  const scratch = new Uint8Array(bufferSize);
  let handle = null;
  return {
    deviceId: ECHO_DEVICE_ID,
    features: eventIdx ? EVENT_IDX : 0n,
    queueCount: () => 1,
    queueMaxSize: () => queueSize,
    configSize: 0,
    configFields: [],
    initConfig() {},
    activate(session) {
      const q = session.queues[0];
      handle = q;
      q.onAvailable = () => {
        let c;
        while ((c = q.pop()) !== null) {
          const n = c.read(scratch);
          if (c.writableLength > 0) q.push(c, c.write(n === scratch.length ? scratch : scratch.subarray(0, n)));
          else q.push(c, 0);
        }
        q.flush();
      };
    },
    deactivate() {
      if (handle) handle.onAvailable = null;
      handle = null;
    },
  };
}

/** Front-end ops: resolves `ready` with the session on every probe. */
export function echoDriverOps({ queueSize = 256, eventIdx = true } = {}) {
  let onProbe = null;
  const ready = new Promise((resolve) => (onProbe = resolve));
  return {
    ready,
    ops: {
      deviceId: ECHO_DEVICE_ID,
      features: eventIdx ? EVENT_IDX : 0n,
      queueCount: () => 1,
      queueSize: (_i, max) => Math.min(max, queueSize),
      probe(session) {
        onProbe(session);
      },
      remove(err) {
        process.stderr.write(`bench: echo driver removed: ${err.message}\n`);
      },
    },
  };
}
