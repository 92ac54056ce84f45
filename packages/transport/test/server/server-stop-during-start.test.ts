/**
 * stop() called while start() is still in progress (it awaits the addon's import) must leave a
 * stopped server: no listening socket, no socket file, no memory — not resolve at once and let
 * start() go on to listen afterwards, with nobody left to stop it.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { IvshmemServer } from '../../src/server/server.js';
import { removeIfExists, tmpPath } from '../fixtures/raw-client.js';

describe('IvshmemServer: stop() during start()', () => {
  const paths: string[] = [];
  afterEach(() => {
    for (const p of paths.splice(0)) removeIfExists(p);
  });

  it('stops the server start() brings up; both promises settle; nothing is left behind', async () => {
    const socketPath = tmpPath('stop-during-start');
    paths.push(socketPath);
    const s = new IvshmemServer({ socketPath, memorySize: 65536 });
    let closed = 0;
    s.on('close', () => closed++);
    const starting = s.start();
    const stopping = s.stop();
    await starting;
    await stopping;
    expect(s.listening, 'listening after stop()').to.equal(false);
    expect(existsSync(socketPath), 'socket file after stop()').to.equal(false);
    expect(s.memoryFd).to.equal(-1);
    expect(closed).to.equal(1);
    await s.stop(); // still idempotent
  });
});
