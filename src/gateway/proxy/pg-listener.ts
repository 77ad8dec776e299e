/**
 * The gateway's PostgreSQL port: accepts TCP connections and gives each its own ClientSession. A failure inside
 * one session closes that connection only; the listener keeps serving everyone else.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { HostPort } from '../config/load.js';
import { errorResponse } from '../wire/backend-messages.js';
import { SqlState } from '../wire/protocol.js';
import { ClientSession, type ProxyDependencies } from './client-session.js';

export class PgListener {
  private readonly server: Server;
  private readonly sessions = new Set<ClientSession>();

  constructor(private readonly deps: ProxyDependencies) {
    this.server = createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server.on('error', (error) => deps.log.log('error', 'listener.error', { reason: error.message }));
  }

  listen(address: HostPort): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(address.port, address.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Live sessions, e.g. to end those of a revoked credential. */
  get openSessions(): ReadonlySet<ClientSession> {
    return this.sessions;
  }

  private accept(socket: Socket): void {
    if (this.sessions.size >= this.deps.config.limits.maxClientConnections) {
      // Said before the startup packet, as PostgreSQL does for "too many clients".
      socket.on('error', () => {});
      socket.end(errorResponse({
        severity: 'FATAL',
        code: SqlState.tooManyConnections,
        message: 'dbgate: too many connections to this gateway',
        hint: 'retry later; the gateway operator can raise limits.max_client_connections',
      }));
      return;
    }
    const session = new ClientSession(socket, this.deps, (closed) => this.sessions.delete(closed));
    this.sessions.add(session);
  }

  /**
   * Ends every live connection of the given sessions (revoked credentials) with a FATAL error that says why.
   * @returns how many connections were closed.
   */
  terminateSessions(sessionIds: ReadonlySet<string>): number {
    let closed = 0;
    for (const session of [...this.sessions]) {
      if (session.sessionId && sessionIds.has(session.sessionId)) {
        session.terminate(SqlState.adminShutdown, 'dbgate: your credential was revoked; this connection is closed',
          'run: dbgate login');
        closed += 1;
      }
    }
    return closed;
  }

  /** Session ids of the live authenticated connections. */
  liveSessionIds(): string[] {
    const ids = new Set<string>();
    for (const session of this.sessions) if (session.sessionId) ids.add(session.sessionId);
    return [...ids];
  }

  /** Stops accepting and ends every session with "the gateway is shutting down". */
  async close(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of [...this.sessions]) {
      session.terminate(SqlState.adminShutdown, 'dbgate: the gateway is shutting down', 'reconnect in a moment');
    }
    await stopped;
  }
}
