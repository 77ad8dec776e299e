/**
 * The gateway's own PostgreSQL database: sessions, revocations, the audit trail and where masked columns were found. Several gateways share one
 * store, so everything a decision depends on lives here rather than in one process's memory.
 */
import pg from 'pg';
import type { Secret } from '../../shared/secret.js';
import { DbgateError } from '../../shared/errors.js';

/** Ordered schema migrations; each runs once, in a transaction, under an advisory lock shared by all gateways. */
const MIGRATIONS: readonly string[] = [
  `create table dbgate_sessions (
     session_id   uuid primary key,
     subject      text not null,
     kind         text not null,
     email        text,
     groups       text[] not null default '{}',
     actors       text[] not null default '{}',
     created_at   timestamptz not null default now(),
     expires_at   timestamptz not null,
     revoked_at   timestamptz,
     revoked_by   text,
     origin       text not null
   );
   create index dbgate_sessions_subject on dbgate_sessions (subject, created_at desc);
   create table dbgate_audit_events (
     id            bigserial primary key,
     occurred_at   timestamptz not null,
     gateway       text not null,
     event         text not null,
     subject       text,
     actors        text[] not null default '{}',
     session_id    uuid,
     connection_id text,
     client_addr   text,
     target        text,
     statement     text,
     protocol_step text,
     outcome       text not null,
     sqlstate      text,
     rows          bigint,
     duration_ms   double precision,
     detail        jsonb not null default '{}'
   );
   create index dbgate_audit_events_subject on dbgate_audit_events (subject, occurred_at desc);
   create index dbgate_audit_events_time on dbgate_audit_events (occurred_at);`,
  // The audit table is append-only in time order: a BRIN index serves time ranges at a fraction of a B-tree's
  // cost per insert, which is paid on every statement the gateway relays.
  `drop index dbgate_audit_events_time;
   create index dbgate_audit_events_time on dbgate_audit_events using brin (occurred_at);`,
  // Records of connections relayed by `dbgate connect` name its tunnel, so that it can count its own statements
  // (GET /v1/me/activity, TUNNEL_ACTIVITY_SQL). With the subject in the index the query needs no other one: the
  // planner, taking tunnel and subject for independent, would otherwise AND in the subject index, all of a busy
  // person's records. Partial: records without a tunnel (direct clients, credential events) cost it nothing.
  `alter table dbgate_audit_events add column tunnel_id uuid;
   create index dbgate_audit_events_tunnel on dbgate_audit_events (tunnel_id, subject) where tunnel_id is not null;`,
  // Where each masked column of the policy was found on a target (masking/catalog.ts): a column renamed on the
  // database keeps its table OID and attribute number, so it stays masked under its new name, across restarts.
  `create table dbgate_masked_column_locations (
     target      text not null,
     column_name text not null,
     table_oid   bigint not null,
     attnum      integer not null,
     found_at    timestamptz not null default now(),
     primary key (target, column_name)
   );`,
  // The keys each gateway gave its clients for CancelRequest (proxy/cancel-keys.ts). A cancel comes on a connection
  // of its own, which a load balancer may hand to another gateway than the one holding the query: any gateway finds
  // the key here and cancels the upstream backend itself. Unlogged: keys are worth nothing after a store crash (the
  // gateways write theirs again within a minute) and churn with every connection, so they skip the WAL.
  `create unlogged table dbgate_cancel_keys (
     process_id          integer not null,
     secret_key          integer not null,
     instance            uuid not null,
     target              text not null,
     upstream_process_id integer not null,
     upstream_secret_key integer not null,
     seen_at             timestamptz not null default now(),
     primary key (process_id, secret_key)
   );
   create index dbgate_cancel_keys_instance on dbgate_cancel_keys (instance);`,
];

/** Arbitrary but fixed: all gateways serialise their migrations on this advisory lock key. */
const MIGRATION_LOCK_KEY = 0x64626761; // "dbga"

/** See TunnelActivityResponse (src/shared/api.ts) for what each count means. */
export interface TunnelStatementCounts {
  allowed: number;
  masked: number;
  denied: number;
  held: number;
  failed: number;
  /** The store's clock when it counted. */
  asOf: Date;
}

