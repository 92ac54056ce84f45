// The bench loopback device: one virtqueue; a chain with a writable part is echoed (its readable
// bytes copied back into the writable part — straight from the chain's readable view when the
// request is one segment, through a private buffer otherwise), a chain without one is a sink (its bytes are copied
// into a private buffer from the chain's zero-copy views, as a socket receiver copies them out of
// the kernel). Built on the public
// plug-in API (device-api.ts): VirtioDeviceOps on the back-end, VirtioDriverOps on the front-end.
import { VirtioFeatureMask } from 'virtio-spec-types';

/** An unassigned virtio device id (< 0x4000, §4.1): nobody else binds it. */
export const ECHO_DEVICE_ID = 0x3f00;
const EVENT_IDX = VirtioFeatureMask.RING_EVENT_IDX;

/**
 * Back-end ops. `bufferSize` bounds the private copy buffer (the largest chain the bench posts).
 * `consume`: 'copy' (a sink copies each chain out, as a socket reader would) or 'inplace' (a
 * sink reads the chain where it lies: bulk64k_zc).
 * The device pops until empty, pushes each chain, and flushes once per wake-up (batched used-ring
 * update and at most one interrupt per batch, §4.9).
 */
export function echoDeviceOps({ queueSize = 256, bufferSize = 65536, eventIdx = true, consume = 'copy' } = {}) {
  const scratch = new Uint8Array(bufferSize);
  let handle = null;
  // The reply view of the last length (64 B every time in rtt64): no subarray per echo.
  let replyView = scratch;
  const reply = (n) => (replyView.length === n ? replyView : (replyView = scratch.subarray(0, n)));
  let expect = 0;
  // consume 'inplace' (bulk64k_zc): read the producer's sequence number where it lies and check
  // the order — the device works on the bytes in shared memory, nothing is copied.
  const inPlace = (segs) => {
    const s = segs[0];
    const seq = (s[0] | (s[1] << 8) | (s[2] << 16) | (s[3] << 24)) >>> 0;
    expect = (expect + 1) >>> 0;
    if (seq !== expect) throw new Error(`zero-copy sink: buffer ${seq} where ${expect} was due`);
  };
  const copy = (segs) => {
    let off = 0;
    for (const seg of segs) {
      const n = Math.min(seg.length, scratch.length - off);
      scratch.set(n === seg.length ? seg : seg.subarray(0, n), off);
      off += n;
    }
  };
  const sink = consume === 'inplace' ? inPlace : copy;
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
          if (c.writableLength > 0) {
            const segs = c.readableSegments();
            if (segs.length === 1) {
              // One request segment: echoed straight from where it lies (the device reads its
              // input in place, zero-copy views) — one copy instead of two through `scratch`.
              q.push(c, c.write(segs[0]));
            } else {
              const n = c.read(scratch);
              q.push(c, c.write(n === scratch.length ? scratch : reply(n)));
            }
          } else {
            // Sink: still one copy out of shared memory, like a socket reader's (the bytes have
            // to end up in the receiver's memory), but straight from the zero-copy views.
            sink(c.readableSegments());
            q.push(c, 0);
          }
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
