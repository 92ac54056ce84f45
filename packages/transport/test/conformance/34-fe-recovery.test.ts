/**
 * §8 item 34: a vshm FE waits for BE READY and fully re-initialises after the BE returns
 * (§4.10). Item 35 (in-flight requests fail) is 35-fe-inflight-failed.test.ts.
 */
import { expect } from 'chai';
import { createLoopbackPair } from '../../src/ivshmem/loopback.js';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import { VirtioBackend } from '../../src/virtio/backend.js';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import { TransportError } from '../../src/errors.js';
import type { DriverSession } from '../../src/virtio/device-api.js';
import { echoDevice, recordingDriver, until } from '../fixtures/transport-devices.js';

describe('§8 item 34: FE waits for BE READY and re-initialises after it returns (§4.10)', () => {
  let be: IvshmemDevice;
  let fe: IvshmemDevice;
  let backends: VirtioBackend[];
  let frontend: VirtioFrontend;

  beforeEach(() => {
    [be, fe] = createLoopbackPair();
    backends = [];
  });
  afterEach(async () => {
    await frontend?.close();
    for (const b of backends) await b.close();
    fe.close();
    be.close();
  });

  function startBackend(dev = echoDevice()): VirtioBackend {
    const b = new VirtioBackend(be, dev);
    backends.push(b);
    b.start();
    return b;
  }

  async function echo(session: DriverSession, drv: ReturnType<typeof recordingDriver>, text: string): Promise<Buffer> {
    const before = drv.used.length;
    expect(session.queues[0].add(Buffer.from(text), 64, text)).to.equal(true);
    session.queues[0].kick();
    await until(() => drv.used.length > before, `echo of ${text}`);
    return drv.used[drv.used.length - 1].data;
  }

  it('item 34: started before the back-end, the FE waits (does not fail) and initialises once it is READY', async () => {
    const drv = recordingDriver();
    frontend = new VirtioFrontend(fe, drv);
    let settled = false;
    const started = frontend.start().finally(() => {
      settled = true;
    });
    // Give the FE many loop turns with no back-end at all: it must keep waiting.
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(settled).to.equal(false);
    expect(frontend.phase).to.equal('waiting');
    expect(fe.state).to.equal(0);
    startBackend();
    const session = await started;
    expect((await echo(session, drv, 'hello')).toString()).to.equal('hello');
  });

  it('survives several back-end restarts in a row', async () => {
    let b = startBackend();
    const drv = recordingDriver();
    frontend = new VirtioFrontend(fe, drv);
    await frontend.start();
    for (let i = 0; i < 5; i++) {
      await b.close();
      b = startBackend();
      await until(() => drv.sessions.length === i + 2, `probe ${i + 2}`);
      expect((await echo(drv.sessions[i + 1], drv, `r${i}`)).toString()).to.equal(`r${i}`);
    }
    expect(drv.removed).to.have.length(5);
  });
});
