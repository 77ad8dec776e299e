/**
 * One client connection to the gateway, from the first byte to the last, as a state machine:
 *
 *   startup ──SSLRequest──▶ (TLS) ──StartupMessage──▶ password ──credential ok──▶ connecting ──▶ ready ──▶ closed
 *
 * In `ready` every message passes through the statement hook before it is forwarded, and every server message is
 * relayed back through a BackendRelay that follows boundaries without copying results.
 *
 * @see https://www.postgresql.org/docs/current/protocol-flow.html
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { serialize } from 'pg-protocol';
import type { GatewayConfig, TargetConfig } from '../config/load.js';
import { isLoopbackHost } from '../config/load.js';
import type { AuditWriter } from '../audit/audit-writer.js';
import { CredentialRejected, type CredentialAuthority, type Identity } from '../identity/credentials.js';
import type { Logger } from '../log.js';
import {
  refusal, type CompletedStatement, type ConnectionContext, type ProtocolStep, type SessionPolicyState, type StatementDecision, type StatementHook,
} from '../policy/statement-hook.js';
import { isUuid, type StateStore } from '../store/state-store.js';
import {
  authenticationRequest,
  backendKeyData,
  errorResponse,
  parseErrorFields,
  readyForQuery,
  serverFieldsMessage,
  type ErrorFields,
  type ServerErrorFields,
} from '../wire/backend-messages.js';
import { BackendRelay, type RelayAction } from '../wire/backend-relay.js';
import {
  parseStartupParameters,
  PgMessageReader,
  ProtocolViolation,
  readCString,
  type PgMessage,
} from '../wire/message-reader.js';
import {
  AuthenticationKind,
  BackendCode,
  CANCEL_REQUEST_BYTES,
  CANCEL_REQUEST_CODE,
  FrontendCode,
  GSSENC_REQUEST_CODE,
  SSL_REQUEST_CODE,
  SqlState,
  TransactionStatus,
} from '../wire/protocol.js';
import type { CancelKeyRegistry } from './cancel-keys.js';
import { cancelUpstream, connectUpstream, FORWARDED_STARTUP_PARAMETERS, UpstreamError, type UpstreamConnection } from './upstream.js';
import { NO_MASKED_COLUMNS, type MaskedColumnCatalog, type MaskedColumnKeys } from '../masking/catalog.js';
import type { Masker, MaskStyle } from '../masking/mask.js';
import { MaskingFailure, ResultMasker } from '../masking/result-masker.js';
import { withheldServerMessage } from '../masking/server-messages.js';
import { parseRowDescription, withResultFormats } from '../masking/row-messages.js';
import { cursorOverMaskedViewColumns, derivedThroughViews } from '../masking/view-lineage.js';
import { sessionEffectOf, type NameChange } from '../policy/classify.js';
import { MASKED_CURSOR, sessionEscape } from '../policy/policy.js';
import { TUNNEL_ID_PARAMETER } from '../../shared/tunnel-id.js';

/** What a session needs from the gateway around it. */
export interface ProxyDependencies {
  config: GatewayConfig;
  credentials: CredentialAuthority;
  store: StateStore;
  audit: AuditWriter;
  hook: StatementHook;
  cancelKeys: CancelKeyRegistry;
  secureContext: SecureContext;
  log: Logger;
  /** Where the policy's masked columns are in each target's catalog. */
  maskCatalog: MaskedColumnCatalog;
  /** One masker per style (all keyed alike, so hash-masked values still join). */
  maskers: Readonly<Record<MaskStyle, Masker>>;
}

type SessionState = 'startup' | 'password' | 'connecting' | 'ready' | 'closed';

/** A client must finish logging in within this time, like PostgreSQL's authentication_timeout. */
const LOGIN_TIMEOUT_MS = 30_000;
/**
 * Largest message accepted before authentication (PostgreSQL: PG_MAX_AUTH_TOKEN_LENGTH, 64 kB). A credential is at
 * most 8 kB; an unauthenticated client must not make the gateway buffer more.
 */
const MAX_LOGIN_MESSAGE_BYTES = 65_536;

/**
 * A statement sent to the server whose answer has not fully arrived. The server answers strictly in order, so the
 * head of the queue is always the one the next response belongs to.
 */
interface InFlight {
  /**
   * query/function-call: ends at ReadyForQuery. execute: at CommandComplete & co. sync: at ReadyForQuery.
   * refused-step: a Parse or Bind the gateway replaced; ends at the placeholder's ErrorResponse. describe: a Describe of
   * a masked statement or portal (not a statement of its own: never audited); ends at RowDescription or NoData.
   */
  kind: 'query' | 'execute' | 'sync' | 'function-call' | 'refused-step' | 'search-path' | 'describe';
  step: ProtocolStep;
  text: string;
  startedAt: number;
  rows: number;
  dataRowsAtStart: number;
  sqlState: string | undefined;
  /** The policy's decision; for deny/hold the server's error for the placeholder is swapped for its error. */
  decision: StatementDecision;
  /** Result columns whose values were masked, for the audit record (absent: none). */
  maskedColumns: Set<string> | undefined;
  /** execute and describe: the prepared statement (or portal) they refer to. */
  prepared: PreparedStatement | undefined;
  /** execute of a masked statement: the result formats its portal was bound with (`portalFormats`). */
  resultFormats?: readonly number[] | undefined;
}

/** A prepared statement or portal: its text and the decision taken when it was parsed (or last bound). */
interface PreparedStatement {
  text: string;
  decision: StatementDecision;
  /**
   * The session's search_path and catalog read `decision` was taken on. PostgreSQL parses a prepared statement again
   * when the search_path changed since (and after DDL on what it uses), so its Binds are judged again when these are
   * not the session's now (both are replaced, never changed in place).
   */
  searchPath?: readonly string[];
  catalog?: SessionPolicyState['catalog'] | undefined;
  /**
   * For masked statements: the RowDescription the server gave when the statement or a portal of it was described.
   * Drivers execute a described statement again without describing it (pgjdbc once it prepared a statement on the
   * server); its rows are then masked column by column with this, as they were the first time.
   */
  rowDescription?: Buffer;
}

/** Writes up to this size are copied out of the upstream's reused read buffer rather than lent (Node's pool size / 2). */
const SMALL_WRITE_BYTES = Buffer.poolSize >>> 1;

/**
 * A statement sent after a search_path change or DDL in the same extended-protocol pipeline, before its Sync: the
 * server resolves its names with the new search_path and catalog, which the gateway learns only after the Sync (or
 * the old ones, if the change failed or was rolled back in between). It cannot be judged, so it is refused.
 */
const SESSION_CHANGE_PENDING = {
  rule: 'builtin:session-change-pending',
  message: 'dbgate: this statement follows a search_path or schema change in the same pipeline, so dbgate cannot tell which tables it names',
  hint: 'end the pipeline with Sync after the statement that changes search_path or the schema, then send this one (drivers that sync after every statement do this already)',
};

/**
 * Statements that use relations after a change to what relation names stand for, before it is committed: the
 * catalog the gateway judges on (read on a connection of its own) does not show the change yet.
 */
const UNCOMMITTED_SCHEMA = {
  rule: 'builtin:uncommitted-schema',
  message: 'dbgate: this session changed the schema in this transaction (CREATE VIEW, a rename…) and dbgate judges statements on the committed schema, which does not show that change yet',
  hint: 'COMMIT (or ROLLBACK) the schema change first, then run this statement; statements that name no relation, and DDL that only defines objects, still run meanwhile',
  sameMessage: 'dbgate: this message uses relations after changing the schema (CREATE VIEW, a rename…) in the same message, and dbgate judges statements on the committed schema, which does not show that change before it commits',
  sameMessageHint: 'send the schema change in a message of its own (and COMMIT it if you are in a transaction block), then the statements that use it',
};

/** A Bind of a prepared statement that was not parsed through the gateway (PREPARE in SQL, or none at all). */
const UNKNOWN_PREPARED = {
  rule: 'builtin:unknown-prepared-statement',
  message: 'dbgate: this Bind names a prepared statement that was not prepared through the extended protocol, so dbgate never judged it',
  hint: 'prepare it with Parse (your driver\'s prepared statements), or send the statement itself',
};

/** An Execute of a portal that was not bound through the gateway: an SQL cursor (DECLARE), or none at all. */
const UNKNOWN_PORTAL = {
  rule: 'builtin:unknown-portal',
  message: 'dbgate: this Execute names a portal that was not bound through the extended protocol (a cursor DECLAREd in SQL, say), so dbgate cannot tell what its rows are',
  hint: 'read an SQL cursor with FETCH, or bind the statement with Bind',
};

/** What a client sends during COPY FROM STDIN: never judged, and a held COPY cannot end without it. */
const COPY_FROM_CLIENT: ReadonlySet<number> = new Set([FrontendCode.CopyData, FrontendCode.CopyDone, FrontendCode.CopyFail]);

