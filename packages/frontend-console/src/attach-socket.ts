/**
 * Bridge a console port to a UNIX stream socket: listen at `path`, serve one client at a time
 * (a second client is closed at once), copy bytes both ways with backpressure.
 *
 * With no client the port is paused: received bytes stay in the stream (up to its
 * highWaterMark), then in the back-end, which is the natural flow control. A client's EOF
 * (half-close) does not end the port; the client may keep reading. The socket file is removed
 * on close. A stale socket file (nothing listening) is replaced; a live one is refused.
 *
 * The socket is owner-only like the server's (`listenOwnerOnly`): mode 0600 from creation
 * whatever the umask, and a connection from another uid (root excepted) is closed with a line on
 * stderr before any of its bytes reach the port. At the open-file limit clients wait in the
 * backlog and stderr gets the CLI kit's one rate-limited warning naming the limit
 * (`acceptWarner`).
 */
import { unlinkSync } from 'node:fs';
import { type Server, type Socket } from 'node:net';
import { listenOwnerOnly } from '@vshm/transport';
import { acceptWarner, printable } from '@vshm/transport/cli';
import type { Duplex } from 'node:stream';
import { createAttachment, type Attachment } from './attachment.js';
import { ConsoleError } from './errors.js';

/** Listen at `path` and bridge `port` to one client at a time. Rejects with ConsoleError VSHM_ERR_SOCKET. */
export async function attachSocket(port: Duplex, path: string): Promise<Attachment> {
  let client: Socket | null = null;
  const stderrLine = (line: string): void => void process.stderr.write(`vshm-console-frontend: ${printable(line)}\n`);
  const warner = acceptWarner(stderrLine, 'a client', path);
  const onConnection = (sock: Socket): void => {
    warner.accepted();
    if (client !== null) {
      sock.destroy();
      return;
    }
    client = sock;
    sock.on('error', () => {}); // a reset client simply goes away
    port.pipe(sock, { end: false });
    sock.pipe(port, { end: false });
    sock.once('close', () => {
      port.unpipe(sock);
      sock.unpipe(port);
      port.pause();
      if (client === sock) client = null;
    });
  };
  // listenOwnerOnly replaces a stale socket and refuses a live one or a non-socket (never by
  // connecting to it).
  let server: Server;
  try {
    server = await listenOwnerOnly(path, { allowHalfOpen: true, onRefused: stderrLine, onAcceptError: (err) => warner.failed(err) }, onConnection);
  } catch (err) {
    warner.close();
    throw new ConsoleError('VSHM_ERR_SOCKET', '', (err as Error).message);
  }
  port.pause();
  // `done` never settles: the bridge runs until a signal.
  return createAttachment(async () => {
    const c = client as Socket | null;
    if (c !== null) {
      port.unpipe(c);
      c.destroy();
    }
    await new Promise<void>((resolve) => server.close(() => resolve()));
    warner.close();
    // listenOwnerOnly leaves the path to its caller (its close() does not unlink, unlike Node's).
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  }).attachment;
}
