/**
 * MockDevice trusts the driver, but its TSDoc promises that its walks are bounded so that a test
 * bug cannot hang: a chain a driver got wrong must still come back. Each walk runs in a worker
 * (fixtures/mock-device-walk.ts) that the test ends after a generous bound.
 */
import { expect } from 'chai';
import { Worker } from 'node:worker_threads';

const BOUND_MS = 20_000;

function walk(kind: 'nested' | 'long-loop'): Promise<{ head: number; indirect: boolean; readable: number; writable: number }> {
  // A worker does not inherit the test runner's tsx hooks: it registers them before importing.
  const entry = new URL('../fixtures/mock-device-walk.ts', import.meta.url).href;
  const code = `import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(entry)}); })`;
  const w = new Worker(code, { eval: true, workerData: kind });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void w.terminate();
      reject(new Error(`MockDevice.popAvail() still walking the ${kind} chain after ${BOUND_MS} ms`));
    }, BOUND_MS);
    w.once('message', (m) => {
      clearTimeout(timer);
      void w.terminate();
      resolve(m);
    });
    w.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

describe('MockDevice walks are bounded', function () {
  this.timeout(2 * BOUND_MS);

  it('an INDIRECT inside an indirect table ends the walk (it is not followed)', async () => {
    expect(await walk('nested')).to.deep.equal({ head: 0, indirect: true, readable: 0, writable: 0 });
  });

  it('a loop in an indirect table whose len claims 2^28 entries stops after 65536 entries', async () => {
    // next is a u16: no walk in a table reaches more than 65536 different entries.
    expect(await walk('long-loop')).to.deep.equal({ head: 0, indirect: true, readable: 65536, writable: 0 });
  });
});