/** A statement naming a relation the catalog does not know has it read again, unless the read is younger than this. */
const CATALOG_RECHECK_MS = 1_000;

/** A statement's masked columns when none was masked. */
const NO_COLUMNS: readonly string[] = Object.freeze([]);

/** For Execute/Sync of statements the gateway never saw parsed (nothing to judge; they fail upstream). */
const UNKNOWN_STATEMENT: StatementDecision = { action: 'allow', rule: 'builtin:unknown-statement', changesSchema: false };

function isRefusal(decision: StatementDecision): decision is StatementDecision & { error: ErrorFields } {
  return (decision.action === 'deny' || decision.action === 'hold') && decision.error !== undefined;
}

/** No result format codes: every column in text. */
const ALL_TEXT: readonly number[] = Object.freeze([]);

/**
 * The result format codes a Bind message asks for (row-messages.ts `withResultFormats`). Bind body after the statement
 * name: Int16 nParamFormats, Int16[] formats, Int16 nParams, (Int32 length, bytes)[], Int16 nResultFormats, Int16[].
 */
function bindResultFormats(body: Buffer, offset: number): readonly number[] {
  let at = offset;
  const parameterFormats = body.readInt16BE(at);
  at += 2 + 2 * parameterFormats;
  const parameters = body.readInt16BE(at);
  at += 2;
  for (let i = 0; i < parameters; i += 1) {
    const length = body.readInt32BE(at);
    at += 4 + Math.max(0, length);
  }
  const count = body.readInt16BE(at);
  if (count === 0) return ALL_TEXT;
  at += 2;
  const formats: number[] = [];
  for (let i = 0; i < count; i += 1) formats.push(body.readInt16BE(at + 2 * i));
  return formats;
}

/**
 * Statement text a denial is replaced with upstream. It is a syntax error on every PostgreSQL version, so the server
 * rejects it without touching anything, and the client then sees exactly the effects of an error at that point:
 * an aborted transaction block, a discarded pipeline up to Sync. Its error is replaced by the denial on the way back.
 */
const DENIAL_PLACEHOLDER_SQL = 'dbgate denied';

/** The placeholder as the unnamed statement's Parse: what stands in for a refused Bind or Execute. */
const DENIAL_STEP = serialize.parse({ name: '', text: DENIAL_PLACEHOLDER_SQL });

export class ClientSession {
  readonly connectionId = `c-${randomBytes(6).toString('hex')}`;
  private state: SessionState = 'startup';
  private client: Socket | TLSSocket;
  private readonly reader: PgMessageReader;
  private startupParameters = new Map<string, string>();
  /** The id of the `dbgate connect` tunnel this connection came through (absent for other clients). */
  private tunnelId: string | undefined;
  private identity: Identity | undefined;
  private target: TargetConfig | undefined;
  private context: ConnectionContext | undefined;
  private upstream: UpstreamConnection | undefined;
  private relay: BackendRelay | undefined;
  private clientKey: { processId: number; secretKey: number } | undefined;
  private readonly inFlight: InFlight[] = [];
  /**
   * Statements whose answer is in the chunk being relayed. They are recorded once it is written: the client's answer
   * does not wait for the audit bookkeeping (which cannot refuse anything any more; `decideStatement` gates on it).
   */
  private readonly answered: CompletedStatement[] = [];
  /** Statement texts by prepared-statement name ("" is the unnamed one) and by portal name. */
  private readonly statements = new Map<string, PreparedStatement>();
  private readonly portals = new Map<string, PreparedStatement>();
  /**
   * The result formats each portal of a masked statement was bound with: a description kept from an earlier Describe
   * may have been answered for a portal bound with others.
   */
  private readonly portalFormats = new Map<string, readonly number[]>();
  /** How many in-flight statements have a mask decision (DataRows are inspected while > 0). */
  private maskedInFlight = 0;
  private currentMasker: ResultMasker | null = null;
  /** The target's masking catalog (masked columns and view columns), as of the last statements sent. */
  private maskedKeys: MaskedColumnKeys = NO_MASKED_COLUMNS;
  private dataRows = 0;
  private transactionStatus = TransactionStatus.Idle;
  private busy = false;
  /**
   * Client messages that are judged wait (`holdUntilAnswered`, `doubtSearchPath`). COPY data still passes: it belongs
   * to a statement already sent, which cannot finish (and end the hold) without it.
   */
  private held = false;
  /** Client messages wait for the target's masking catalog to be read again (adoptMaskingCatalog). */
  private awaitingCatalog = false;
  /** Client messages wait for the audit backlog to shrink (`holdForAudit`). */
  private awaitingAudit = false;
  /** A message held back until the catalog is read again (`catalogMissesRelation`); handled before any other. */
  private deferred: PgMessage | undefined;
  /**
   * The tracked search_path may differ from the server's: a statement that changes it finished (it may have been
   * rolled back, partly, or set LOCAL), or a transaction in which it changed ended. Until the gateway has asked the
   * server (SHOW search_path, its answer kept from the client), client messages wait: no decision is taken on a
   * search_path that may be wrong.
   */
  private searchPathUnsure = false;
  /** search_path changed since the server last confirmed it outside a transaction: a COMMIT/ROLLBACK may move it. */
  private searchPathChangedSinceIdle = false;
  /**
   * An Execute that changes search_path or the schema was sent and its pipeline's Sync was not yet: statements sent
   * before that Sync are refused (SESSION_CHANGE_PENDING), and the Sync holds client messages until it is answered.
   */
  private sessionChangeInPipeline = false;
  /** Client messages wait until everything sent is answered (`holdUntilAnswered`). */
  private heldForAnswers = false;
  /**
   * DDL ran in the transaction still open. The catalog the gateway reads on its own connection does not show it
   * before the commit; when the transaction ends, the catalog is read again (endOfTransactionSchema).
   */
  private schemaChangedInTransaction = false;
  /**
   * Relation names whose meaning DDL of the open transaction changed (CREATE VIEW, a rename…). Until it ends,
   * statements that use them — or views, which may read them, or relations the catalog does not know — are refused
   * (UNCOMMITTED_SCHEMA, `uncommittedSchemaRefusal`).
   */
  private readonly redefinedNames = new Set<string>();
  /** Tables created in the open transaction: plain tables, though the catalog does not know them yet. */
  private readonly createdTables = new Set<string>();
  private readonly loginTimer: NodeJS.Timeout;
  private readonly onClientData = (chunk: Buffer): void => this.receive(chunk);

  constructor(
    private readonly rawSocket: Socket,
    private readonly deps: ProxyDependencies,
    private readonly onClosed: (session: ClientSession) => void,
  ) {
    this.client = rawSocket;
    this.reader = new PgMessageReader({ maxMessageBytes: MAX_LOGIN_MESSAGE_BYTES });
    rawSocket.setNoDelay(true);
    rawSocket.setKeepAlive(true, 30_000);
    rawSocket.on('data', this.onClientData);
    rawSocket.on('error', () => this.close());
    rawSocket.on('close', () => this.close());
    this.loginTimer = setTimeout(() => {
      if (this.state !== 'ready') this.fatal(SqlState.protocolViolation, 'dbgate: login timed out', undefined);
    }, LOGIN_TIMEOUT_MS);
  }

  get clientAddress(): string {
    return `${this.rawSocket.remoteAddress ?? '?'}:${this.rawSocket.remotePort ?? '?'}`;
  }

  /** The identity this connection authenticated as, once it has. */
  get sessionId(): string | undefined {
    return this.identity?.sessionId;
  }

  /** Ends the connection from the gateway's side with a FATAL error the client can read. */
  terminate(code: (typeof SqlState)[keyof typeof SqlState], message: string, hint?: string): void {
    this.fatal(code, message, hint);
  }

  private receive(chunk: Buffer): void {
    this.reader.push(chunk);
    this.pump();
  }

  /**
   * Handles every complete buffered message the current state allows. `catalogChecked`: the masking catalog was
   * just read for this session (see `adoptMaskingCatalog`).
   */
  private pump(catalogChecked = false): void {
    if (this.busy || this.awaitingCatalog || this.awaitingAudit || this.state === 'closed') return;
    const toUpstream: Buffer[] = [];
    try {
      for (;;) {
        // Handlers change state and `busy` as they go (TLS upgrade, login): re-read them on every turn.
        const state = this.state as SessionState;
        if (this.busy || this.awaitingCatalog || this.awaitingAudit || state === 'closed' || state === 'connecting') break;
        if (state === 'ready') {
          if (!catalogChecked) {
            catalogChecked = true;
            if (!this.adoptMaskingCatalog()) break;
          }
          if (this.deps.audit.holding) {
            this.holdForAudit();
            break;
          }
        }
        const message = this.deferred ?? this.reader.next();
        this.deferred = undefined;
        if (!message) break;
        if (this.held && state === 'ready' && !COPY_FROM_CLIENT.has(message.type)) {
          this.deferred = message;
          break;
        }
        if (this.state === 'startup') this.handleStartupPacket(message);
        else if (this.state === 'password') this.handlePassword(message);
        else if (!this.handleProxyMessage(message, toUpstream)) {
          // Judged once the catalog has been read again: the relation it names may be a view the policy must see
          // through. When another session already has the new read, the message is handled on the next turn.
          this.deferred = message;
          if (!this.adoptMaskingCatalog()) break;
        }
      }
    } catch (error) {
      if (error instanceof ProtocolViolation) {
        this.deps.log.log('warn', 'client.protocol_violation', { connection: this.connectionId, reason: error.message });
        this.fatal(SqlState.protocolViolation, `dbgate: invalid message from client: ${error.message}`, undefined);
        return;
      }
      this.internalError(error);
      return;
    }
    if (toUpstream.length > 0) this.sendUpstream(toUpstream);
  }

