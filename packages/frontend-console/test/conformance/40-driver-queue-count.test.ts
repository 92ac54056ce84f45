/**
 * §8 item 40, driver side: Q = 2, or 2·`max_nr_ports` + 2 with MULTIPORT (§7.2), so port n ≥ 1
 * gets queues 2n+2 / 2n+3. The device side (queue 0 input, queue 1 output with used `len` 0, port n
 * on 2n+2 / 2n+3) is in packages/backend-console/test/conformance/40-console-queues.test.ts.
 */
import { expect } from 'chai';
import { ConsoleFeature, featureBit } from 'virtio-spec-types';
import { ConsoleDriver } from '../../src/index.js';
import { configWith } from '../fixtures/config-reader.js';

const SIZE = featureBit(ConsoleFeature.SIZE);
const MULTIPORT = featureBit(ConsoleFeature.MULTIPORT);
const EMERG = featureBit(ConsoleFeature.EMERG_WRITE);

describe('§8 item 40 (driver side): queue count 2, or 2·max_nr_ports + 2 with MULTIPORT', function () {
  it('offers SIZE, MULTIPORT and EMERG_WRITE and counts queues per §7.2', () => {
    const d = new ConsoleDriver({ maxPorts: 3 });
    expect(d.deviceId).to.equal(3);
    expect(d.features).to.equal(SIZE | MULTIPORT | EMERG);
    expect(d.queueCount(SIZE, configWith(3))).to.equal(2);
    expect(d.queueCount(SIZE | MULTIPORT, configWith(3))).to.equal(8);
    expect(d.queueCount(SIZE | MULTIPORT, configWith(2))).to.equal(6); // never beyond max_nr_ports
  });
});
