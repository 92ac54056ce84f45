/**
 * Host-side attachments of named ports (CLI): a UNIX socket (listen; one client at a time; a
 * connected client = host side open, PORT_OPEN §7.3) or a command's stdio (`sh -c CMD`, stdout
 * and stderr merged into the port).
 */
import { lstatSync, readFileSync, unlinkSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { createLogger, listenOwnerOnly, VshmError, type VshmErrorCode } from '@vshm/transport';
import { acceptWarner, printable } from '@vshm/transport/cli';
import type { ConsolePort } from './port.js';

const debug = createLogger('vshm:console-be');

export interface Attached {
  /** Stop: close the listener / client or terminate the command; remove the socket file. */
  close(): Promise<void>;
}

/** A --port-socket path that cannot be used (exists and is not a socket, or is in use). */
export class AttachError extends VshmError {
  constructor(code: VshmErrorCode, message: string) {
    super(code, '', message);
  }
}

/** Whether a listening UNIX socket is bound to `path` (from /proc/net/unix; never connects). */
export function unixSocketListening(path: string): boolean {
  let text: string;
  try {
    text = readFileSync('/proc/net/unix', 'latin1');
  } catch {
    return false;
  }
  const abs = resolve(path);
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = __SO_ACCEPTCON (listening)
    if (f.length < 8) continue;
    const p = f.slice(7).join(' ');
    if ((p === abs || p === path) && (parseInt(f[3], 16) & 0x10000) !== 0) return true;
  }
  return false;
}

/**
 * Serve `port` on a UNIX socket at `path`, owner-only (`listenOwnerOnly`: mode 0600 from creation
 * whatever the umask; a connection from another uid, root excepted, is closed with a stderr line
 * before any of its bytes reach the port). A stale socket at `path` is replaced; a live one or a
 * non-socket is refused (AttachError VSHM_ERR_SOCKET_IN_USE / VSHM_ERR_NOT_SOCKET). At the
 * open-file limit clients wait in the backlog and stderr gets the CLI kit's one rate-limited
 * warning naming the limit (`acceptWarner`).
 */
export async function attachSocket(port: ConsolePort, path: string): Promise<Attached> {
  let client: Socket | null = null;
  const stderrLine = (line: string): void => void process.stderr.write(`vshm-console-backend: ${printable(line)}\n`);
  const warner = acceptWarner(stderrLine, 'a client', path);
  const onConnection = (sock: Socket): void => {
    warner.accepted();
    if (client !== null) {
      debug('port %d: second client refused', port.id);
      sock.destroy();
      return;
    }
    client = sock;
    debug('port %d: client connected on %s', port.id, path);
    port.attach(sock, sock);
    sock.on('error', (err) => debug('port %d: client error %s', port.id, err.message));
    sock.on('close', () => {
      if (client === sock) {
        client = null;
        port.detach();
      }
    });
  };
  let server: Server;
  try {
    server = await listenOwnerOnly(path, { onRefused: stderrLine, onAcceptError: (err) => warner.failed(err) }, onConnection);
  } catch (err) {
    warner.close();
    // listenOwnerOnly's path refusals carry an errno cause: keep this module's codes for them.
    const cause = (err as { cause?: NodeJS.ErrnoException }).cause?.code;
    const code = cause === 'EEXIST' ? 'VSHM_ERR_NOT_SOCKET' : cause === 'EADDRINUSE' ? 'VSHM_ERR_SOCKET_IN_USE' : 'VSHM_ERR_SOCKET';
    throw new AttachError(code, (err as Error).message);
  }
  return {
    close: async () => {
      const c = client as Socket | null;
      client = null;
      if (c !== null) {
        port.detach();
        c.destroy();
      }
      await new Promise<void>((res) => server.close(() => res()));
      warner.close();
      try {
        if (lstatSync(path).isSocket()) unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}

/** Grace period between SIGTERM and SIGKILL when an attached command is stopped. */
const KILL_AFTER_MS = 3000;

/**
 * Run `sh -c COMMAND` on `port` (its stdout and stderr to the port, the port to its stdin).
 * `onExit` gets how it ended (`status 3`, `signal SIGKILL`) when it ends by itself: the port is
 * then closed on the host side, which the user should hear about.
 */
export function attachCommand(port: ConsolePort, command: string, onExit: (how: string) => void = () => {}): Attached {
  const child: ChildProcess = spawn('/bin/sh', ['-c', `exec 2>&1; ${command}`], { stdio: ['pipe', 'pipe', 'ignore'] });
  let exited = false;
  const done = new Promise<void>((res) => child.once('close', () => res()));
  let stopping = false;
  child.once('exit', (code, sig) => {
    exited = true;
    debug('port %d: command exited (%s)', port.id, sig ?? code);
    if (!stopping) onExit(sig !== null ? `signal ${sig}` : `status ${String(code)}`);
  });
  child.once('close', () => port.detach());
  child.on('error', (err) => debug('port %d: command error %s', port.id, err.message));
  child.stdin?.on('error', () => {}); // EPIPE after the command exits: handled by 'close'
  port.attach(child.stdout, child.stdin);
  return {
    close: async () => {
      if (exited) return done;
      stopping = true;
      child.kill('SIGTERM');
      // A command that ignores SIGTERM must not keep the CLI from leaving (and from restoring
      // the terminal, which it does after every attachment closed).
      const force = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
      await done;
      clearTimeout(force);
    },
  };
}
