/**
 * The seeded hostile device against ConsoleDriver's control path (fixtures/hostile-device.ts)
 * over a small fixed budget. Run longer by hand:
 *   VSHM_CONSOLE_FUZZ_BUDGET=50000 VSHM_CONSOLE_FUZZ_SEED=1 npx mocha --import tsx packages/frontend-console/test/control-fuzz.test.ts
 * A failure names its seed; replay it with runHostileDeviceConsoleCase(seed).
 */
import { expect } from 'chai';
import { HostileDeviceCaseError, runHostileDeviceConsoleCase } from './fixtures/hostile-device.js';

const BUDGET = Number(process.env.VSHM_CONSOLE_FUZZ_BUDGET ?? 150);
const FIRST_SEED = Number(process.env.VSHM_CONSOLE_FUZZ_SEED ?? 1);

describe('ConsoleDriver under a seeded hostile device (control path)', () => {
  it(`${BUDGET} cases: no exception, the port set follows the device, sane port events, every byte read in order`, async function () {
    this.timeout(Math.max(20_000, BUDGET * 50));
    let messages = 0;
    let ports = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + BUDGET; seed++) {
      const r = await runHostileDeviceConsoleCase(seed);
      messages += r.messages;
      ports += r.ports;
    }
    // The generator must do something: many control messages, ports coming and going.
    expect(messages).to.be.above(BUDGET * 50);
    expect(ports).to.be.above(BUDGET * 5);
  });

  it('names the seed and step of a broken invariant', () => {
    expect(new HostileDeviceCaseError(7, 3, 'boom').message).to.equal('console hostile-device seed 7, step 3: boom');
  });
});
