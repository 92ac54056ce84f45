/**
 * createLogger (src/log.ts): without DEBUG a no-op that says it is off; with DEBUG a real
 * `debug` logger (same namespace, enabled by the DEBUG pattern). The second case runs in a fresh
 * process, because `debug` reads DEBUG once, when it is first loaded.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/log.js';

const LOG = fileURLToPath(new URL('../dist/log.js', import.meta.url));

describe('createLogger', () => {
  it('without DEBUG: a no-op logger, disabled, with its namespace', () => {
    const saved = process.env.DEBUG;
    delete process.env.DEBUG;
    try {
      const log = createLogger('vshm:test');
      expect(log.enabled).to.equal(false);
      expect(log.namespace).to.equal('vshm:test');
      expect(log('a %s', 'b')).to.equal(undefined);
    } finally {
      if (saved !== undefined) process.env.DEBUG = saved;
    }
  });

  it('with DEBUG: a debug logger that writes what the pattern enables', () => {
    const script = `const { createLogger } = await import(${JSON.stringify(LOG)});
const on = createLogger('vshm:on'); const off = createLogger('vshm:off');
on('hello %d', 42); off('hidden');
process.stdout.write(JSON.stringify([on.enabled, off.enabled]));`;
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { PATH: process.env.PATH, DEBUG: 'vshm:on', DEBUG_COLORS: '0' },
      encoding: 'utf8',
    });
    expect(res.status, res.stderr).to.equal(0);
    expect(JSON.parse(res.stdout)).to.deep.equal([true, false]);
    expect(res.stderr).to.include('vshm:on hello 42');
    expect(res.stderr).to.not.include('hidden');
  });
});
