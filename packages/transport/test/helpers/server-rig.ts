/**
 * Shared setup for the in-process IvshmemServer tests (§1.3–1.7; §8 items 1–12): a server on a
 * fresh socket path, raw clients against it, and cleanup of clients, paths and -M objects in an
 * afterEach hook. Call useServerRig() inside a describe block.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { MSG_EVENT_FD, MSG_INIT, type InitMessage } from '../../src/ivshmem/protocol.js';
import { IvshmemServer, type IvshmemServerOptions } from '../../src/server/server.js';
import { RawClient, removeIfExists, tmpPath, type RawMessage } from './raw-client.js';

/** Compact form of a message: 'INIT 0', 'EV 1.2', 'GONE 1' (and checks the fd count per type). */
export function sig(m: RawMessage): string {
  const { msg } = m;
  if (msg.type === MSG_INIT) {
    expect(m.fds, 'INIT carries the memory fd').to.have.length(1);
    return `INIT ${(msg as InitMessage).id}`;
  }
  if (msg.type === MSG_EVENT_FD) {
    expect(m.fds, 'EVENT_FD carries one eventfd').to.have.length(1);
    const e = msg as { id: number; vector: number };
    return `EV ${e.id}.${e.vector}`;
  }
  expect(m.fds, 'PEER_GONE carries no fd').to.have.length(0);
  return `GONE ${(msg as { id: number }).id}`;
}

/** The EVENT_FD signatures of peer `id`, vectors 0 … vectors−1 in order. */
export function evs(id: number, vectors: number): string[] {
  return Array.from({ length: vectors }, (_, v) => `EV ${id}.${v}`);
}

export interface Joined {
  c: RawClient;
  burst: RawMessage[];
  id: number;
}

export interface ServerRig {
  /** The server of the running test (after start()). */
  readonly server: IvshmemServer | undefined;
  /** Clients closed after each test. */
  readonly clients: RawClient[];
  /** Paths removed after each test. */
  readonly paths: string[];
  /** POSIX shm names unlinked (if still present) after each test. */
  readonly shmNames: string[];
  start(opts?: IvshmemServerOptions): Promise<IvshmemServer>;
  connect(opts?: { paused?: boolean }): RawClient;
  /** Connect and read the whole initial burst (INIT + (peers + 1)·vectors EVENT_FDs). */
  join(existing: number, vectors: number): Promise<Joined>;
  /** Close every client so far (a test that cycles clients). */
  closeClients(): void;
}

export function useServerRig(): ServerRig {
  let server: IvshmemServer | undefined;
  const clients: RawClient[] = [];
  const paths: string[] = [];
  const shmNames: string[] = [];

  const closeClients = (): void => {
    for (const c of clients.splice(0)) c.close();
  };

  const start = async (opts: IvshmemServerOptions = {}): Promise<IvshmemServer> => {
    const socketPath = tmpPath('srv');
    paths.push(socketPath);
    server = new IvshmemServer({ socketPath, memorySize: 65536, ...opts });
    await server.start();
    return server;
  };

  const connect = (opts: { paused?: boolean } = {}): RawClient => {
    const c = RawClient.connect(binding, server!.socketPath, opts);
    clients.push(c);
    return c;
  };

  const join = async (existing: number, vectors: number): Promise<Joined> => {
    const c = connect();
    const burst = await c.take(1 + (existing + 1) * vectors);
    return { c, burst, id: (burst[0].msg as InitMessage).id };
  };

  afterEach(async () => {
    closeClients();
    await server?.stop();
    server = undefined;
    for (const p of paths.splice(0)) removeIfExists(p);
    for (const n of shmNames.splice(0)) {
      try {
        binding.shmUnlink(n);
      } catch {
        // already unlinked by the server (§1.7)
      }
    }
  });

  return {
    get server() {
      return server;
    },
    clients,
    paths,
    shmNames,
    start,
    connect,
    join,
    closeClients,
  };
}