  // ── startup ──────────────────────────────────────────────────────────────────────────────────────────────────

  private handleStartupPacket(message: PgMessage): void {
    const code = message.body.readInt32BE(0);
    if (code === SSL_REQUEST_CODE) {
      if (this.client instanceof TLSSocket) throw new ProtocolViolation('SSLRequest inside TLS');
      // Bytes after the SSLRequest and before the TLS handshake could be injected in plaintext by a man in the
      // middle (CVE-2021-23214): refuse them.
      if (this.reader.bufferedBytes > 0) throw new ProtocolViolation('data received after SSLRequest');
      this.upgradeToTls();
      return;
    }
    if (code === GSSENC_REQUEST_CODE) {
      // No GSSAPI encryption here; 'N' tells the client to go on with SSLRequest or plain startup.
      this.client.write(Buffer.from('N'));
      return;
    }
    if (code === CANCEL_REQUEST_CODE) {
      if (message.raw.length !== CANCEL_REQUEST_BYTES) throw new ProtocolViolation('malformed CancelRequest');
      this.handleCancelRequest(message.body.readInt32BE(4), message.body.readInt32BE(8));
      return;
    }
    if (code >> 16 !== 3) {
      this.fatal(SqlState.featureNotSupported, `dbgate: unsupported frontend protocol ${code >> 16}.${code & 0xffff}`,
        'use a client that speaks protocol 3.0 (any PostgreSQL client since 7.4)');
      return;
    }
    // Protocol 3.x: we speak 3.0; libpq accepts a 3.0 server answering a 3.2 request without negotiation when
    // it asked for 3.0, and newer clients fall back on NegotiateProtocolVersion, which the upstream would send.
    this.startupParameters = parseStartupParameters(message.body);
    this.reader.expectStartupPacket = false;
    const plaintext = !(this.client instanceof TLSSocket);
    if (plaintext && this.deps.config.tls.require) {
      this.fatal(SqlState.invalidAuthorizationSpecification, 'dbgate: this gateway requires TLS',
        'connect with sslmode=require (or use: dbgate connect <target>)');
      return;
    }
    if (plaintext && !isLoopbackHost(this.rawSocket.remoteAddress?.replace(/^::ffff:/, '') ?? '')) {
      this.fatal(SqlState.invalidAuthorizationSpecification, 'dbgate: TLS is required for connections from other hosts',
        'connect with sslmode=require');
      return;
    }
    if (!this.startupParameters.get('user')) {
      this.fatal(SqlState.invalidAuthorizationSpecification, 'dbgate: no user name in the startup message', undefined);
      return;
    }
    // The gateway's own parameter, consumed here: it is neither a session setting to judge nor one to forward.
    const tunnelId = this.startupParameters.get(TUNNEL_ID_PARAMETER);
    this.startupParameters.delete(TUNNEL_ID_PARAMETER);
    if (tunnelId !== undefined && !isUuid(tunnelId)) {
      // It goes into a uuid column of the audit trail. A malformed one would fail the write of its whole batch, again
      // on every retry, and the gateway would refuse everyone's statements from then on (fail closed): refused here.
      this.fatal(SqlState.protocolViolation, `dbgate: the startup parameter ${TUNNEL_ID_PARAMETER} must be a UUID`,
        `it identifies a dbgate connect tunnel; connect through dbgate connect, or leave ${TUNNEL_ID_PARAMETER} out`);
      return;
    }
    this.tunnelId = tunnelId;
    this.state = 'password';
    this.client.write(authenticationRequest(AuthenticationKind.CleartextPassword));
  }

  private upgradeToTls(): void {
    this.busy = true;
    this.rawSocket.off('data', this.onClientData);
    this.rawSocket.write(Buffer.from('S'));
    const tls = new TLSSocket(this.rawSocket, {
      isServer: true,
      secureContext: this.deps.secureContext,
      // PostgreSQL clients do not use ALPN by default; accept them as they are.
    });
    tls.setNoDelay(true);
    tls.on('secure', () => {
      this.client = tls;
      this.busy = false;
      this.pump();
    });
    tls.on('data', this.onClientData);
    tls.on('error', (error) => {
      this.deps.log.log('info', 'client.tls_failed', { connection: this.connectionId, reason: error.message });
      this.close();
    });
    tls.on('close', () => this.close());
  }

  private handleCancelRequest(processId: number, secretKey: number): void {
    this.state = 'closed';
    this.client.end();
    const { cancelKeys, log } = this.deps;
    cancelKeys.find(processId, secretKey).then((backend) => {
      if (!backend) return; // unknown keys are ignored silently, as PostgreSQL does
      return cancelUpstream(backend.target, backend.processId, backend.secretKey).catch((error: unknown) => {
        log.log('warn', 'cancel.failed', { target: backend.target.name, reason: (error as Error).message });
      });
    }, (error: unknown) => log.log('warn', 'cancel.lookup_failed', { reason: (error as Error).message }));
  }

  // ── authentication ───────────────────────────────────────────────────────────────────────────────────────────

  private handlePassword(message: PgMessage): void {
    if (message.type !== FrontendCode.Password) {
      throw new ProtocolViolation(`expected a password message, got 0x${message.type.toString(16)}`);
    }
    const token = readCString(message.body, 0).value;
    this.state = 'connecting';
    this.busy = true;
    this.authenticateAndConnect(token).then(
      () => {
        this.busy = false;
        this.pump();
      },
      (error: unknown) => this.internalError(error),
    );
  }

