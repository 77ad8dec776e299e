/**
 * The local end of `dbgate connect`: a PostgreSQL-speaking listener on 127.0.0.1 that accepts local clients with a
 * per-tunnel random password and relays each one over TLS to the gateway, logging in there with the user's
 * dbgate credential. Other local users and containers can reach the port but not ride it: a client without the
 * tunnel password is refused before any gateway connection is opened.
 */
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { serialize } from 'pg-protocol';
import { authenticationRequest, errorResponse, parseErrorFields } from '../../gateway/wire/backend-messages.js';
import { BackendRelay } from '../../gateway/wire/backend-relay.js';
import { cancelRequest, startupMessage } from '../../gateway/wire/frontend-messages.js';
import { HandshakeReader } from '../../gateway/wire/handshake-reader.js';
import {
  parseStartupParameters,
  PgMessageReader,
  ProtocolViolation,
  readCString,
  type PgMessage,
} from '../../gateway/wire/message-reader.js';
import {
  AuthenticationKind,
  BackendCode,
  CANCEL_REQUEST_BYTES,
  CANCEL_REQUEST_CODE,
  FrontendCode,
  GSSENC_REQUEST_CODE,
  SSL_REQUEST_CODE,
  SqlState,
} from '../../gateway/wire/protocol.js';
import { openGatewayConnection, type GatewayEndpoint } from './gateway-connection.js';
import { gatewayRefusal } from '../../shared/refusals.js';
import { TUNNEL_ID_PARAMETER } from '../../shared/tunnel-id.js';

export interface LocalTunnelOptions {
  target: string;
  /** The identity's PostgreSQL user name at the gateway (the credential's subject). */
  user: string;
  gateway: GatewayEndpoint;
  /**
   * Returns the credential to present now; called once per new connection, before the gateway connection opens, so
   * a renewed credential is picked up. When it throws (login expired), the local client is refused with its message.
   */
  credential: () => string | Promise<string>;
  /** 0 or undefined: a random free port. */
  port?: number | undefined;
  /** Told about connections opening and closing (for the live view / plain lines). */
  onEvent?: ((event: TunnelEvent) => void) | undefined;
  /**
   * Also report each statement's outcome as a `statement` event, read from what the gateway answers. Costs a
   * message-boundary scan of the gateway→client stream (see `relayObserved`); off, the bytes are simply piped.
   */
  observeStatements?: boolean | undefined;
}

/**
 * What the tunnel can tell about a statement from the gateway's answer alone: it ran (CommandComplete), the policy
 * denied it, or the policy held it for approval (both are ErrorResponses with SQLSTATE 42501 and a `dbgate:`
 * message), or it failed in the database (any other ErrorResponse). Whether the gateway masked a result is not
 * visible in the bytes, so masked statements count as allowed; the gateway's audit trail knows (GET /v1/me/activity).
 */
export type StatementOutcome = 'allowed' | 'denied' | 'held' | 'failed';

export type TunnelEvent =
  | { type: 'open'; id: number; open: number }
  | { type: 'close'; id: number; open: number }
  | { type: 'refused'; id: number; reason: string }
  | { type: 'statement'; id: number; outcome: StatementOutcome };

export class LocalTunnel {
  /** The password local clients must present. 24 random bytes: unguessable, URL-safe. */
  readonly password = randomBytes(24).toString('base64url');
  /**
   * Names this tunnel to the gateway on every connection it relays (TUNNEL_ID_PARAMETER), so that the tunnel's
   * statements can be counted from the audit trail. Not a secret: the gateway counts only the asker's own statements.
   */
  readonly tunnelId = randomUUID();
  private readonly server: Server;
  private readonly connections = new Set<Socket | TLSSocket>();
  private nextId = 1;
  private open = 0;

