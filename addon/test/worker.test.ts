// Worker threads load the addon into their own environments and may exit with watchers still
// started or closing and mappings still alive. Node unloads the addon when the last such
// environment goes away, so nothing of ours may run after that. Runs in a child process so a
// crash shows up as an exit status instead of killing mocha.
import { expect } from 'chai';
import { ADDON_URL, runChild } from './helpers.js';

describe('addon: worker threads', () => {
  it('workers exit cleanly with open watchers, closing watchers and live mappings', async () => {
    const worker = `
      import binding from ${JSON.stringify(ADDON_URL)};
      import { parentPort, workerData } from 'node:worker_threads';
      const e = binding.eventfd(0, true);
      const fd = binding.memfdCreate('w', false);
      binding.ftruncate(fd, binding.PAGE_SIZE);
      globalThis.keep = binding.mmap(fd, 0, binding.PAGE_SIZE, binding.PROT_READ | binding.PROT_WRITE);
      const w = binding.createWatcher(e, () => {
        parentPort.postMessage(binding.eventfdRead(e));
        if (workerData === 'close') w.close();          // close pending at exit
        if (workerData === 'unref') w.unref();          // natural exit with a started watcher
        if (workerData === 'terminate') binding.eventfdWrite(e, 1); // keep firing until killed
      });
      w.start(binding.POLL_READABLE);
      binding.eventfdWrite(e, 4);
    `;
    const r = await runChild(`
      import { Worker } from 'node:worker_threads';
      const code = ${JSON.stringify(worker)};
      const modes = ['close', 'unref', 'terminate', 'close', 'unref', 'terminate'];
      const results = await Promise.all(modes.map((mode) => new Promise((resolve, reject) => {
        const wk = new Worker(new URL('data:text/javascript,' + encodeURIComponent(code)), { workerData: mode });
        let got = 0;
        wk.on('message', (v) => { got += v; if (mode === 'terminate') wk.terminate(); });
        wk.on('error', reject);
        wk.on('exit', () => resolve(got > 0));
      })));
      console.log(JSON.stringify(results));
    `);
    expect(r.signal, r.stderr).to.equal(null);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal([true, true, true, true, true, true]);
  });
});
