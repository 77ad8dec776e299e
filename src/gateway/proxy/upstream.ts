/**
 * Opens an authenticated connection to a target with its service credentials. Users never see these credentials:
 * they authenticate to the gateway with their own dbgate credential, and this login happens on their behalf.
 */
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls, TLSSocket } from 'node:tls';
import { serialize } from 'pg-protocol';
import { isLoopbackHost, type TargetConfig } from '../config/load.js';
import { parseErrorFields } from '../wire/backend-messages.js';
import { cancelRequest, sslRequest, startupMessage } from '../wire/frontend-messages.js';
import { HandshakeReader } from '../wire/handshake-reader.js';
import { readCString } from '../wire/message-reader.js';
import { AuthenticationKind, BackendCode } from '../wire/protocol.js';
import { md5PasswordResponse, SCRAM_SHA_256, ScramClientSession } from '../wire/scram-client.js';

/** An upstream session ready for queries. */
export interface UpstreamConnection {
  socket: Socket | TLSSocket;
  /** The raw ParameterStatus messages the server sent during startup, to replay to the client unchanged. */
  parameterStatusMessages: Buffer[];
  /** The server's BackendKeyData, kept by the gateway; the client gets a key of the gateway's own. */
  processId: number;
  secretKey: number;
  /** Bytes after ReadyForQuery that arrived with it (normally none). */
  leftover: Buffer[];
  /** For plain TCP: reads go to one reused buffer (ReusedReads) instead of 'data' events. */
  reads?: ReusedReads;
}

