import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IvshmemServer, openBackend, openFrontend, type VirtioDeviceOps, type VirtioDriverOps } from '@vshm/transport';

const ECHO = 0x3ff0; // a private device id, not a registered VIRTIO type
const socketPath = join(tmpdir(), 'vshm-echo.sock');
const server = new IvshmemServer({ socketPath, memorySize: 65536, vectors: 2, protocol: 0x8000 | ECHO });
await server.start();

const device: VirtioDeviceOps = { // the back-end: each request's bytes come back as its reply
  deviceId: ECHO, features: 0n, configSize: 0, configFields: [], initConfig() {}, deactivate() {},
  queueCount: () => 1, queueMaxSize: () => 8,
  activate({ queues: [q] }) {
    q!.onAvailable = () => {
      for (let c = q!.pop(); c; c = q!.pop()) { const b = new Uint8Array(c.readableLength); c.read(b); q!.push(c, c.write(b)); }
      q!.flush();
    };
  },
};
const be = await openBackend(socketPath, device); // the back-end connects first

let reply!: (text: string) => void;
const echoed = new Promise<string>((resolve) => (reply = resolve));
const driver: VirtioDriverOps = { // the front-end: one request once the device is live
  deviceId: ECHO, features: 0n, queueCount: () => 1, remove() {},
  probe({ queues: [q] }) {
    q!.onUsed = (_token, data) => reply(Buffer.from(data).toString());
    q!.add(Buffer.from('hello over shared memory'), 64, null); // + 64 writable bytes for the answer
    q!.kick();
  },
};
const fe = await openFrontend(socketPath, driver);
console.log(await echoed); // → hello over shared memory
await fe.transport.close(); fe.peer.close(); await be.transport.close(); be.peer.close(); await server.stop();
