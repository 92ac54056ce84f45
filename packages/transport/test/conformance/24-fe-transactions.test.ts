/**
 * §8 item 24: FE transactions store value, then offset, then ring vector 0; never two at once.
 */
import { expect } from 'chai';
import { createLoopbackPair } from '../../src/testing/loopback.js';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import { TransactionWriter } from '../../src/virtio/frontend-transactions.js';
import { TransportError } from '../../src/errors.js';
import { FrontendHeader, HDR_CONFIG, HDR_DEVICE_STATUS, HDR_QUEUE_DESC, HDR_QUEUE_ENABLE, HDR_QUEUE_SEL, HDR_WRITE_TRANSACTION } from '../../src/virtio/header.js';
import { ScriptedBackend } from '../fixtures/transport-scripted-backend.js';

interface Ring {
  target: number;
  vector: number;
  wt: number;
  value: bigint;
  completedBefore: number;
}

describe('§8 item 24: FE write transactions (spec §4.3)', () => {
  let be: IvshmemDevice;
  let fe: IvshmemDevice;
  let sb: ScriptedBackend;
  let header: FrontendHeader;
  let rings: Ring[];

  beforeEach(() => {
    [be, fe] = createLoopbackPair();
    sb = new ScriptedBackend(be);
    sb.start();
    header = new FrontendHeader(fe.window, fe.layout.rwSize);
    rings = [];
    const dv = new DataView(fe.window);
    const orig = fe.doorbell.bind(fe);
    // Instrument the doorbell: what the BE would see at the moment vector 0 rings.
    fe.doorbell = (target: number, vector: number): void => {
      const wt = dv.getUint32(HDR_WRITE_TRANSACTION, true);
      const value = wt === HDR_QUEUE_DESC ? dv.getBigUint64(wt, true) : wt === HDR_QUEUE_ENABLE ? BigInt(dv.getUint16(wt, true)) : BigInt(dv.getUint32(wt, true));
      rings.push({ target, vector, wt, value, completedBefore: sb.log.length });
      orig(target, vector);
    };
  });
  afterEach(() => {
    fe.close();
    be.close();
  });

  it('stores the value, then the offset, then rings Doorbell(BE, 0); serialises concurrent writes', async () => {
    const txn = new TransactionWriter(header, fe, 0);
    const writes = [
      txn.write(HDR_QUEUE_SEL, 4, 1),
      txn.write(HDR_QUEUE_DESC, 8, 0x1234_5678_9abcn),
      txn.write(HDR_QUEUE_ENABLE, 2, 1),
      txn.write(HDR_DEVICE_STATUS, 4, 3),
      txn.write(HDR_CONFIG + 8, 4, 0x41),
    ];
    await Promise.all(writes);
    expect(rings.map((r) => [r.target, r.vector, r.wt, r.value])).to.deep.equal([
      [0, 0, HDR_QUEUE_SEL, 1n],
      [0, 0, HDR_QUEUE_DESC, 0x1234_5678_9abcn],
      [0, 0, HDR_QUEUE_ENABLE, 1n],
      [0, 0, HDR_DEVICE_STATUS, 3n],
      [0, 0, HDR_CONFIG + 8, 0x41n],
    ]);
    // Never two at once: each doorbell came only after every earlier transaction was completed.
    expect(rings.map((r) => r.completedBefore)).to.deep.equal([0, 1, 2, 3, 4]);
    expect(sb.log.map((r) => r.off)).to.deep.equal([HDR_QUEUE_SEL, HDR_QUEUE_DESC, HDR_QUEUE_ENABLE, HDR_DEVICE_STATUS, HDR_CONFIG + 8]);
    expect(txn.completed).to.equal(5);
  });

  it('per transaction: value store, then write_transaction := off, then the doorbell — in that order', async () => {
    const events: string[] = [];
    const store = header.store.bind(header);
    header.store = (off, width, value) => {
      events.push(`value@${off}:${width}=${value}`);
      store(off, width, value);
    };
    const proto = Object.getPrototypeOf(header) as FrontendHeader;
    const wt = Object.getOwnPropertyDescriptor(proto, 'writeTransaction')!;
    Object.defineProperty(header, 'writeTransaction', {
      get: () => wt.get!.call(header) as number,
      set: (v: number) => {
        events.push(`wt=${v}`);
        wt.set!.call(header, v);
      },
    });
    const ring = fe.doorbell;
    fe.doorbell = (t: number, v: number) => {
      events.push(`doorbell(${t},${v})`);
      ring(t, v);
    };
    const txn = new TransactionWriter(header, fe, 0);
    await Promise.all([txn.write(HDR_QUEUE_SEL, 4, 1), txn.write(HDR_QUEUE_ENABLE, 2, 1), txn.write(HDR_QUEUE_DESC, 8, 0x100n)]);
    expect(events).to.deep.equal([
      `value@${HDR_QUEUE_SEL}:4=1`, `wt=${HDR_QUEUE_SEL}`, 'doorbell(0,0)',
      `value@${HDR_QUEUE_ENABLE}:2=1`, `wt=${HDR_QUEUE_ENABLE}`, 'doorbell(0,0)',
      `value@${HDR_QUEUE_DESC}:8=256`, `wt=${HDR_QUEUE_DESC}`, 'doorbell(0,0)',
    ]);
  });

  it('does not start a transaction while the previous one is pending', async () => {
    const txn = new TransactionWriter(header, fe, 0);
    sb.hold = true;
    let firstDone = false;
    const first = txn.write(HDR_QUEUE_SEL, 4, 0).then(() => {
      firstDone = true;
    });
    const second = txn.write(HDR_QUEUE_SEL, 4, 1);
    // Let the loop turn a few times: the first stays pending, the second must not ring.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(rings.length).to.equal(1);
    expect(firstDone).to.equal(false);
    sb.hold = false;
    sb.completeNow();
    await first;
    await second;
    expect(rings.length).to.equal(2);
    expect(sb.log.map((r) => r.value)).to.deep.equal([0n, 1n]);
  });

  it('a BE leaving READY aborts the wait as a back-end failure', async () => {
    const txn = new TransactionWriter(header, fe, 0);
    sb.hold = true;
    const p = txn.write(HDR_DEVICE_STATUS, 4, 1);
    await new Promise((r) => setImmediate(r));
    be.setState(0);
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(TransportError);
    expect((err as TransportError).code).to.equal('VSHM_ERR_BACKEND_LOST');
  });

  it('a transaction never completed times out as a back-end failure', async () => {
    const txn = new TransactionWriter(header, fe, 0, { timeoutMs: 50 });
    sb.hold = true;
    const err = await txn.write(HDR_DEVICE_STATUS, 4, 1).then(
      () => null,
      (e: unknown) => e,
    );
    expect((err as TransportError).code).to.equal('VSHM_ERR_TXN_TIMEOUT');
  });

  it('abort() fails the running and queued transactions', async () => {
    const txn = new TransactionWriter(header, fe, 0);
    sb.hold = true;
    const a = txn.write(HDR_QUEUE_SEL, 4, 0);
    const b = txn.write(HDR_QUEUE_SEL, 4, 1);
    await new Promise((r) => setImmediate(r));
    const boom = new TransportError('VSHM_ERR_BACKEND_LOST', '4.10', 'test');
    txn.abort(boom);
    expect(await a.catch((e: unknown) => e)).to.equal(boom);
    expect(await b.catch((e: unknown) => e)).to.equal(boom);
    expect(rings.length).to.equal(1);
    expect(await txn.write(0, 4, 1).catch((e: unknown) => (e as TransportError).code)).to.equal('VSHM_ERR_TXN_OFFSET');
  });
});
