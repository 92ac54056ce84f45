/**
 * §8 item 34: a vshm FE waits for BE READY and fully re-initialises after the BE returns
 * (§4.10). Item 35 (in-flight requests fail) is 35-fe-inflight-failed.test.ts.
 */
import { expect } from 'chai';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import { recordingDriver } from '../fixtures/transport-devices.js';
import { echo, useRestartRig } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

describe('§8 item 34: FE waits for BE READY and re-initialises after it returns (§4.10)', () => {
  const rig = useRestartRig();

  it('item 34: started before the back-end, the FE waits (does not fail) and initialises once it is READY', async () => {
    const drv = recordingDriver();
    const frontend = (rig.frontend = new VirtioFrontend(rig.fe, drv));
    let settled = false;
    const started = frontend.start().finally(() => {
      settled = true;
    });
    // Give the FE many loop turns with no back-end at all: it must keep waiting.
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(settled).to.equal(false);
    expect(frontend.phase).to.equal('waiting');
    expect(rig.fe.state).to.equal(0);
    rig.startBackend();
    const session = await started;
    expect((await echo(session, drv, 'hello')).toString()).to.equal('hello');
  });

  it('survives several back-end restarts in a row', async () => {
    let b = rig.startBackend();
    const drv = recordingDriver();
    const frontend = (rig.frontend = new VirtioFrontend(rig.fe, drv));
    await frontend.start();
    for (let i = 0; i < 5; i++) {
      await b.close();
      b = rig.startBackend();
      await until(() => drv.sessions.length === i + 2, `probe ${i + 2}`);
      expect((await echo(drv.sessions[i + 1], drv, `r${i}`)).toString()).to.equal(`r${i}`);
    }
    expect(drv.removed).to.have.length(5);
  });
});
