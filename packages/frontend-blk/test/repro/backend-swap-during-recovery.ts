/**
 * REPRODUCTION of a transport issue found by the stop-27 driver fuzzer (not run by `npm test`:
 * not a *.test.ts; run it with `npx mocha --import tsx packages/frontend-blk/test/repro/backend-swap-during-recovery.ts`).
 *
 * A device callback throws (DEVICE_NEEDS_RESET); while the front-end recovers from that broken
 * session, the back-end is closed and a new VirtioBackend starts on the same ivshmem device one
 * event-loop turn later ("gap 1"). The front-end then stays in phase 'waiting' for ever and the
 * new back-end in 'wait-fe-reset' (DEBUG=vshm:* shows both): each waits for the other. Other
 * gaps recover. Deterministic here; the fuzzer's fixture avoids replacing a back-end while the
 * front-end is 'recovering'.
 */
import { expect } from 'chai';
import { VirtioBackend, VirtioFrontend } from '@vshm/transport';
import { createLoopbackPair } from '@vshm/transport/testing';
import { BlockDriver } from '../../src/driver.js';
import { MemBlkDevice } from '../fixtures/mem-blk-device.js';

const turns = async (max: number, cond: () => boolean): Promise<boolean> => {
  for (let i = 0; i < max && !cond(); i++) await new Promise((res) => setImmediate(res));
  return cond();
};

describe('repro: back-end replaced while the front-end recovers from DEVICE_NEEDS_RESET', () => {
  for (const gap of [0, 1, 2, 5, 10, 20, 50]) {
    it(`gap ${gap}`, async () => {
      const [be, fe] = createLoopbackPair({ protocol: 0x8002, size: 4 * 1024 * 1024, vectors: 2 });
      const dev1 = new MemBlkDevice({ capacity: 1024 * 1024 });
      const origServe = (dev1 as unknown as { serve(q: unknown): void }).serve.bind(dev1);
      let throwIt = false;
      (dev1 as unknown as { serve(q: unknown): void }).serve = (q) => {
        if (throwIt) { throwIt = false; throw new Error('boom'); }
        origServe(q);
      };
      let backend = new VirtioBackend(be, dev1);
      backend.start();
      const driver = new BlockDriver();
      const frontend = new VirtioFrontend(fe, driver, { readyPollMs: 5 });
      frontend.on('error', () => undefined);
      frontend.start().catch(() => undefined);
      await driver.whenReady();
      throwIt = true;
      const p = driver.write(0, Buffer.alloc(512, 1)).catch((e: unknown) => e);
      await turns(10000, () => (frontend as unknown as { phase: string }).phase === 'recovering');
      await turns(gap, () => false);
      await backend.close();
      backend = new VirtioBackend(be, new MemBlkDevice({ capacity: 1024 * 1024 }));
      backend.start();
      const ok = await turns(20000, () => driver.live && (frontend as unknown as { phase: string }).phase === 'live');
      const phase = (frontend as unknown as { phase: string }).phase;
      driver.close();
      await Promise.race([frontend.close(), new Promise((r) => setTimeout(r, 500))]);
      await backend.close();
      be.close();
      fe.close();
      await p;
      expect(ok, `front-end phase ${phase}`).to.equal(true);
    });
  }
});