  private async authenticateAndConnect(token: string): Promise<void> {
    const { config, credentials, store, log } = this.deps;
    const requestedUser = this.startupParameters.get('user') ?? '';
    const targetName = this.startupParameters.get('database') ?? requestedUser;
    let identity: Identity;
    try {
      identity = await credentials.verifyCredential(token);
    } catch (error) {
      if (error instanceof CredentialRejected) {
        this.refuse(requestedUser, targetName, error.reason);
        const hint = error.reason === 'expired' ? 'your dbgate login expired - run: dbgate login' : 'run: dbgate login, then connect with: dbgate connect <target>';
        this.fatal(SqlState.invalidPassword, `dbgate: ${error.message}`, hint);
        return;
      }
      throw error;
    }
    if (!isUuid(identity.sessionId) || (await store.sessionState(identity.sessionId)) !== 'active') {
      this.refuse(identity.subject, targetName, 'session revoked or unknown');
      this.fatal(SqlState.invalidPassword, 'dbgate: this credential has been revoked', 'run: dbgate login');
      return;
    }
    if (requestedUser !== identity.subject && requestedUser !== identity.email) {
      this.refuse(identity.subject, targetName, 'user mismatch');
      this.fatal(SqlState.invalidAuthorizationSpecification,
        `dbgate: the credential belongs to "${identity.subject}", but the connection asked for user "${requestedUser}"`,
        `connect with user=${identity.subject}`);
      return;
    }
    if (asksForReplication(this.startupParameters.get('replication'))) {
      // A walsender session streams WAL or table copies, not statements: nothing of it could be judged, masked or
      // audited. Said plainly here rather than dropped: the client would otherwise get a normal session and fail on
      // its first replication command (or, for physical replication, on the database name "replication").
      this.refuse(identity.subject, targetName, 'replication connection');
      this.fatal(SqlState.featureNotSupported, 'dbgate: replication connections are not supported through the gateway',
        'a replication stream would carry every row past policy, masking and audit; ask the database operator for a replication path of its own');
      return;
    }
    const target = config.targets.get(targetName);
    if (!target) {
      this.refuse(identity.subject, targetName, 'unknown target');
      this.fatal(SqlState.invalidCatalogName, `dbgate: target "${targetName}" does not exist on this gateway`,
        'run: dbgate targets   (the database name is the target name)');
      return;
    }
    this.identity = identity;
    this.target = target;
    // Session parameters from the startup message take effect upstream before the first statement: judge them
    // like the SET statements they are (a non-UTF8 client_encoding or a role switch is refused).
    for (const [name, value] of this.startupParameters) {
      if (!FORWARDED_STARTUP_PARAMETERS.has(name)) continue;
      const escape = sessionEscape(sessionEffectOf(name, value, 'startup'));
      if (escape) {
        this.refuse(identity.subject, targetName, `startup parameter ${name}`);
        this.fatal(SqlState.insufficientPrivilege, `dbgate: ${escape.what} is not allowed: ${escape.why}`, escape.hint);
        return;
      }
    }
    this.context = {
      connectionId: this.connectionId,
      identity,
      target,
      clientAddress: this.clientAddress,
      tunnelId: this.tunnelId,
      session: { searchPath: startupSearchPath(this.startupParameters.get('search_path')) },
    };
    try {
      this.useCatalog(await this.deps.maskCatalog.resolve(target));
    } catch (error) {
      // Without the positions of masked columns, masked data could pass as clean: fail closed.
      log.log('warn', 'masking.catalog_failed', { connection: this.connectionId, target: target.name, reason: (error as Error).message });
      this.fatal(SqlState.sqlclientUnableToEstablishSqlconnection, `dbgate: cannot prepare data masking for target "${target.name}"`,
        'try again; tell the gateway operator if it persists');
      return;
    }

    let upstream: UpstreamConnection;
    try {
      upstream = await connectUpstream({
        target,
        clientParameters: this.startupParameters,
        timeoutMs: config.limits.upstreamConnectTimeoutMs,
      });
    } catch (error) {
      const reason = error instanceof UpstreamError ? error.message : 'internal error';
      log.log('warn', 'upstream.login_failed', { connection: this.connectionId, target: target.name, reason });
      this.fatal(SqlState.sqlclientUnableToEstablishSqlconnection, `dbgate: cannot connect to target "${target.name}"`,
        'the target is unavailable; try again, and tell the gateway operator if it persists');
      return;
    }
    if (this.state === 'closed') {
      upstream.socket.destroy();
      return;
    }
    this.attachUpstream(upstream);
    this.clientKey = this.deps.cancelKeys.register({ target, processId: upstream.processId, secretKey: upstream.secretKey });
    clearTimeout(this.loginTimer);
    this.client.cork();
    this.client.write(authenticationRequest(AuthenticationKind.Ok));
    for (const parameterStatus of upstream.parameterStatusMessages) this.client.write(parameterStatus);
    this.client.write(backendKeyData(this.clientKey.processId, this.clientKey.secretKey));
    this.client.write(readyForQuery(TransactionStatus.Idle));
    this.client.uncork();
    this.state = 'ready';
    this.openedAt = Date.now();
    this.reader.maxMessageBytes = config.limits.maxMessageBytes;
    this.deps.audit.append({
      occurredAt: new Date(),
      event: 'connection.open',
      subject: identity.subject,
      actors: identity.actors,
      sessionId: identity.sessionId,
      connectionId: this.connectionId,
      clientAddress: this.clientAddress,
      tunnelId: this.tunnelId,
      target: target.name,
      outcome: 'ok',
      detail: { application_name: this.startupParameters.get('application_name') ?? null },
    });
    log.log('info', 'connection.open', { connection: this.connectionId, subject: identity.subject, target: target.name });
  }

  private refuse(subject: string, target: string, reason: string): void {
    this.deps.log.log('info', 'connection.refused', { connection: this.connectionId, subject, target, reason });
    this.deps.audit.append({
      occurredAt: new Date(),
      event: 'connection.refused',
      subject,
      connectionId: this.connectionId,
      clientAddress: this.clientAddress,
      tunnelId: this.tunnelId,
      target,
      outcome: 'denied',
      detail: { reason },
    });
  }

  // ── proxying ─────────────────────────────────────────────────────────────────────────────────────────────────

  private attachUpstream(upstream: UpstreamConnection): void {
    this.upstream = upstream;
    this.relay = new BackendRelay((type, body) => this.inspectBackendMessage(type, body), {
      onDataRow: () => {
        this.dataRows += 1;
      },
    });
    const socket = upstream.socket;
    if (upstream.reads) upstream.reads.consumer = (chunk) => this.relayFromUpstream(chunk);
    else socket.on('data', (chunk: Buffer) => this.relayFromUpstream(chunk));
    socket.on('error', (error) => {
      this.deps.log.log('warn', 'upstream.error', { connection: this.connectionId, reason: error.message });
    });
    socket.on('close', () => this.upstreamClosed());
    for (const chunk of upstream.leftover) this.relayFromUpstream(chunk);
  }

  /**
   * Makes the target's current masking catalog this session's, before more statements go upstream. When it is stale
   * (DDL ran, a result named a relation it does not know, it reached its maximum age: catalog.ts), statements wait
   * for the new read — masked results must not be planned on what the catalog was — and the connection ends if it
   * cannot be read, as at login. Returns false while waiting; `pump` runs again once the new resolution is in.
   */
  private adoptMaskingCatalog(): boolean {
    const target = this.target!;
    const keys = this.deps.maskCatalog.current(target.name);
    if (keys !== undefined) {
      this.useCatalog(keys);
      return true;
    }
    // A flag of its own, not `busy`: the search_path confirmation holds messages too, and each wait must end only
    // its own hold.
    this.awaitingCatalog = true;
    this.deps.maskCatalog.resolve(target).then(
      (fresh) => {
        this.useCatalog(fresh);
        this.awaitingCatalog = false;
        this.pump(true);
      },
      (error: unknown) => {
        this.awaitingCatalog = false;
        this.deps.log.log('warn', 'masking.catalog_failed', { connection: this.connectionId, target: target.name, reason: (error as Error).message });
        this.fatal(SqlState.sqlclientUnableToEstablishSqlconnection, `dbgate: cannot prepare data masking for target "${target.name}"`,
          'reconnect and retry; tell the gateway operator if it persists');
      },
    );
    return false;
  }

  /**
   * Holds this client's messages while the audit backlog is full and the store is still writing (AuditWriter.holding):
   * a short stall slows statements down rather than failing them. The client is not read meanwhile, so what it sends
   * waits in TCP buffers, not in the gateway. When the hold ends without room (the store failed, or stayed slow too
   * long), the statements are refused with builtin:audit-unavailable (fail closed).
   */
  private holdForAudit(): void {
    this.awaitingAudit = true;
    this.client.pause();
    void this.deps.audit.waitForRoom().then(() => {
      this.awaitingAudit = false;
      if (this.state === 'closed') return;
      // Unless the upstream's own backpressure paused the client too (sendUpstream resumes it on drain).
      if (!this.upstream?.socket.writableNeedDrain) this.client.resume();
      this.pump();
    });
  }

  /**
   * Whether `decision` was taken on a catalog snapshot that does not know a relation its statement names, and that
   * snapshot is old enough to be read again for it: a view created directly on the database since (by a migration,
   * say) must reach the policy before the statement that uses it is judged — a rule holding writes to its table, or
   * inference protection on the masked columns behind it. The snapshot is then invalidated. A relation that does not
   * exist at all costs one read per CATALOG_RECHECK_MS at most.
   */
  private catalogMissesRelation(decision: StatementDecision): boolean {
    const known = this.maskedKeys.relationNames;
    const relations = decision.usedRelations;
    if (known === null || relations === undefined || relations.every((name) => known.has(name))) return false;
    if (Date.now() - this.maskedKeys.readAt < CATALOG_RECHECK_MS) return false;
    this.deps.log.log('info', 'masking.catalog_stale', { connection: this.connectionId, target: this.target!.name });
    this.deps.maskCatalog.invalidate(this.target!.name, this.maskedKeys);
    return true;
  }

  /** Masks results and judges statements on this catalog read from now on. */
  private useCatalog(keys: MaskedColumnKeys): void {
    if (keys === this.maskedKeys) return;
    this.maskedKeys = keys;
    const session = this.context!.session;
    // Decisions taken on another catalog are not this connection's decisions any more (policy/target-catalog.ts); a
    // read that changed nothing the policy sees keeps them.
    if (session.catalog?.version !== keys.policyCatalog.version) session.catalog = keys.policyCatalog;
  }

