/**
 * §8 item 42, driver side: EMERG_WRITE is a 4-byte driver write of the character to `emerg_wr`
 * (config offset 8, header 0x54, §7.2). The device side (0x41 outputs "A") is in
 * packages/backend-console/test/conformance/42-console-control-emerg.test.ts.
 */
import { expect } from 'chai';
import { ConsoleFeature, featureBit } from 'virtio-spec-types';
import { ConsoleDriver, ConsoleError } from '../../src/index.js';
import { FakeSession } from '../fixtures/fake-session.js';

const EMERG = featureBit(ConsoleFeature.EMERG_WRITE);

describe('§8 item 42 (driver side): EMERG_WRITE is a 4-byte config write at emerg_wr', function () {
  it('emergencyWrite is a 4-byte config write at emerg_wr', async () => {
    const d = new ConsoleDriver();
    await d.emergencyWrite(0x41).then(
      () => expect.fail('no session yet'),
      (err: ConsoleError) => expect(err.code).to.equal('VSHM_ERR_NOT_READY'),
    );
    const s = new FakeSession(EMERG, 2);
    d.probe(s);
    await d.emergencyWrite(0x41);
    expect(s.configWrites).to.deep.equal([{ offset: 8, width: 4, value: 0x41 }]);
    const s2 = new FakeSession(0n, 2);
    d.remove(new Error('gone'));
    d.probe(s2);
    await d.emergencyWrite(0x41).then(
      () => expect.fail('not negotiated'),
      (err: ConsoleError) => expect(err.code).to.equal('VSHM_ERR_FEATURE'),
    );
  });
});
