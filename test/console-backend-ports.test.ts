/**
 * vshm-console-backend named ports (MULTIPORT) with the real binary and server, and an
 * in-process front-end (openConsole): --port-socket bridges a port to a UNIX-socket client,
 * --port-exec to a command's stdio.
 */
import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { openConsole, type Console } from '@vshm/frontend-console';
import { BACKEND_BIN, SERVER_BIN, useScratch, until } from './e2e-procs.js';

function collect(stream: NodeJS.ReadableStream): () => string {
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return () => text;
}

describe('vshm-console-backend: named ports', function () {
  let con: Console | null = null;
  let client: Socket | null = null;
  afterEach(async () => {
    client?.destroy();
    client = null;
    await con?.close();
    con = null;
  });
  const s = useScratch(this); // cleans up after the hook above

  it('bridges --port-socket to one client and --port-exec to a command', async () => {
    await s.startServer();
    const path = join(s.dir, 'port.sock');
    await s.startBackend(['--size', '80x24', '--port', 'org.vshm.plain', '--port-socket', `org.vshm.sock=${path}`, '--port-exec', 'org.vshm.exec=cat']);
    con = await openConsole({ socketPath: s.server });
    await con.whenReady();

    // --port-exec: `cat` echoes what the front-end writes.
    const exec = await con.driver.waitForPort('org.vshm.exec');
    const fromExec = collect(exec);
    exec.write('ping-exec\n');
    await until(() => fromExec() === 'ping-exec\n', 'echo from the command');

    // --port-socket: the host side opens when a client connects.
    const port = await con.driver.waitForPort('org.vshm.sock');
    expect(port.hostOpen).to.not.equal(true);
    const fromGuest = collect(port);
    client = connect(path);
    const fromClient = collect(client);
    await until(() => port.hostOpen === true, 'PORT_OPEN(1) after the client connected');
    client.write('to-guest');
    await until(() => fromGuest() === 'to-guest', 'client → front-end');
    port.write('to-host');
    await until(() => fromClient() === 'to-host', 'front-end → client');
    // One client at a time: a second one is closed at once, the first keeps the port.
    const second = connect(path);
    let secondClosed = false;
    second.on('error', () => {});
    second.on('close', () => (secondClosed = true));
    await until(() => secondClosed, 'second client closed');
    port.write('still-first');
    await until(() => fromClient() === 'to-hoststill-first', 'first client still served');
    client.destroy();
    await until(() => port.hostOpen === false, 'PORT_OPEN(0) after the client left');

    const plain = await con.driver.waitForPort('org.vshm.plain');
    expect(plain.id).to.equal(1);
  });

  // A Linux guest with MULTIPORT fails its probe when the device has 2·(max_nr_ports + 1) vectors
  // or more (virtio_ivshmem's per-queue numbering, src/linux-vectors.ts): say so at start-up.
  it('warns when the server has as many vectors as a Linux guest fails with, and not below', async () => {
    await s.startServer('0x8003', 6);
    const warned = await s.startBackend(['--port', 'org.vshm.log']);
    expect(warned.stderr).to.match(/vshm-console-backend: warning: 6 interrupt vectors with 2 console ports: a Linux guest fails to set up its queues .* -V 5 or fewer/);
    await warned.stop();
    await s.cleanup();
    s.begin();
    await s.startServer('0x8003', 5);
    const quiet = await s.startBackend(['--port', 'org.vshm.log']);
    expect(quiet.stderr).to.not.match(/interrupt vectors/);
  });

  // -q silences the link-state lines, not a warning that the guest will fail: a service run
  // with -q still says why the Linux guest has no console.
  it('the vector warning is printed with -q too', async () => {
    const server = s.spawn('server', SERVER_BIN, ['-v', '-l', '64K', '-n', '2', '-V', '6', '-P', '0x8003', '-S', s.server]);
    await server.untilStderr(/listening on/);
    const be = s.spawn('backend', BACKEND_BIN, ['-S', s.server, '-q', '--port', 'org.vshm.log']);
    await server.untilStderr(/peer 0 connected/);
    // Once a front-end is live, the back-end has its link (the warning comes with the link); once
    // it has exited, all it wrote has been read.
    con = await openConsole({ socketPath: s.server });
    await con.whenReady();
    be.child.kill('SIGTERM');
    await be.exited;
    expect(be.stderr).to.match(/^vshm-console-backend: warning: 6 interrupt vectors with 2 console ports: a Linux guest fails to set up its queues .* -V 5 or fewer/m);
  });
});