  /**
   * Handles one client message in the proxy phase. Returns false, having done nothing, for a statement that must wait
   * for the catalog to be read again (`catalogMissesRelation`).
   */
  private handleProxyMessage(message: PgMessage, toUpstream: Buffer[]): boolean {
    const context = this.context!;
    const now = Date.now();
    switch (message.type) {
      case FrontendCode.Query: {
        const text = readCString(message.body, 0).value;
        // A Query ends a pipeline as Sync does; one sent after an unsynced change is judged on neither state.
        const decision = this.sessionChangeInPipeline ? sessionChangePending() : this.decide(context, 'query', text);
        if (this.catalogMissesRelation(decision)) return false;
        this.track(this.entry('query', 'query', text, now, decision));
        toUpstream.push(isRefusal(decision) ? serialize.query(DENIAL_PLACEHOLDER_SQL) : message.raw);
        if (decision.namesChanged) this.forgetNames(decision.namesChanged);
        this.endPipeline();
        // Messages after it are judged on the search_path and catalog it leaves, once the server has answered.
        if (changesSession(decision)) this.holdUntilAnswered();
        return true;
      }
      case FrontendCode.Parse: {
        const name = readCString(message.body, 0);
        const text = readCString(message.body, name.next).value;
        const decision = this.sessionChangeInPipeline ? sessionChangePending() : this.decide(context, 'parse', text);
        if (this.catalogMissesRelation(decision)) return false;
        if (!isRefusal(decision)) {
          this.statements.set(name.value, judgedStatement(text, decision, context.session));
          toUpstream.push(message.raw);
        } else {
          // Judged at Parse: a refused statement never exists upstream, so no later Bind/Execute can run it.
          this.statements.delete(name.value);
          this.track(this.entry('refused-step', 'parse', text, now, decision));
          toUpstream.push(serialize.parse({ name: name.value, text: DENIAL_PLACEHOLDER_SQL }));
        }
        return true;
      }
      case FrontendCode.Bind: {
        const portal = readCString(message.body, 0);
        const statementName = readCString(message.body, portal.next);
        let statement = this.statements.get(statementName.value);
        if (statement === undefined) {
          // Not parsed through this gateway: none that exists on the server (PREPARE in SQL makes one) was judged.
          statement = {
            text: `<Bind of prepared statement "${statementName.value}", not parsed through dbgate>`,
            decision: refusal(UNKNOWN_PREPARED.rule, UNKNOWN_PREPARED.message, UNKNOWN_PREPARED.hint),
          };
        } else if (this.sessionChangeInPipeline || !judgedOnNow(statement, context.session)) {
          // The server parses it again on this search_path and catalog (or on one not yet confirmed): judged again.
          const decision = this.sessionChangeInPipeline ? sessionChangePending() : this.decide(context, 'parse', statement.text);
          if (this.catalogMissesRelation(decision)) return false;
          // Kept even when refused: the statement exists on the server, and every later Bind must be judged too.
          statement = judgedStatement(statement.text, decision, context.session);
          this.statements.set(statementName.value, statement);
        }
        const { decision } = statement;
        const formats = decision.action === 'mask' ? bindResultFormats(message.body, statementName.next) : undefined;
        const refused = isRefusal(decision) ? decision
          : this.uncommittedSchemaRefusal(decision) ?? (formats && this.unreadableBinaryResult(statement, formats));
        if (refused !== undefined) return this.refuseStep('bind', portal.value, statement.text, now, refused, toUpstream);
        if (formats !== undefined) this.portalFormats.set(portal.value, formats);
        this.portals.set(portal.value, statement);
        toUpstream.push(message.raw);
        return true;
      }
      case FrontendCode.Execute: {
        const portal = readCString(message.body, 0).value;
        const prepared = this.portals.get(portal);
        if (prepared === undefined) {
          // Its rows would pass unjudged and unmasked: `DECLARE c CURSOR FOR SELECT email …`, then Execute "c".
          return this.refuseStep('execute', portal, `<Execute of portal "${portal}", not bound through dbgate>`, now,
            refusal(UNKNOWN_PORTAL.rule, UNKNOWN_PORTAL.message, UNKNOWN_PORTAL.hint), toUpstream);
        }
        // Bound before a change to the search_path or the schema: a view replaced since is planned again when it runs.
        const refused = this.sessionChangeInPipeline ? sessionChangePending() : this.uncommittedSchemaRefusal(prepared.decision);
        if (refused !== undefined) return this.refuseStep('execute', portal, prepared.text, now, refused, toUpstream);
        const execute = this.entry('execute', 'execute', prepared.text, now, prepared.decision, prepared);
        if (prepared.decision.action === 'mask') execute.resultFormats = this.portalFormats.get(portal);
        this.track(execute);
        toUpstream.push(message.raw);
        if (changesSession(prepared.decision)) this.sessionChangeInPipeline = true;
        if (prepared.decision.namesChanged) this.forgetNames(prepared.decision.namesChanged);
        return true;
      }
      case FrontendCode.Describe: {
        const kind = message.body[0];
        const name = readCString(message.body, 1).value;
        const prepared = kind === 0x53 /* 'S' */ ? this.statements.get(name) : this.portals.get(name);
        // The answer of a masked statement is kept for later Executes without a Describe (PreparedStatement).
        if (prepared?.decision.action === 'mask') {
          this.inFlight.push(this.entry('describe', 'parse', prepared.text, now, UNKNOWN_STATEMENT, prepared));
        }
        toUpstream.push(message.raw);
        return true;
      }
      case FrontendCode.Sync:
        this.track(this.entry('sync', 'execute', '', now, UNKNOWN_STATEMENT));
        toUpstream.push(message.raw);
        this.endPipeline();
        return true;
      case FrontendCode.Close: {
        const kind = message.body[0];
        const name = readCString(message.body, 1).value;
        if (kind === 0x53 /* 'S' */) this.statements.delete(name);
        else {
          this.portals.delete(name);
          this.portalFormats.delete(name);
        }
        toUpstream.push(message.raw);
        return true;
      }
      case FrontendCode.FunctionCall: {
        const decision = this.sessionChangeInPipeline ? sessionChangePending()
          : this.decide(context, 'function-call', '<fastpath function call>');
        if (isRefusal(decision)) {
          // A fastpath call has no SQL to replace: a failing simple Query stands in for it, answered in order.
          this.track(this.entry('query', 'function-call', '<fastpath function call>', now, decision));
          toUpstream.push(serialize.query(DENIAL_PLACEHOLDER_SQL));
          return true;
        }
        this.track(this.entry('function-call', 'function-call', '<fastpath function call>', now, decision));
        toUpstream.push(message.raw);
        return true;
      }
      case FrontendCode.Flush:
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        toUpstream.push(message.raw);
        return true;
      case FrontendCode.Terminate:
        toUpstream.push(message.raw);
        this.state = 'closed';
        return true;
      default:
        throw new ProtocolViolation(`unexpected message type 0x${message.type.toString(16)}`);
    }
  }

  /**
   * A Sync (or a Query, which ends a pipeline too) was sent: if the pipeline changed search_path or the schema, client
   * messages wait until the server has answered it.
   */
  private endPipeline(): void {
    if (!this.sessionChangeInPipeline) return;
    this.sessionChangeInPipeline = false;
    this.holdUntilAnswered();
  }

  /**
   * Holds client messages until the server has answered everything sent (its ReadyForQuery with nothing in flight),
   * and, when the answers left the search_path in doubt, confirmed it: a statement that changed the search_path or
   * the schema has run (or failed) by then, and what it changed is known (`applySessionEffects`).
   */
  private holdUntilAnswered(): void {
    this.heldForAnswers = true;
    this.held = true;
  }

  /** Ends the holds of `holdUntilAnswered` and `doubtSearchPath`, and handles what the client sent meanwhile. */
  private releaseHold(): void {
    this.heldForAnswers = false;
    this.held = false;
    setImmediate(() => this.pump());
  }

  /**
   * Names an SQL statement creates or drops (PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD ALL) no longer mean what the
   * gateway saw parsed or bound under them: `PREPARE s AS SELECT email …` after a harmless Parse of "s" would run
   * under that Parse's decision. Forgotten, a later Bind or Execute of the name is refused rather than misjudged.
   */
  private forgetNames(changes: readonly NameChange[]): void {
    for (const { of, name } of changes) {
      const names = of === 'statement' ? this.statements : this.portals;
      if (name === null) names.clear();
      else names.delete(name);
    }
  }

  /**
   * Refuses a Bind or an Execute: its portal is gone, and a Parse that fails stands in for it upstream, so the server
   * skips to Sync as it would after the step's own error (which the refusal replaces on the way back).
   */
  private refuseStep(step: 'bind' | 'execute', portal: string, text: string, now: number, decision: StatementDecision,
    toUpstream: Buffer[]): true {
    this.portals.delete(portal);
    this.track(this.entry('refused-step', step, text, now, decision));
    toUpstream.push(DENIAL_STEP);
    return true;
  }

  /**
   * The refusal of a Bind of a masked statement asking for binary results dbgate cannot mask or scan (undefined when
   * it can: all text, or binary columns ResultMasker reads). Which columns must be masked or scanned is known only
   * from the statement's description: drivers that ask for binary results (pgjdbc once a statement is prepared on
   * the server) have described it before.
   */
  private unreadableBinaryResult(statement: PreparedStatement, formats: readonly number[]): StatementDecision | undefined {
    if (formats.every((format) => format === 0)) return undefined;
    const { decision } = statement;
    if (statement.rowDescription === undefined) {
      return refusal(decision.rule,
        'dbgate: binary result format is available for results that are masked for you only for a statement the server has described (Describe) before the Bind, so dbgate knows which columns to mask',
        'request text format results (the default of most drivers), or wait for the answer to a Describe of the statement before binding it');
    }
    const derived = derivedThroughViews(decision.derivedOutputs, decision.outputs, this.maskedKeys.viewColumns);
    const fields = withResultFormats(parseRowDescription(statement.rowDescription), formats);
    const unreadable = new ResultMasker(fields, this.maskedKeys, this.deps.maskers, derived).unsupportedBinaryColumns;
    if (unreadable.length === 0) return undefined;
    return refusal(decision.rule,
      `dbgate: binary result format is not available for ${unreadable.map((name) => `"${name}"`).join(', ')} in this result: dbgate must scan it for sensitive values, and cannot read that type in binary`,
      'request text format for those columns (or for all results)');
  }