/**
 * Counts one identity's statements through one tunnel ($1 tunnel_id; $2 subject and $3 actors: the same person, and
 * the same agent acting for them, as the audit trail records them), served by the index dbgate_audit_events_tunnel.
 * By identity rather than by session: the tunnel renews its credential, a new session each time, while connections
 * opened earlier go on under the old one.
 *
 * Only statements that ran count as allowed or masked, and only refusals as denied or held, as the tunnel counts
 * them on the wire; statements skipped after an error in a pipeline or cancelled by a disconnect count nowhere.
 * "Masked" means values were masked in the result: a statement decided `mask` whose result held none of the masked
 * columns is allowed.
 */
export const TUNNEL_ACTIVITY_SQL = `
  select count(*) filter (where outcome = 'ok' and not masked) as allowed,
         count(*) filter (where outcome = 'ok' and masked) as masked,
         count(*) filter (where outcome = 'denied' and decision is distinct from 'hold') as denied,
         count(*) filter (where outcome = 'denied' and decision = 'hold') as held,
         count(*) filter (where outcome = 'error') as failed,
         clock_timestamp() as "asOf"
    from (select outcome,
                 detail->>'decision' as decision,
                 (detail->>'decision' = 'mask' and detail->'masked_columns' <> '[]'::jsonb) is true as masked
            from dbgate_audit_events
           where tunnel_id = $1 and subject = $2 and actors = $3::text[] and event = 'statement') as statements`;

export interface StateStoreOptions {
  url: string;
  password: Secret | undefined;
  /** Pool size; the store is touched per connection and per audit batch, not per statement. */
  maxConnections?: number;
}

/** A client-facing cancel key and the upstream backend it cancels, as the gateway that issued it shares it. */
export interface SharedCancelKey {
  processId: number;
  secretKey: number;
  target: string;
  upstreamProcessId: number;
  upstreamSecretKey: number;
}

export interface SessionRecord {
  sessionId: string;
  subject: string;
  kind: string;
  email: string | undefined;
  groups: string[];
  actors: string[];
  expiresAt: Date;
  origin: string;
}

/** The channel gateways sharing a store announce committed schema changes of their targets on. */
const SCHEMA_CHANGES_CHANNEL = 'dbgate_schema_changed';

/** How long a lost LISTEN connection waits before it connects again: doubled after each failure, up to the maximum. */
const LISTEN_RETRY_MS = 1_000;
const LISTEN_RETRY_MAX_MS = 30_000;

export class StateStore {
  readonly pool: pg.Pool;
  private readonly connection: pg.ClientConfig;

  constructor(options: StateStoreOptions) {
    // Not `connectionString`: pg lets the URL's (absent) password override an explicit one.
    const url = new URL(options.url);
    this.connection = {
      host: decodeURIComponent(url.hostname).replace(/^\[|\]$/g, ''),
      port: Number(url.port || 5432),
      user: decodeURIComponent(url.username),
      database: decodeURIComponent(url.pathname.slice(1)) || decodeURIComponent(url.username),
      ...(options.password ? { password: options.password.reveal() } : {}),
      application_name: 'dbgate-gateway',
    };
    this.pool = new pg.Pool({ ...this.connection, max: options.maxConnections ?? 8 });
    // An idle pooled connection that dies (store restart) must not crash the gateway; the next query reconnects.
    this.pool.on('error', () => {});
  }

