/**
 * A port name is the back-end's text (PORT_NAME, VIRTIO 1.2 §5.3.6.2): a hostile back-end can put
 * terminal control sequences in it (ESC ] 0 ; title BEL, ESC [ 2 J, a C1 CSI). The front-end's
 * stderr lines name ports, and those lines go to the user's terminal: every control character in
 * them must arrive escaped, never raw.
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IvshmemServer, openBackend } from '@vshm/transport';
import { ConsoleControlEvent, encodeConsoleControl } from 'virtio-spec-types';
import { main } from '../src/cli.js';
import { TestConsoleDevice } from './fixtures/test-console-device.js';
import { until } from '../../transport/test/fixtures/until.js';

/**
 * Any C0 control, DEL or C1 control (U+0080–U+009F), as a terminal would act on it, and the
 * Unicode bidi controls, which reorder what the reader sees (a name displayed backwards).
 */
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/; // eslint-disable-line no-control-regex

describe('vshm-console-frontend main(): port names from the back-end reach stderr escaped', function () {
  this.timeout(60_000);
  let dir: string;
  const cleanups: (() => Promise<void> | void)[] = [];
  let written = '';
  const realWrite = process.stderr.write.bind(process.stderr);
  beforeEach(() => {
    written = '';
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      written += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      void rest;
      return true;
    }) as typeof process.stderr.write;
    cleanups.push(() => {
      process.stderr.write = realWrite;
    });
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    rmSync(dir, { recursive: true, force: true });
  });

  async function backend(names: (string | null)[]): Promise<{ socketPath: string; device: TestConsoleDevice }> {
    dir = mkdtempSync(join(tmpdir(), 'vshm-fe-names-'));
    const socketPath = join(dir, 'vshm.sock');
    const server = new IvshmemServer({ socketPath, memorySize: 256 * 1024, maxPeers: 2, vectors: 3, protocol: 0x8003 });
    await server.start();
    cleanups.push(() => server.stop());
    const device = new TestConsoleDevice({ ports: names });
    const { peer, transport } = await openBackend(socketPath, device);
    cleanups.push(async () => {
      await transport.close();
      peer.close();
    });
    return { socketPath, device };
  }

  it('"port NAME was removed by the back-end" shows the name with its control characters escaped', async () => {
    const evil = 'log\u001b]0;pwned\u0007\u001b[2J\u009b31m\r\u202egol';
    const { socketPath, device } = await backend([null, evil]);
    const bridge = join(dir, 'bridge.sock');
    const status = main(['-S', socketPath, '--port', evil, '--bridge', bridge]);
    await until(() => existsSync(bridge), 'the bridge socket');
    device.control(encodeConsoleControl(1, ConsoleControlEvent.DEVICE_REMOVE, 0));
    expect(await status).to.equal(1);
    const line = written.split('\n').find((l) => l.includes('was removed by the back-end'));
    expect(line, written).to.be.a('string');
    expect(line).to.include('log\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x0d\\u202egol');
    expect(CONTROL.test(written), JSON.stringify(written)).to.equal(false);
  });

  it('"waiting for port" lists the names the back-end offers with their control characters escaped', async () => {
    const evil = 'mon\u001b[8m\u0085hidden';
    const { socketPath } = await backend([null, evil]);
    const status = main(['-S', socketPath, '--port', 'org.test.absent', '--bridge', join(dir, 'b.sock')]);
    await until(() => written.includes('named ports so far'), 'the waiting note');
    process.emit('SIGINT', 'SIGINT'); // the handler main() installed, without a real signal
    expect(await status).to.equal(0);
    expect(written).to.include("'mon\\x1b[8m\\x85hidden' (1)");
    expect(CONTROL.test(written), JSON.stringify(written)).to.equal(false);
  });
});