/** What libuv reads at most at once, and Node allocates per read otherwise. */
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * The reads of a plain-TCP upstream into one reused buffer (Node's `onread`), instead of a new 64 KiB buffer per read.
 * A million-row result otherwise leaves a dead 64 KiB buffer per read for the garbage collector, and glibc keeps the
 * memory they held long after (the gateway's RSS grew by ~80 MB while streaming). A chunk handed to the consumer is a
 * view of the buffer, valid until the next read: whoever keeps its bytes longer copies them, and a write that still
 * holds a view when the consumer returns must be reported with `lend()` — the next read then goes to a new buffer.
 * Until a consumer is set (the login), chunks are copied and emitted as 'data' events for the handshake reader.
 */
export class ReusedReads {
  private buffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  private lent = false;
  private socket: Socket | undefined;
  /** Takes every chunk once the login is done. */
  consumer: ((chunk: Buffer) => void) | null = null;

  /** The `onread` option of `net.connect` for the socket these reads belong to (`attach` it once created). */
  readonly onread = {
    buffer: (): Buffer => {
      if (this.lent) {
        this.buffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
        this.lent = false;
      }
      return this.buffer;
    },
    callback: (bytes: number, buffer: Uint8Array): boolean => {
      const chunk = (buffer as Buffer).subarray(0, bytes);
      if (this.consumer) this.consumer(chunk);
      else this.socket?.emit('data', Buffer.from(chunk));
      return true;
    },
  };

  attach(socket: Socket): void {
    this.socket = socket;
  }

  /** The chunk just handed over is still referenced (a queued write): the next read must not overwrite it. */
  lend(): void {
    this.lent = true;
  }
}

/** Why the upstream login failed, in words fit for the client (never the service credentials). */
export class UpstreamError extends Error {
  readonly code = 'UPSTREAM_FAILED';
  constructor(
    message: string,
    /** The server's SQLSTATE, when the server itself refused. */
    readonly sqlState?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Startup parameters a client may pass through to the target; anything else (notably `options`) is dropped. */
export const FORWARDED_STARTUP_PARAMETERS = new Set([
  'application_name',
  'client_encoding',
  'DateStyle',
  'datestyle',
  'TimeZone',
  'timezone',
  'IntervalStyle',
  'intervalstyle',
  'extra_float_digits',
  'search_path',
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
]);

export interface ConnectUpstreamOptions {
  target: TargetConfig;
  /** The client's startup parameters; only the allow-listed ones are forwarded. */
  clientParameters: ReadonlyMap<string, string>;
  timeoutMs: number;
}

/** Plain TCP or TLS to the target, as its config says; `reads` for a plain TCP connection that reuses its buffer. */
async function openTransport(target: TargetConfig, timeoutMs: number, reads?: ReusedReads): Promise<Socket | TLSSocket> {
  const tcp = await new Promise<Socket>((resolve, reject) => {
    const socket = connectTcp({ host: target.host, port: target.port, ...(reads ? { onread: reads.onread } : {}) });
    reads?.attach(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    const timer = setTimeout(() => socket.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  if (target.tls === 'disable') return tcp;

  const reader = new HandshakeReader(tcp);
  tcp.write(sslRequest());
  const answer = await reader.readByte();
  reader.detach();
  if (answer !== 0x53 /* 'S' */) {
    tcp.destroy();
    throw new UpstreamError(`target ${target.name} does not accept TLS, but its config requires it`);
  }
  return new Promise<TLSSocket>((resolve, reject) => {
    const tls = connectTls({
      socket: tcp,
      // SNI carries host names only (RFC 6066); an IP address is verified against the certificate's IP SANs.
      ...(isIP(target.host) ? {} : { servername: target.host }),
      ...(target.ca ? { ca: target.ca } : {}),
      rejectUnauthorized: target.tls === 'verify-full',
    });
    tls.setNoDelay(true);
    tls.once('secureConnect', () => resolve(tls));
    tls.once('error', reject);
  });
}

/** Connects and logs in to `target`; resolves once the server reports ReadyForQuery. */
export async function connectUpstream(options: ConnectUpstreamOptions): Promise<UpstreamConnection> {
  const { target } = options;
  let socket: Socket | TLSSocket;
  // TLS reads its records from the socket itself: a reused buffer is for plain TCP only.
  const reads = target.tls === 'disable' ? new ReusedReads() : undefined;
  try {
    socket = await openTransport(target, options.timeoutMs, reads);
  } catch (error) {
    if (error instanceof UpstreamError) throw error;
    throw new UpstreamError(`cannot reach target ${target.name}: ${(error as Error).message}`, undefined, {
      cause: error,
    });
  }
  const reader = new HandshakeReader(socket);
  const deadline = setTimeout(
    () => socket.destroy(new Error(`login timed out after ${options.timeoutMs} ms`)),
    options.timeoutMs,
  );
  try {
    const parameters = new Map<string, string>([
      ['user', target.user],
      ['database', target.database],
    ]);
    for (const [name, value] of options.clientParameters) {
      if (FORWARDED_STARTUP_PARAMETERS.has(name)) parameters.set(name, value);
    }
    socket.write(startupMessage(parameters));

    const parameterStatusMessages: Buffer[] = [];
    let processId = 0;
    let secretKey = 0;
    let scram: ScramClientSession | null = null;
    for (;;) {
      const message = await reader.readMessage();
      switch (message.type) {
        case BackendCode.Authentication: {
          const kind = message.body.readInt32BE(0);
          scram = await answerAuthentication(socket, target, kind, message.body, scram);
          break;
        }
        case BackendCode.ParameterStatus:
          // Copied: `raw` may be a view into a chunk that is reused after the handshake.
          parameterStatusMessages.push(Buffer.from(message.raw));
          break;
        case BackendCode.BackendKeyData:
          processId = message.body.readInt32BE(0);
          secretKey = message.body.readInt32BE(4);
          break;
        case BackendCode.NoticeResponse:
        case BackendCode.NegotiateProtocolVersion:
          break;
        case BackendCode.ErrorResponse: {
          const fields = parseErrorFields(message.body);
          throw new UpstreamError(`target ${target.name} refused the login: ${fields['M'] ?? 'unknown error'}`, fields['C']);
        }
        case BackendCode.ReadyForQuery:
          return { socket, parameterStatusMessages, processId, secretKey, leftover: reader.detach(), ...(reads ? { reads } : {}) };
        default:
          throw new UpstreamError(`target ${target.name} sent unexpected message 0x${message.type.toString(16)} during login`);
      }
    }
  } catch (error) {
    reader.detach();
    socket.destroy();
    if (error instanceof UpstreamError) throw error;
    throw new UpstreamError(`login to target ${target.name} failed: ${(error as Error).message}`, undefined, {
      cause: error,
    });
  } finally {
    clearTimeout(deadline);
  }
}

/** Answers one AuthenticationRequest; returns the SCRAM session while an exchange is in progress. */
async function answerAuthentication(
  socket: Socket | TLSSocket,
  target: TargetConfig,
  kind: number,
  body: Buffer,
  scram: ScramClientSession | null,
): Promise<ScramClientSession | null> {
  const password = (): string => {
    if (!target.password) {
      throw new UpstreamError(`target ${target.name} asks for a password, but its config has none`);
    }
    return target.password.reveal();
  };
  switch (kind) {
    case AuthenticationKind.Ok:
      return null;
    case AuthenticationKind.CleartextPassword:
      if (!(socket instanceof TLSSocket) && !isLoopbackHost(target.host)) {
        throw new UpstreamError(`target ${target.name} asks for a clear-text password over an unencrypted connection; enable tls for it`);
      }
      socket.write(serialize.password(password()));
      return null;
    case AuthenticationKind.MD5Password:
      socket.write(serialize.password(md5PasswordResponse(target.user, password(), body.subarray(4, 8))));
      return null;
    case AuthenticationKind.SASL: {
      const mechanisms: string[] = [];
      let offset = 4;
      while (offset < body.length && body[offset] !== 0) {
        const name = readCString(body, offset);
        mechanisms.push(name.value);
        offset = name.next;
      }
      if (!mechanisms.includes(SCRAM_SHA_256)) {
        throw new UpstreamError(`target ${target.name} offers only ${mechanisms.join(', ')}; the gateway speaks ${SCRAM_SHA_256}`);
      }
      const session = new ScramClientSession(password());
      socket.write(serialize.sendSASLInitialResponseMessage(SCRAM_SHA_256, session.clientFirstMessage()));
      return session;
    }
    case AuthenticationKind.SASLContinue: {
      if (!scram) throw new UpstreamError('server sent SASLContinue without a SASL exchange');
      socket.write(serialize.sendSCRAMClientFinalMessage(await scram.clientFinalMessage(body.toString('utf8', 4))));
      return scram;
    }
    case AuthenticationKind.SASLFinal: {
      if (!scram) throw new UpstreamError('server sent SASLFinal without a SASL exchange');
      scram.verifyServerFinal(body.toString('utf8', 4));
      return null;
    }
    default:
      throw new UpstreamError(`target ${target.name} asks for authentication method ${kind}, which the gateway does not support`);
  }
}

/** Sends a CancelRequest for an upstream backend over a fresh connection, as the protocol requires. */
export async function cancelUpstream(target: TargetConfig, processId: number, secretKey: number): Promise<void> {
  const socket = await openTransport(target, 5_000);
  await new Promise<void>((resolve) => {
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    // The server closes the connection after reading the request; ending our side is enough.
    socket.end(cancelRequest(processId, secretKey));
  });
}