  private decide(context: ConnectionContext, step: ProtocolStep, text: string): StatementDecision {
    const decision = this.deps.hook.decideStatement(context, { step, text });
    if (decision.action === 'mask' && cursorOverMaskedViewColumns(decision.outputs, this.maskedKeys.viewColumns)) {
      // What the policy denies for masked table columns (builtin:masked-cursor), for the view columns only the
      // catalog knows are masked: FETCH would return the computed values with nothing to tell them apart.
      return refusal(MASKED_CURSOR.ruleId, MASKED_CURSOR.message, MASKED_CURSOR.hint);
    }
    return this.uncommittedSchemaRefusal(decision) ?? decision;
  }

  /**
   * The refusal of a statement judged on a catalog that lacks a change to what relation names stand for: one made
   * earlier in the open transaction (`redefinedNames`), or earlier in the same message. Undefined when the
   * statement may run, or when nothing on the target reads the catalog (no rule or mask depends on what names mean).
   */
  private uncommittedSchemaRefusal(decision: StatementDecision): StatementDecision | undefined {
    if (isRefusal(decision) || this.maskedKeys.relationNames === null) return undefined;
    const sameMessage = decision.usedAfterRedefinition;
    if (sameMessage?.some((name) => this.mayStandForAnother(name, decision.redefinedNames))) {
      return refusal(UNCOMMITTED_SCHEMA.rule, UNCOMMITTED_SCHEMA.sameMessage, UNCOMMITTED_SCHEMA.sameMessageHint);
    }
    if (this.redefinedNames.size > 0 && decision.usedRelations?.some((name) => this.mayStandForAnother(name))) {
      return refusal(UNCOMMITTED_SCHEMA.rule, UNCOMMITTED_SCHEMA.message, UNCOMMITTED_SCHEMA.hint);
    }
    return undefined;
  }

  /**
   * Whether a relation name may stand for another relation than in the catalog, after uncommitted redefinitions: it was
   * redefined (here, or earlier in the same message), the catalog does not know it and it is no table created in this
   * transaction, or it is a view, which may read a redefined one. A table the catalog knows is what it was.
   */
  private mayStandForAnother(name: string, alsoRedefined?: readonly string[]): boolean {
    if (this.redefinedNames.has(name) || alsoRedefined?.includes(name) === true) return true;
    const known = this.maskedKeys.relationNames;
    if (known === null || this.maskedKeys.policyCatalog.views.has(name)) return true;
    return !known.has(name) && !this.createdTables.has(name);
  }

  private entry(kind: InFlight['kind'], step: ProtocolStep, text: string, now: number, decision: StatementDecision,
    prepared?: PreparedStatement): InFlight {
    return {
      kind,
      step,
      text,
      startedAt: now,
      rows: 0,
      dataRowsAtStart: this.dataRows,
      sqlState: undefined,
      decision,
      maskedColumns: undefined,
      prepared,
    };
  }

  /** Queues an in-flight entry; while any masked statement is in flight, result rows are inspected. */
  private track(entry: InFlight): void {
    this.inFlight.push(entry);
    if (entry.decision.action === 'mask') {
      this.maskedInFlight += 1;
      this.relay!.inspectDataRows = true;
    }
  }

  private sendUpstream(buffers: Buffer[]): void {
    const upstream = this.upstream?.socket;
    if (!upstream || upstream.destroyed) return;
    if (buffers.length === 1) upstream.write(buffers[0]!);
    else {
      upstream.cork();
      for (const buffer of buffers) upstream.write(buffer);
      upstream.uncork();
    }
    if (this.state === 'closed') {
      upstream.end();
      return;
    }
    // Backpressure: stop reading from the client while the server is not keeping up (COPY FROM, huge Binds).
    // One drain listener per pause: further writes while paused must not stack listeners.
    if (upstream.writableNeedDrain && !this.client.isPaused()) {
      this.client.pause();
      upstream.once('drain', () => {
        if (!this.awaitingAudit) this.client.resume();
      });
    }
  }

  private relayFromUpstream(chunk: Buffer): void {
    let out: Buffer[];
    try {
      out = this.relay!.relay(chunk);
    } catch (error) {
      if (error instanceof MaskingFailure) {
        this.deps.log.log('warn', 'masking.failed', { connection: this.connectionId, reason: error.message });
        // Nothing of the unmaskable result is sent; the connection cannot continue mid-result.
        this.client.destroy();
        this.close();
        return;
      }
      this.internalError(error);
      return;
    }
    if (this.state === 'closed' || this.client.destroyed) {
      this.recordAnswered();
      return;
    }
    // One write per chunk: a masked result turns a chunk into one buffer per rewritten row, and a socket write costs
    // far more than copying a few kilobytes.
    if (out.length === 1) {
      const only = out[0]!;
      if (only.buffer !== chunk.buffer || this.upstream?.reads === undefined) this.client.write(only);
      else if (only.length <= SMALL_WRITE_BYTES) {
        // A view of the upstream's reused read buffer (ReusedReads). Small: copied (from Node's buffer pool), so the
        // buffer stays ours whatever the socket does — a TLS socket reports its writes pending until they are sent.
        this.client.write(Buffer.from(only));
      } else {
        this.client.write(only);
        // A write the socket could not finish at once still holds these bytes: the next read must go elsewhere.
        if (this.client.writableLength > 0) this.upstream.reads.lend();
      }
    } else if (out.length > 1) this.client.write(Buffer.concat(out));
    this.recordAnswered();
    // Backpressure: stop reading from the server while the client is slow, so a huge result stays in the server.
    if (this.client.writableNeedDrain && this.upstream && !this.upstream.socket.isPaused()) {
      this.upstream.socket.pause();
      this.client.once('drain', () => this.upstream?.socket.resume());
    }
  }

  /**
   * Follows the server's answers to attribute them to statements, swaps the placeholder errors of refused
   * statements for their denials, and masks result rows of masked statements.
   */
  private inspectBackendMessage(type: number, body: Buffer): RelayAction {
    const head = this.inFlight[0];
    if (head?.kind === 'search-path') return this.searchPathAnswer(head, type, body);
    if (head?.kind === 'describe') return this.describeAnswer(head, type, body);
    const action = this.inspectClientAnswer(head, type, body);
    if (type === BackendCode.ReadyForQuery && this.inFlight.length === 0) {
      if (this.searchPathUnsure) this.confirmSearchPath();
      else if (this.heldForAnswers) this.releaseHold();
    }
    return action;
  }

  private inspectClientAnswer(head: InFlight | undefined, type: number, body: Buffer): RelayAction {
    switch (type) {
      case BackendCode.DataRow:
        // Only seen while a masked statement is in flight (the relay streams DataRows untouched otherwise).
        return this.maskDataRow(head, body);
      case BackendCode.RowDescription:
        if (head && head.decision.action === 'mask') this.startMaskedResult(body, head.decision);
        return 'forward';
      case BackendCode.CommandComplete: {
        this.endResult(head);
        if (this.searchPathChangedSinceIdle && endsTransaction(body)) this.doubtSearchPath();
        if (!head) return 'forward';
        const rows = rowsFromCommandTag(body);
        if (head.kind === 'execute') this.finish(head, 'ok', rows ?? this.dataRows - head.dataRowsAtStart);
        else head.rows += rows ?? 0;
        return 'forward';
      }
      case BackendCode.EmptyQueryResponse:
      case BackendCode.PortalSuspended:
        this.endResult(head);
        if (head?.kind === 'execute') this.finish(head, 'ok', this.dataRows - head.dataRowsAtStart);
        return 'forward';
      case BackendCode.ErrorResponse: {
        this.endResult(head);
        if (!head) return 'forward';
        const fields = parseErrorFields(body);
        head.sqlState = fields['C'];
        const refusal = isRefusal(head.decision) ? head.decision.error : undefined;
        if (head.kind === 'execute' || head.kind === 'refused-step') {
          this.finish(head, refusal ? 'denied' : 'error', 0);
          // The server now skips everything up to Sync; those statements never run.
          while (this.inFlight[0] && this.inFlight[0].kind !== 'sync') this.finish(this.inFlight[0], 'skipped', 0);
        }
        if (refusal) return { replaceWith: [errorResponse(refusal)] };
        return this.maskedServerMessage(head, BackendCode.ErrorResponse, fields);
      }
      case BackendCode.NoticeResponse:
        // Parsed only for masked statements: other notices pass as they are.
        return head?.decision.action === 'mask' ? this.maskedServerMessage(head, BackendCode.NoticeResponse, parseErrorFields(body)) : 'forward';
      case BackendCode.ReadyForQuery: {
        if (head?.kind === 'sync') this.inFlight.shift();
        else if (head?.kind === 'query' || head?.kind === 'function-call') {
          const outcome = isRefusal(head.decision) ? 'denied' : head.sqlState ? 'error' : 'ok';
          this.finish(head, outcome, head.rows || this.dataRows - head.dataRowsAtStart);
        }
        this.readyForQuery(body);
        return 'forward';
      }
      default:
        return 'forward';
    }
  }