  constructor(private readonly options: LocalTunnelOptions) {
    this.server = createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  /** Binds 127.0.0.1 only: the tunnel is never reachable from another host. */
  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port ?? 0, '127.0.0.1', () => {
        this.server.off('error', reject);
        const address = this.server.address() as AddressInfo;
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  get openConnections(): number {
    return this.open;
  }

  /** Stops listening and closes every relayed connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.connections) socket.destroy();
    await closed;
  }

  private track(socket: Socket | TLSSocket): void {
    this.connections.add(socket);
    socket.once('close', () => this.connections.delete(socket));
  }

  private accept(client: Socket): void {
    const id = this.nextId++;
    this.track(client);
    client.setNoDelay(true);
    client.on('error', () => client.destroy());
    // Nothing a client says before the relay starts (startup, password) is legitimately larger than 64 kB.
    const reader = new PgMessageReader({ maxMessageBytes: 65_536 });
    let parameters = new Map<string, string>();
    let stage: 'startup' | 'password' | 'relaying' = 'startup';

    const refuse = (code: (typeof SqlState)[keyof typeof SqlState], message: string, hint?: string): void => {
      this.options.onEvent?.({ type: 'refused', id, reason: message });
      client.end(errorResponse({ severity: 'FATAL', code, message, hint }));
    };

    const handle = (message: PgMessage): void => {
      if (stage === 'startup') {
        const code = message.body.readInt32BE(0);
        if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
          // Loopback only: no TLS here. The client continues in plaintext (sslmode=prefer/disable).
          client.write(Buffer.from('N'));
          return;
        }
        if (code === CANCEL_REQUEST_CODE) {
          if (message.raw.length !== CANCEL_REQUEST_BYTES) throw new ProtocolViolation('malformed CancelRequest');
          client.end();
          // The key was issued by the gateway; it alone decides whether it is valid.
          void this.forwardCancel(message.body.readInt32BE(4), message.body.readInt32BE(8));
          return;
        }
        if (code >> 16 !== 3) throw new ProtocolViolation('unsupported protocol version');
        parameters = parseStartupParameters(message.body);
        reader.expectStartupPacket = false;
        const database = parameters.get('database');
        if (database !== undefined && database !== this.options.target) {
          refuse(SqlState.invalidCatalogName, `dbgate: this tunnel serves "${this.options.target}", not "${database}"`,
            `connect with dbname=${this.options.target}, or run: dbgate connect ${database}`);
          return;
        }
        stage = 'password';
        client.write(authenticationRequest(AuthenticationKind.CleartextPassword));
        return;
      }
      if (stage === 'password') {
        if (message.type !== FrontendCode.Password) throw new ProtocolViolation('expected a password message');
        const given = Buffer.from(readCString(message.body, 0).value);
        const expected = Buffer.from(this.password);
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
          refuse(SqlState.invalidPassword, 'dbgate: wrong tunnel password',
            'use the connection URI that dbgate connect printed (the password changes with every tunnel)');
          return;
        }
        stage = 'relaying';
        // Relay mode takes over the socket: pause until the gateway login is done, then pipe.
        client.off('data', onData);
        client.pause();
        void this.relay(id, client, parameters, reader.drain());
      }
    };

    const onData = (chunk: Buffer): void => {
      reader.push(chunk);
      try {
        for (;;) {
          if (stage === 'relaying' || client.destroyed) return;
          const message = reader.next();
          if (!message) return;
          handle(message);
        }
      } catch (error) {
        refuse(SqlState.protocolViolation, `dbgate: invalid message from client: ${(error as Error).message}`);
      }
    };
    client.on('data', onData);
  }

  /** Logs in at the gateway with the credential, then pipes both directions until either side closes. */
  private async relay(id: number, client: Socket, parameters: Map<string, string>, pending: Buffer[]): Promise<void> {
    let gateway: TLSSocket;
    try {
      gateway = await openGatewayConnection(this.options.gateway);
    } catch (error) {
      this.options.onEvent?.({ type: 'refused', id, reason: (error as Error).message });
      client.end(errorResponse({
        severity: 'FATAL',
        code: SqlState.sqlclientUnableToEstablishSqlconnection,
        message: `dbgate: ${(error as Error).message}`,
        hint: (error as { hint?: string }).hint,
      }));
      return;
    }
    this.track(gateway);
    if (client.destroyed) {
      gateway.destroy();
      return;
    }
    // Only now, with the gateway's certificate verified against the pin, is the credential asked for (which may
    // renew it at the IdP): nothing about it is produced for a gateway that could be an impostor.
    let credential: string;
    try {
      credential = await this.options.credential();
    } catch (error) {
      gateway.destroy();
      const message = (error as Error).message;
      this.options.onEvent?.({ type: 'refused', id, reason: message });
      client.end(errorResponse({
        severity: 'FATAL',
        code: SqlState.invalidAuthorizationSpecification,
        message: `dbgate: ${message}`,
        hint: (error as { hint?: string }).hint,
      }));
      return;
    }
    if (client.destroyed) {
      gateway.destroy();
      return;
    }
    const startup = new Map(parameters);
    startup.set('user', this.options.user);
    startup.set('database', this.options.target);
    startup.set(TUNNEL_ID_PARAMETER, this.tunnelId); // also replaces any a local client sent
    const reader = new HandshakeReader(gateway);
    gateway.write(startupMessage(startup));
    let first: PgMessage;
    try {
      first = await reader.readMessage();
    } catch {
      reader.detach();
      client.destroy();
      gateway.destroy();
      return;
    }
    const isPasswordRequest = first.type === BackendCode.Authentication &&
      first.body.readInt32BE(0) === AuthenticationKind.CleartextPassword;
    if (isPasswordRequest) gateway.write(serialize.password(credential));
    else client.write(first.raw); // an error before authentication (e.g. too many connections): pass it on
    // `first` was a whole message, so the unread bytes start at a message boundary, where an observer must start.
    const unread = reader.detach();
    const observer = this.options.observeStatements ? this.statementObserver(id) : undefined;
    try {
      for (const chunk of unread) for (const part of observer ? observer.relay(chunk) : [chunk]) client.write(part);
    } catch {
      client.destroy();
      gateway.destroy();
      return;
    }
    for (const chunk of pending) gateway.write(chunk);

    this.open += 1;
    this.options.onEvent?.({ type: 'open', id, open: this.open });
    let closed = false;
    const closeBoth = (): void => {
      if (closed) return;
      closed = true;
      this.open -= 1;
      this.options.onEvent?.({ type: 'close', id, open: this.open });
      client.destroy();
      gateway.destroy();
    };
    // pipe() applies backpressure in both directions: a slow client pauses the gateway socket and vice versa.
    if (observer) relayObserved(gateway, client, observer, closeBoth);
    else gateway.pipe(client);
    client.pipe(gateway);
    client.on('close', closeBoth);
    gateway.on('close', closeBoth);
    gateway.on('error', closeBoth);
    client.on('error', closeBoth);
    client.resume();
  }

  /**
   * Follows the gateway's messages without changing a byte (every message is forwarded; result rows stream through
   * unread) and reports each statement's outcome. Before the first ReadyForQuery the connection is still logging in:
   * an error there is a refused login, not a statement.
   *
   * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
   */
  private statementObserver(id: number): BackendRelay {
    let ready = false;
    const report = (outcome: StatementOutcome): void => this.options.onEvent?.({ type: 'statement', id, outcome });
    return new BackendRelay((type, body) => {
      if (type === BackendCode.ReadyForQuery) ready = true;
      else if (!ready) return 'forward';
      else if (type === BackendCode.CommandComplete) report('allowed');
      else if (type === BackendCode.ErrorResponse) {
        const fields = parseErrorFields(body);
        // FATAL and PANIC end the connection (a revoked credential, a shutdown): no statement failed.
        if ((fields['V'] ?? fields['S']) !== 'ERROR') return 'forward';
        // Only the gateway's own refusals: PostgreSQL's 42501 ("permission denied for table") is not one.
        report(gatewayRefusal(fields['C'], fields['M']) ?? 'failed');
      }
      return 'forward';
    });
  }

  private async forwardCancel(processId: number, secretKey: number): Promise<void> {
    try {
      const gateway = await openGatewayConnection(this.options.gateway);
      gateway.on('error', () => {});
      gateway.end(cancelRequest(processId, secretKey));
    } catch {
      // A cancel is best effort by protocol design: the client gets no answer either way.
    }
  }
}

/**
 * gateway → client through an observing relay, with pipe()'s backpressure: when the client's buffer is full the
 * gateway socket is paused until it drains. A stream the relay cannot frame ends the connection.
 */
function relayObserved(gateway: TLSSocket, client: Socket, observer: BackendRelay, closeBoth: () => void): void {
  gateway.on('data', (chunk: Buffer) => {
    let parts: Buffer[];
    try {
      parts = observer.relay(chunk);
    } catch {
      closeBoth();
      return;
    }
    let full = false;
    // One chunk in, one TCP write out: without cork a chunk split around an inspected message would leave as
    // several segments (the socket has no-delay set).
    client.cork();
    for (const part of parts) full = !client.write(part) || full;
    client.uncork();
    if (full) {
      gateway.pause();
      client.once('drain', () => gateway.resume());
    }
  });
  gateway.once('end', () => client.end());
}
