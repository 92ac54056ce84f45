/**
 * Every constant of this package pinned against OASIS VIRTIO 1.2 (and, where the spec names a C
 * structure, the Linux uapi headers that mirror it: virtio_ids.h, virtio_config.h, virtio_ring.h,
 * virtio_blk.h, virtio_console.h). The numbers below were checked against those texts by hand;
 * an edit of a constant in src/ that drifts from the spec fails here, whatever the other tests do.
 */
import { expect } from 'chai';
import * as t from '../src/index.js';

describe('virtio-spec-types against VIRTIO 1.2', () => {
  it('device ids (VIRTIO 1.2 §5)', () => {
    expect(t.VirtioDeviceId).to.deep.equal({
      NET: 1, BLOCK: 2, CONSOLE: 3, RNG: 4, BALLOON: 5, SCSI: 8, NINEP: 9, GPU: 16, INPUT: 18, VSOCK: 19,
      CRYPTO: 20, FS: 26, PMEM: 27, SOUND: 25,
    });
  });

  it('device status bits (VIRTIO 1.2 §2.1)', () => {
    expect(t.DeviceStatus).to.deep.equal({
      RESET: 0, ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, DEVICE_NEEDS_RESET: 64, FAILED: 128,
    });
  });

  it('reserved (transport) feature bits (VIRTIO 1.2 §6; ADMIN_VQ from the later revision and Linux)', () => {
    expect(t.VirtioFeature).to.deep.equal({
      RING_INDIRECT_DESC: 28, RING_EVENT_IDX: 29, VERSION_1: 32, ACCESS_PLATFORM: 33, RING_PACKED: 34, IN_ORDER: 35,
      ORDER_PLATFORM: 36, SR_IOV: 37, NOTIFICATION_DATA: 38, NOTIF_CONFIG_DATA: 39, RING_RESET: 40, ADMIN_VQ: 41,
    });
    for (const [name, mask] of Object.entries(t.VirtioFeatureMask)) {
      expect(mask, name).to.equal(1n << BigInt((t.VirtioFeature as Record<string, number>)[name]!));
    }
    expect(t.DEVICE_FEATURES_MASK).to.equal(0xffffffn); // device bits 0–23
    expect([t.TRANSPORT_FEATURE_BITS_START, t.DEVICE_FEATURE_BITS_END]).to.deep.equal([24, 24]);
  });

  it('split virtqueue layout: descriptor, available and used ring (VIRTIO 1.2 §2.7.5, §2.7.6, §2.7.8)', () => {
    expect([t.VIRTQ_DESC_F_NEXT, t.VIRTQ_DESC_F_WRITE, t.VIRTQ_DESC_F_INDIRECT]).to.deep.equal([1, 2, 4]);
    expect([t.VIRTQ_AVAIL_F_NO_INTERRUPT, t.VIRTQ_USED_F_NO_NOTIFY]).to.deep.equal([1, 1]);
    // struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }
    expect([t.VIRTQ_DESC_SIZE, t.VIRTQ_DESC_ADDR, t.VIRTQ_DESC_LEN, t.VIRTQ_DESC_FLAGS, t.VIRTQ_DESC_NEXT]).to.deep.equal([16, 0, 8, 12, 14]);
    // struct virtq_avail { le16 flags; le16 idx; le16 ring[n]; le16 used_event; }
    expect([t.VIRTQ_AVAIL_FLAGS, t.VIRTQ_AVAIL_IDX, t.VIRTQ_AVAIL_RING, t.VIRTQ_AVAIL_ELEM_SIZE]).to.deep.equal([0, 2, 4, 2]);
    // struct virtq_used { le16 flags; le16 idx; struct virtq_used_elem { le32 id; le32 len; } ring[n]; le16 avail_event; }
    expect([t.VIRTQ_USED_FLAGS, t.VIRTQ_USED_IDX, t.VIRTQ_USED_RING, t.VIRTQ_USED_ELEM_SIZE]).to.deep.equal([0, 2, 4, 8]);
    expect([t.VIRTQ_USED_ELEM_ID, t.VIRTQ_USED_ELEM_LEN]).to.deep.equal([0, 4]);
    for (const n of [1, 2, 64, 256, 32768]) {
      expect([t.descTableSize(n), t.availRingSize(n), t.usedRingSize(n)], `n = ${n}`).to.deep.equal([16 * n, 6 + 2 * n, 6 + 8 * n]);
      expect([t.usedEventOffset(n), t.availEventOffset(n)], `n = ${n}`).to.deep.equal([4 + 2 * n, 4 + 8 * n]);
    }
  });

  it('split virtqueue alignments and queue sizes (VIRTIO 1.2 §2.7)', () => {
    expect([t.VIRTQ_DESC_ALIGN, t.VIRTQ_AVAIL_ALIGN, t.VIRTQ_USED_ALIGN]).to.deep.equal([16, 2, 4]);
    expect(t.VIRTQ_MAX_SIZE).to.equal(32768);
    const valid = Array.from({ length: 16 }, (_, k) => 2 ** k);
    for (let n = 0; n <= 65536; n++) expect(t.isValidQueueSize(n), `n = ${n}`).to.equal(valid.includes(n));
  });

  it('the event-index rule is the spec formula over u16 arithmetic (VIRTIO 1.2 §2.7.10)', () => {
    // (u16)(new - event - 1) < (u16)(new - old), checked over every event for a few windows.
    for (const [oldIdx, newIdx] of [[0, 1], [0xfff0, 0x10], [100, 100], [65535, 0], [7, 7 + 32768]]) {
      for (let e = 0; e < 65536; e += 37) {
        const inWindow = ((e - oldIdx) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
        expect(t.vringNeedEvent(e, newIdx & 0xffff, oldIdx), `event ${e} old ${oldIdx} new ${newIdx}`).to.equal(inWindow);
      }
    }
  });

  it('virtio-blk feature bits, request types and status values (VIRTIO 1.2 §5.2.3, §5.2.6)', () => {
    expect(t.BlkFeature).to.deep.equal({
      SIZE_MAX: 1, SEG_MAX: 2, GEOMETRY: 4, RO: 5, BLK_SIZE: 6, FLUSH: 9, TOPOLOGY: 10, CONFIG_WCE: 11, MQ: 12,
      DISCARD: 13, WRITE_ZEROES: 14,
    });
    expect(t.BlkRequestType).to.deep.equal({ IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8, DISCARD: 11, WRITE_ZEROES: 13 });
    expect(t.BlkStatus).to.deep.equal({ OK: 0, IOERR: 1, UNSUPP: 2 });
    // struct virtio_blk_req header: le32 type; le32 reserved; le64 sector. GET_ID: 20 bytes.
    expect([t.BLK_REQ_HEADER_SIZE, t.BLK_REQ_TYPE, t.BLK_REQ_SECTOR, t.BLK_ID_BYTES, t.BLK_SECTOR_SIZE]).to.deep.equal([16, 0, 8, 20, 512]);
    // struct virtio_blk_discard_write_zeroes: le64 sector; le32 num_sectors; le32 flags (bit 0 unmap).
    expect([t.BLK_DWZ_SEGMENT_SIZE, t.BLK_DWZ_SECTOR, t.BLK_DWZ_NUM_SECTORS, t.BLK_DWZ_FLAGS, t.BLK_DWZ_FLAG_UNMAP]).to.deep.equal([16, 0, 8, 12, 1]);
  });

  it('virtio-blk configuration layout (VIRTIO 1.2 §5.2.4)', () => {
    expect(t.BlkConfig).to.deep.equal({
      CAPACITY: 0, SIZE_MAX: 8, SEG_MAX: 12, GEOMETRY_CYLINDERS: 16, GEOMETRY_HEADS: 18, GEOMETRY_SECTORS: 19,
      BLK_SIZE: 20, PHYSICAL_BLOCK_EXP: 24, ALIGNMENT_OFFSET: 25, MIN_IO_SIZE: 26, OPT_IO_SIZE: 28, WRITEBACK: 32,
      NUM_QUEUES: 34, MAX_DISCARD_SECTORS: 36, MAX_DISCARD_SEG: 40, DISCARD_SECTOR_ALIGNMENT: 44,
      MAX_WRITE_ZEROES_SECTORS: 48, MAX_WRITE_ZEROES_SEG: 52, WRITE_ZEROES_MAY_UNMAP: 56,
    });
    expect(t.BLK_CONFIG_SIZE).to.equal(60); // write_zeroes_may_unmap u8 + 3 unused bytes
  });

  it('virtio-console features, configuration and queues (VIRTIO 1.2 §5.3.2, §5.3.3, §5.3.4)', () => {
    expect(t.ConsoleFeature).to.deep.equal({ SIZE: 0, MULTIPORT: 1, EMERG_WRITE: 2 });
    // struct virtio_console_config { le16 cols; le16 rows; le32 max_nr_ports; le32 emerg_wr; }
    expect([t.CONSOLE_CONFIG_COLS, t.CONSOLE_CONFIG_ROWS, t.CONSOLE_CONFIG_MAX_NR_PORTS, t.CONSOLE_CONFIG_EMERG_WR, t.CONSOLE_CONFIG_SIZE])
      .to.deep.equal([0, 2, 4, 8, 12]);
    expect([t.CONSOLE_RECEIVEQ, t.CONSOLE_TRANSMITQ, t.CONSOLE_CONTROL_RECEIVEQ, t.CONSOLE_CONTROL_TRANSMITQ]).to.deep.equal([0, 1, 2, 3]);
    for (let port = 1; port < 32; port++) {
      expect([t.consoleReceiveQueue(port), t.consoleTransmitQueue(port)], `port ${port}`).to.deep.equal([2 * port + 2, 2 * port + 3]);
    }
    // With MULTIPORT the control queues always exist; from two ports on, the last port's transmitq
    // is the last queue.
    expect(t.consoleQueueCount(true, 1)).to.equal(4);
    for (const ports of [2, 3, 31]) expect(t.consoleQueueCount(true, ports)).to.equal(t.consoleTransmitQueue(ports - 1) + 1);
    expect(t.consoleQueueCount(false, 1)).to.equal(2);
  });

  it('virtio-console control messages (VIRTIO 1.2 §5.3.6.2)', () => {
    expect(t.ConsoleControlEvent).to.deep.equal({
      DEVICE_READY: 0, DEVICE_ADD: 1, DEVICE_REMOVE: 2, PORT_READY: 3, CONSOLE_PORT: 4, RESIZE: 5, PORT_OPEN: 6, PORT_NAME: 7,
    });
    // struct virtio_console_control { le32 id; le16 event; le16 value; } then, for RESIZE, le16 cols; le16 rows.
    expect([t.CONSOLE_CONTROL_ID, t.CONSOLE_CONTROL_EVENT, t.CONSOLE_CONTROL_VALUE, t.CONSOLE_CONTROL_SIZE]).to.deep.equal([0, 4, 6, 8]);
    expect([t.CONSOLE_RESIZE_COLS, t.CONSOLE_RESIZE_ROWS, t.CONSOLE_RESIZE_SIZE]).to.deep.equal([8, 10, 12]);
    expect(t.CONSOLE_BAD_ID).to.equal(0xffffffff);
    expect([...t.encodeConsoleResize(0x01020304, 0x0506, 0x0708)]).to.deep.equal([4, 3, 2, 1, 5, 0, 0, 0, 6, 5, 8, 7]);
    // The order Linux read before its 2025 fix (rows first), on request only; decoding mirrors it.
    const legacy = t.encodeConsoleResize(1, 0x0506, 0x0708, 'rows-cols');
    expect([...legacy]).to.deep.equal([1, 0, 0, 0, 5, 0, 0, 0, 8, 7, 6, 5]);
    expect(t.decodeConsoleResize(t.decodeConsoleControl(legacy), 'rows-cols')).to.deep.equal({ cols: 0x0506, rows: 0x0708 });
    expect(t.decodeConsoleResize(t.decodeConsoleControl(legacy))).to.deep.equal({ cols: 0x0708, rows: 0x0506 });
  });

  it('virtio-rng: one request queue, no configuration (VIRTIO 1.2 §5.4)', () => {
    expect([t.RNG_REQUESTQ, t.RNG_QUEUE_COUNT, t.RNG_CONFIG_SIZE]).to.deep.equal([0, 1, 0]);
  });
});