  /**
   * An error or notice answering a masked statement, with what could show masked values withheld
   * (masking/server-messages.ts); others are forwarded as they are.
   */
  private maskedServerMessage(head: InFlight, code: BackendCode.ErrorResponse | BackendCode.NoticeResponse,
    fields: ServerErrorFields): RelayAction {
    if (head.decision.action !== 'mask') return 'forward';
    const withheld = withheldServerMessage(fields, head.text);
    return withheld ? { replaceWith: [serverFieldsMessage(code, withheld)] } : 'forward';
  }

  /** The server's answer to a Describe of a masked statement or portal: its RowDescription is kept for its Executes. */
  private describeAnswer(entry: InFlight, type: number, body: Buffer): RelayAction {
    switch (type) {
      case BackendCode.RowDescription:
        // A copy: the body is a view of a socket chunk, which must not be kept alive with it.
        entry.prepared!.rowDescription = Buffer.from(body);
        this.inFlight.shift();
        return 'forward';
      case BackendCode.NoData:
        this.inFlight.shift();
        return 'forward';
      case BackendCode.ErrorResponse:
        // The Parse, Bind or Describe before it failed (a Bind can fail: `10 / $1` is computed when planning with
        // the value). The statement the client waits for is the Execute behind: the error is its outcome.
        this.inFlight.shift();
        return this.inspectClientAnswer(this.inFlight[0], type, body);
      default:
        // ParameterDescription, and what answers the messages before it (ParseComplete, BindComplete…), notices.
        return 'forward';
    }
  }

  /**
   * A RowDescription of a masked statement: plan which columns to mask, scan or pass. `formats`: the result formats of
   * the Bind, for a description kept from an earlier Describe.
   */
  private startMaskedResult(body: Buffer, decision: StatementDecision, formats?: readonly number[]): void {
    const derived = derivedThroughViews(decision.derivedOutputs, decision.outputs, this.maskedKeys.viewColumns);
    const fields = formats === undefined ? parseRowDescription(body) : withResultFormats(parseRowDescription(body), formats);
    const masker = new ResultMasker(fields, this.maskedKeys, this.deps.maskers, derived);
    if (masker.staleCatalog && this.target) {
      // A relation newer than the catalog snapshot (its columns are masked whole in this result): read it again
      // before the next statement.
      this.deps.log.log('info', 'masking.catalog_stale', { connection: this.connectionId, target: this.target.name });
      this.deps.maskCatalog.invalidate(this.target.name, this.maskedKeys);
    }
    const unreadable = masker.unsupportedBinaryColumns;
    if (unreadable.length > 0) {
      // A binary cursor (DECLARE … BINARY CURSOR) of a type dbgate cannot read: rows that cannot be scanned must not
      // leave. Fail closed: end the connection before the first row.
      throw new MaskingFailure(`binary-format result rows of a masked statement (${unreadable.join(', ')})`);
    }
    this.currentMasker = masker;
    if (!this.relay) return;
    // Rows of a result with something to mask skip the general inspection; a result with nothing to mask (every
    // column clean by the catalog) streams untouched to its end, like an unmasked one.
    this.relay.rewriteRow = masker.needed ? (chunk, start, end) => masker.maskRow(chunk, start, end) : null;
    if (!masker.needed) this.relay.inspectDataRows = false;
  }

  private endResult(head: InFlight | undefined): void {
    if (this.currentMasker && head) for (const column of this.currentMasker.maskedColumns) (head.maskedColumns ??= new Set()).add(column);
    this.currentMasker = null;
    if (!this.relay) return;
    this.relay.rewriteRow = null;
    // The next result may be a masked statement's again (this one is still counted until it is finished).
    this.relay.inspectDataRows = this.maskedInFlight > 0;
  }

  private maskDataRow(head: InFlight | undefined, body: Buffer): RelayAction {
    let masker = this.currentMasker;
    if (!masker) {
      if (!head || head.decision.action !== 'mask') return 'forward';
      const described = head.prepared?.rowDescription;
      if (described !== undefined) {
        // Execute without Describe of a statement described before: planned on that description, in the formats
        // the portal was bound with.
        this.startMaskedResult(described, head.decision, head.resultFormats);
        masker = this.currentMasker!;
      } else {
        // Rows no RowDescription ever described: columns computed from masked ones by the statement's lineage are
        // masked whole, every other value is scanned as text. Binary results of statements not described were
        // refused at Bind.
        if (head.resultFormats?.some((format) => format !== 0)) throw new MaskingFailure('binary rows of a statement never described');
        const derived = derivedThroughViews(head.decision.derivedOutputs, head.decision.outputs, this.maskedKeys.viewColumns);
        masker = ResultMasker.scanAll(body, this.deps.maskers, derived);
        this.currentMasker = masker;
      }
    }
    if (!masker.needed) return 'forward';
    const replacement = masker.maskRow(body);
    return replacement ? { replaceWith: [replacement] } : 'forward';
  }

  /** Removes `entry` (the queue head) and queues it for the audit trail (`recordAnswered`). */
  private finish(entry: InFlight, outcome: CompletedStatement['outcome'], rows: number): void {
    if (this.inFlight[0] === entry) this.inFlight.shift();
    if (entry.kind === 'describe') return;
    if (entry.decision.action === 'mask') {
      this.maskedInFlight -= 1;
      if (this.maskedInFlight === 0 && this.relay) this.relay.inspectDataRows = false;
    }
    if (entry.decision.changesSchema && !isRefusal(entry.decision) && outcome !== 'skipped') {
      // Failed or not, part of it may have run and committed (`…; COMMIT; <error>` in one message): read again once
      // the transaction ends (endOfTransactionSchema).
      this.schemaChangedInTransaction = true;
      for (const name of entry.decision.redefinedNames ?? []) this.redefinedNames.add(name);
      for (const name of entry.decision.createdTables ?? []) this.createdTables.add(name);
    }
    if (outcome === 'ok') this.applySessionEffects(entry.decision);
    else if (entry.decision.searchPathAfter && outcome === 'error') {
      // Part of a failed message may have run (a SET before a COMMIT before the error).
      this.searchPathChangedSinceIdle = true;
      this.doubtSearchPath();
    }
    this.answered.push({
      step: entry.step,
      text: entry.text,
      startedAt: entry.startedAt,
      finishedAt: Date.now(),
      outcome,
      sqlState: entry.sqlState,
      rows,
      decision: entry.kind === 'sync' ? undefined : entry.decision,
      maskedColumns: entry.maskedColumns ? [...entry.maskedColumns] : NO_COLUMNS,
    });
  }

  /** Hands the statements answered since the last call to the hook for the audit trail. */
  private recordAnswered(): void {
    for (const statement of this.answered) this.deps.hook.recordStatement(this.context!, statement);
    this.answered.length = 0;
  }

  /** What a statement that ran changes for the decisions after it. */
  private applySessionEffects(decision: StatementDecision): void {
    if (decision.searchPathAfter) {
      this.setSearchPath(decision.searchPathAfter);
      // The text's effect, as the policy read it; a ROLLBACK in the same message, a failure after it, SET LOCAL or a
      // later ROLLBACK TO SAVEPOINT can undo it: the server is asked before the next decision.
      this.searchPathChangedSinceIdle = true;
      this.doubtSearchPath();
    }
  }

  /** The server is ready for the next message, in the transaction status `body` says. */
  private readyForQuery(body: Buffer): void {
    this.transactionStatus = body[0] ?? TransactionStatus.Idle;
    this.endOfTransactionSchema();
  }

  /**
   * A ReadyForQuery outside a transaction block after DDL: it is committed (or rolled back). Masked columns may have
   * moved (dropped and re-added), views may read other columns, names may stand for other relations: every session's
   * next statement waits for the catalog to be read again (adoptMaskingCatalog). Read earlier, while the transaction
   * was open, the catalog could not have shown the change.
   */
  private endOfTransactionSchema(): void {
    if (!this.schemaChangedInTransaction || this.transactionStatus !== TransactionStatus.Idle || !this.target) return;
    this.schemaChangedInTransaction = false;
    this.redefinedNames.clear();
    this.createdTables.clear();
    this.deps.maskCatalog.schemaChanged(this.target.name);
  }