  /** Brings the schema up to date. Safe to run from several gateways at once. */
  async migrate(): Promise<void> {
    const client = await this.connect();
    try {
      await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      await client.query('create table if not exists dbgate_schema_version (version integer not null)');
      const { rows } = await client.query<{ version: number }>('select max(version) as version from dbgate_schema_version');
      const current = rows[0]?.version ?? 0;
      for (let version = current + 1; version <= MIGRATIONS.length; version += 1) {
        await client.query('begin');
        await client.query(MIGRATIONS[version - 1]!);
        await client.query('insert into dbgate_schema_version (version) values ($1)', [version]);
        await client.query('commit');
      }
    } catch (error) {
      await client.query('rollback').catch(() => {});
      throw new DbgateError('STATE_STORE_FAILED', `state store migration failed: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
      client.release();
    }
  }

  async recordSession(session: SessionRecord): Promise<void> {
    await this.pool.query(
      `insert into dbgate_sessions (session_id, subject, kind, email, groups, actors, expires_at, origin)
       values ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [session.sessionId, session.subject, session.kind, session.email ?? null, session.groups, session.actors,
        session.expiresAt, session.origin],
    );
  }

  /** 'active', 'revoked', or 'unknown' (never issued by this deployment: refused like a revoked one). */
  async sessionState(sessionId: string): Promise<'active' | 'revoked' | 'unknown'> {
    const { rows } = await this.pool.query<{ revoked: boolean }>(
      'select revoked_at is not null as revoked from dbgate_sessions where session_id = $1',
      [sessionId],
    );
    if (rows.length === 0) return 'unknown';
    return rows[0]!.revoked ? 'revoked' : 'active';
  }

  /** Which of `sessionIds` have been revoked (by any gateway sharing this store). */
  async revokedAmong(sessionIds: string[]): Promise<Set<string>> {
    if (sessionIds.length === 0) return new Set();
    const { rows } = await this.pool.query<{ session_id: string }>(
      'select session_id from dbgate_sessions where session_id = any($1::uuid[]) and revoked_at is not null',
      [sessionIds],
    );
    return new Set(rows.map((row) => row.session_id));
  }

  async revokeSession(sessionId: string, revokedBy: string): Promise<boolean> {
    const result = await this.pool.query(
      'update dbgate_sessions set revoked_at = now(), revoked_by = $2 where session_id = $1 and revoked_at is null',
      [sessionId, revokedBy],
    );
    return (result.rowCount ?? 0) > 0;
  }

  /** One identity's statements relayed by one tunnel, counted by what the gateway decided and how they ended. */
  async tunnelActivity(tunnelId: string, identity: { subject: string; actors: readonly string[] }): Promise<TunnelStatementCounts> {
    const { rows } = await this.pool.query<Record<keyof TunnelStatementCounts, string | Date>>(TUNNEL_ACTIVITY_SQL,
      [tunnelId, identity.subject, identity.actors]);
    const row = rows[0]!;
    return {
      allowed: Number(row.allowed),
      masked: Number(row.masked),
      denied: Number(row.denied),
      held: Number(row.held),
      failed: Number(row.failed),
      asOf: row.asOf as Date,
    };
  }

  /** Where the policy's masked columns were last found on `target` (by their policy names). */
  async maskedColumnLocations(target: string): Promise<Map<string, { tableOid: number; attnum: number }>> {
    const { rows } = await this.pool.query<{ column_name: string; table_oid: string; attnum: number }>(
      'select column_name, table_oid, attnum from dbgate_masked_column_locations where target = $1', [target]);
    return new Map(rows.map((row) => [row.column_name, { tableOid: Number(row.table_oid), attnum: row.attnum }]));
  }

  /** Records where masked columns were found on `target` (one statement: the whole set, or nothing). */
  async saveMaskedColumnLocations(target: string, locations: ReadonlyMap<string, { tableOid: number; attnum: number }>): Promise<void> {
    const entries = [...locations];
    await this.pool.query(
      `insert into dbgate_masked_column_locations (target, column_name, table_oid, attnum)
       select $1, * from unnest($2::text[], $3::int8[], $4::int4[])
       on conflict (target, column_name) do update
         set table_oid = excluded.table_oid, attnum = excluded.attnum, found_at = now()
         where (dbgate_masked_column_locations.table_oid, dbgate_masked_column_locations.attnum)
               is distinct from (excluded.table_oid, excluded.attnum)`,
      [target, entries.map(([name]) => name), entries.map(([, at]) => at.tableOid), entries.map(([, at]) => at.attnum)],
    );
  }

  /**
   * Shares `keys` (new, or still live: their `seen_at` is renewed) and withdraws `forgotten` keys of `instance`, in
   * one statement, so a key forgotten right after it was shared cannot be left behind by two racing statements.
   */
  async shareCancelKeys(instance: string, keys: readonly SharedCancelKey[], forgotten: readonly { processId: number; secretKey: number }[]): Promise<void> {
    await this.pool.query(
      `with gone as (
         delete from dbgate_cancel_keys
          where instance = $1 and (process_id, secret_key) in (select * from unnest($7::int4[], $8::int4[]))
       )
       insert into dbgate_cancel_keys (process_id, secret_key, instance, target, upstream_process_id, upstream_secret_key)
       select process_id, secret_key, $1, target, upstream_process_id, upstream_secret_key
         from unnest($2::int4[], $3::int4[], $4::text[], $5::int4[], $6::int4[])
           as k(process_id, secret_key, target, upstream_process_id, upstream_secret_key)
       on conflict (process_id, secret_key) do update set seen_at = now()
         where dbgate_cancel_keys.instance = excluded.instance`,
      [instance, keys.map((key) => key.processId), keys.map((key) => key.secretKey), keys.map((key) => key.target),
        keys.map((key) => key.upstreamProcessId), keys.map((key) => key.upstreamSecretKey),
        forgotten.map((key) => key.processId), forgotten.map((key) => key.secretKey)],
    );
  }

  /** The upstream backend behind a cancel key any gateway sharing this store issued. */
  async findCancelKey(processId: number, secretKey: number): Promise<SharedCancelKey | undefined> {
    const { rows } = await this.pool.query<{ target: string; upstream_process_id: number; upstream_secret_key: number }>(
      `select target, upstream_process_id, upstream_secret_key from dbgate_cancel_keys
        where process_id = $1 and secret_key = $2`, [processId, secretKey]);
    const row = rows[0];
    return row && { processId, secretKey, target: row.target, upstreamProcessId: row.upstream_process_id, upstreamSecretKey: row.upstream_secret_key };
  }

  /** Removes the cancel keys of `instance` (a gateway stopping). */
  async withdrawCancelKeys(instance: string): Promise<void> {
    await this.pool.query('delete from dbgate_cancel_keys where instance = $1', [instance]);
  }

  /** Removes the cancel keys nobody renewed for `staleMs` (gateways that died without stopping); how many. */
  async sweepCancelKeys(staleMs: number): Promise<number> {
    const result = await this.pool.query('delete from dbgate_cancel_keys where seen_at < now() - make_interval(secs => $1)', [staleMs / 1000]);
    return result.rowCount ?? 0;
  }

  /**
   * Tells the other gateways sharing this store that a schema change on `target` committed (through gateway
   * `instance`): the catalog they judge statements on is stale.
   */
  async announceSchemaChange(instance: string, target: string): Promise<void> {
    await this.pool.query('select pg_notify($1, $2)', [SCHEMA_CHANGES_CHANNEL, JSON.stringify({ instance, target })]);
  }

  /**
   * Calls `onChange(target)` for each schema change another gateway than `instance` announces, on a connection of its
   * own that LISTENs. A lost connection is opened again after a second (longer while the store stays unreachable);
   * announcements made meanwhile were missed, so `onChange(undefined)` (every target) follows each reconnection.
   * Returns what stops listening.
   */
  listenForSchemaChanges(instance: string, onChange: (target: string | undefined) => void, onError: (error: Error) => void):
    () => Promise<void> {
    let client: pg.Client | undefined;
    let stopped = false;
    let retry: NodeJS.Timeout | undefined;
    let delay = LISTEN_RETRY_MS;
    const connect = (reconnecting: boolean): void => {
      const current = new pg.Client({ ...this.connection, application_name: 'dbgate-gateway schema changes' });
      client = current;
      let failed = false;
      const fail = (error: Error): void => {
        if (failed || stopped) return;
        failed = true;
        onError(error);
        current.end().catch(() => {});
        retry = setTimeout(() => connect(true), delay);
        retry.unref();
        delay = Math.min(delay * 2, LISTEN_RETRY_MAX_MS);
      };
      current.on('error', fail);
      current.on('end', () => fail(new Error('the connection to the state store ended')));
      current.on('notification', (message) => {
        if (message.channel !== SCHEMA_CHANGES_CHANNEL || message.payload === undefined) return;
        const announced = parseAnnouncement(message.payload);
        if (announced === undefined) onChange(undefined);
        else if (announced.instance !== instance) onChange(announced.target);
      });
      current.connect()
        .then(() => current.query(`listen ${SCHEMA_CHANGES_CHANNEL}`))
        .then(() => {
          delay = LISTEN_RETRY_MS;
          if (reconnecting && !stopped) onChange(undefined);
        }, fail);
    };
    connect(false);
    return async () => {
      stopped = true;
      clearTimeout(retry);
      await client?.end().catch(() => {});
    };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async connect(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (error) {
      throw new DbgateError('STATE_STORE_FAILED', `cannot reach the state store: ${(error as Error).message}`, {
        hint: 'check state_store.url and its password in the gateway config',
        cause: error,
      });
    }
  }
}

/** An announcement of `announceSchemaChange`; undefined when it is not one (anyone may NOTIFY: read it as "all"). */
function parseAnnouncement(payload: string): { instance: string; target: string } | undefined {
  try {
    const parsed = JSON.parse(payload) as { instance?: unknown; target?: unknown };
    if (typeof parsed.instance === 'string' && typeof parsed.target === 'string') return { instance: parsed.instance, target: parsed.target };
  } catch {
    // Not JSON.
  }
  return undefined;
}

/** A valid UUID, so a malformed `sid` cannot become a SQL error that leaks through. */
export function isUuid(text: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text);
}