  // ── search_path ──────────────────────────────────────────────────────────────────────────────────────────────

  private setSearchPath(path: string[]): void {
    // Decisions depend on the search_path (which table an unqualified name means): a new path, a new decision scope.
    this.context!.session.searchPath = path;
  }

  /** The tracked search_path may be wrong: hold client messages until the server has said what it is. */
  private doubtSearchPath(): void {
    this.searchPathUnsure = true;
    this.held = true;
  }

  /**
   * Asks the server for its search_path, once nothing of the client's is in flight. In a failed transaction block
   * nothing runs until ROLLBACK (which ends it and asks again), so the client may go on meanwhile.
   */
  private confirmSearchPath(): void {
    if (this.transactionStatus === TransactionStatus.Failed) {
      this.releaseHold();
      return;
    }
    const entry = this.entry('search-path', 'query', 'show search_path', Date.now(), UNKNOWN_STATEMENT);
    this.inFlight.push(entry);
    // Its one row must reach searchPathAnswer; DataRows stream past inspection otherwise.
    this.relay!.inspectDataRows = true;
    this.sendUpstream([serialize.query('show search_path')]);
  }

  /** The answer to the gateway's own SHOW search_path: read, and kept from the client. */
  private searchPathAnswer(entry: InFlight, type: number, body: Buffer): RelayAction {
    switch (type) {
      case BackendCode.DataRow: {
        const value = firstColumnText(body);
        if (value !== undefined) entry.text = value;
        entry.rows += 1;
        break;
      }
      case BackendCode.ErrorResponse:
        entry.sqlState = parseErrorFields(body)['C'] ?? 'XX000';
        break;
      case BackendCode.ReadyForQuery: {
        this.inFlight.shift();
        this.readyForQuery(body);
        if (this.maskedInFlight === 0) this.relay!.inspectDataRows = false;
        if (entry.sqlState === undefined && entry.rows === 1) {
          this.setSearchPath(startupSearchPath(entry.text));
          this.searchPathUnsure = false;
          if (this.transactionStatus === TransactionStatus.Idle) this.searchPathChangedSinceIdle = false;
        } else {
          // Fail closed: without the server's answer no decision can trust the tracked search_path.
          this.deps.log.log('warn', 'search_path.unconfirmed', { connection: this.connectionId, sqlstate: entry.sqlState });
          this.fatal(SqlState.internalError, 'dbgate: the gateway could not confirm the session\'s search_path', undefined);
          return { replaceWith: [] };
        }
        this.releaseHold();
        break;
      }
      default:
        break;
    }
    return { replaceWith: [] };
  }

  // ── teardown ─────────────────────────────────────────────────────────────────────────────────────────────────

  private upstreamClosed(): void {
    if (this.state === 'closed') return;
    // Tell the client why, unless we are in the middle of relaying a message (a partial message can't be followed
    // by one of ours without corrupting the stream).
    if (this.relay?.atMessageBoundary ?? true) {
      this.fatal(SqlState.connectionFailure, 'dbgate: the connection to the target was lost', 'reconnect and retry');
    } else this.close();
  }

  /** Sends a FATAL ErrorResponse (when the protocol state allows it) and closes. */
  private fatal(code: (typeof SqlState)[keyof typeof SqlState], message: string, hint: string | undefined): void {
    if (this.state === 'closed') {
      // The client said Terminate and its socket has not closed yet: nothing more to say, but release it now (a
      // gateway shutting down must record the connection's end before its audit trail closes).
      this.close();
      return;
    }
    const canSpeak = this.state !== 'ready' || (this.relay?.atMessageBoundary ?? true);
    if (canSpeak && !this.client.destroyed) {
      this.client.end(errorResponse({ severity: 'FATAL', code, message, hint }));
    } else this.client.destroy();
    this.close();
  }

  private internalError(error: unknown): void {
    // Internal details stay in the gateway's log; the client learns only that something failed on our side.
    this.deps.log.log('error', 'session.internal_error', {
      connection: this.connectionId,
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
    this.fatal(SqlState.internalError, 'dbgate: internal gateway error; the connection was closed', 'retry; the gateway operator has the details');
  }

  /** Releases everything; safe to call more than once. */
  close(): void {
    if (this.state !== 'closed') this.state = 'closed';
    if (this.closedOnce) return;
    this.closedOnce = true;
    clearTimeout(this.loginTimer);
    const upstream = this.upstream;
    if (upstream) {
      // A statement still running upstream would go on after the client left: cancel it before hanging up.
      if (this.inFlight.length > 0 && this.target) {
        cancelUpstream(this.target, upstream.processId, upstream.secretKey).catch(() => {});
      }
      upstream.socket.destroy();
    }
    if (this.clientKey) this.deps.cancelKeys.unregister(this.clientKey.processId, this.clientKey.secretKey);
    if (!this.client.destroyed && !this.client.writableEnded) this.client.end();
    // Statements still in flight were cut off by the disconnect (and cancelled upstream above).
    for (const entry of [...this.inFlight]) {
      if (entry.kind !== 'sync') this.finish(entry, 'cancelled', this.dataRows - entry.dataRowsAtStart);
      else this.inFlight.shift();
    }
    this.recordAnswered();
    if (this.openedAt !== undefined && this.identity && this.target) {
      this.deps.log.log('info', 'connection.close', { connection: this.connectionId, subject: this.identity.subject, target: this.target.name });
      this.deps.audit.append({
        occurredAt: new Date(),
        event: 'connection.close',
        outcome: 'ok',
        subject: this.identity.subject,
        actors: this.identity.actors,
        sessionId: this.identity.sessionId,
        connectionId: this.connectionId,
        clientAddress: this.clientAddress,
        tunnelId: this.tunnelId,
        target: this.target.name,
        durationMs: Date.now() - this.openedAt,
      });
    }
    this.onClosed(this);
  }

  private closedOnce = false;
  /** When the session became ready (undefined: it never did). */
  private openedAt: number | undefined;
}

/** A prepared statement judged now, in `session`. */
function judgedStatement(text: string, decision: StatementDecision, session: SessionPolicyState): PreparedStatement {
  return { text, decision, searchPath: session.searchPath, catalog: session.catalog };
}

function judgedOnNow(statement: PreparedStatement, session: SessionPolicyState): boolean {
  return statement.searchPath === session.searchPath && statement.catalog === session.catalog;
}

function sessionChangePending(): StatementDecision {
  return refusal(SESSION_CHANGE_PENDING.rule, SESSION_CHANGE_PENDING.message, SESSION_CHANGE_PENDING.hint);
}

/** Whether running the statement changes what later decisions depend on: the search_path or the schema. */
function changesSession(decision: StatementDecision): boolean {
  return !isRefusal(decision) && (decision.searchPathAfter !== undefined || decision.changesSchema);
}

/** The session's search_path at login: the startup parameter's, or PostgreSQL's default. */
function startupSearchPath(value: string | undefined): string[] {
  const path = value === undefined ? undefined : sessionEffectOf('search_path', value, 'startup').searchPath;
  return path && path.length > 0 ? path : ['$user', 'public'];
}

/**
 * Whether the `replication` startup parameter asks for a walsender: true/on/yes/1 (physical), "database" (logical),
 * or anything PostgreSQL would not read as false (fail closed). The false spellings are those of PostgreSQL's
 * parse_bool: any prefix of "false" or "no", "of"/"off", "0".
 */
function asksForReplication(value: string | undefined): boolean {
  return value !== undefined && !/^(?:f(?:a(?:l(?:se?)?)?)?|no?|off?|0)$/i.test(value.trim());
}

/** A CommandComplete tag that ends a transaction block (or rolls back to a savepoint: the tag is ROLLBACK too). */
function endsTransaction(body: Buffer): boolean {
  const end = body.indexOf(0);
  const tag = body.toString('latin1', 0, end < 0 ? body.length : end);
  return tag === 'COMMIT' || tag === 'ROLLBACK' || tag === 'PREPARE TRANSACTION';
}

/** The first column of a DataRow as text, or undefined when it is NULL or absent. */
function firstColumnText(body: Buffer): string | undefined {
  if (body.readInt16BE(0) < 1) return undefined;
  const length = body.readInt32BE(2);
  return length < 0 ? undefined : body.toString('utf8', 6, 6 + length);
}

/** Rows affected/returned from a CommandComplete tag: the last word when numeric ("INSERT 0 5", "SELECT 42"). */
function rowsFromCommandTag(body: Buffer): number | undefined {
  const end = body.indexOf(0);
  const tag = body.toString('latin1', 0, end < 0 ? body.length : end);
  const space = tag.lastIndexOf(' ');
  if (space < 0) return undefined;
  const count = Number(tag.slice(space + 1));
  return Number.isFinite(count) ? count : undefined;
}
