/**
 * Helpers for tests that use the shared dev gateway: mint credentials with the real command, open tunnels
 * in-process, and look at the target database directly (pg_stat_activity, row counts) as an operator would.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { main as gatewayMain } from '../../src/gateway/cli.js';
import { discoverGateway } from '../../src/cli/gateway-discovery.js';
import { LocalTunnel, type TunnelEvent } from '../../src/cli/tunnel/local-tunnel.js';
import { captureContext } from './capture-context.js';
import { StateStore } from '../../src/gateway/store/state-store.js';
import { Secret } from '../../src/shared/secret.js';

export { captureContext };

export interface SharedStack {
  cluster: { host: string; port: number; adminUrl: string; socketDir: string };
  gateway: { pgHost: string; pgPort: number; apiUrl: string; stateDir: string; pid: number };
  /** The dev stack's OIDC provider (alice, bob, carol with password dbgate-dev; the report-bot agent client). */
  idp: { issuer: string; agentClientId: string; agentClientSecret: string };
}

export function sharedStack(): SharedStack {
  return inject('stack');
}


/** Mints a credential on the shared dev gateway with `dbgate-gateway credential mint`. */
export async function mintCredential(user: string, options: { groups?: string[]; ttl?: string } = {}): Promise<string> {
  const context = captureContext(process.env);
  const argv = ['credential', 'mint', '--state', sharedStack().gateway.stateDir, '--user', user, '--ttl', options.ttl ?? '30m'];
  if (options.groups?.length) argv.push('--groups', options.groups.join(','));
  const code = await gatewayMain(argv, context);
  if (code !== 0) throw new Error(`credential mint failed (${code}): ${context.err()}`);
  return context.out().trim();
}

export interface OpenTunnel {
  tunnel: LocalTunnel;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** node-postgres connection settings for this tunnel. */
  pgConfig: pg.ClientConfig;
  /** libpq environment for psql / pgbench through this tunnel. */
  libpqEnv: NodeJS.ProcessEnv;
  close(): Promise<void>;
}

/**
 * Opens a tunnel in-process exactly as `dbgate connect` does (discovery, pinned TLS, random password). With `onEvent`
 * it also observes statements, as for the live view.
 */
export async function openTunnel(
  user = 'alice',
  options: { credential?: string; target?: string; onEvent?: (event: TunnelEvent) => void } = {},
): Promise<OpenTunnel> {
  const credential = options.credential ?? (await mintCredential(user, { groups: ['engineering'] }));
  const discovery = await discoverGateway(new URL(sharedStack().gateway.apiUrl));
  const target = options.target ?? 'prod-orders';
  const tunnel = new LocalTunnel({
    target,
    user,
    gateway: { host: discovery.pg.host, port: discovery.pg.port, fingerprint256: discovery.tls.fingerprint_sha256 },
    credential: () => credential,
    observeStatements: options.onEvent !== undefined,
    onEvent: options.onEvent,
  });
  const { host, port } = await tunnel.listen();
  return {
    tunnel,
    host,
    port,
    user,
    password: tunnel.password,
    database: target,
    pgConfig: { host, port, user, password: tunnel.password, database: target },
    libpqEnv: {
      ...process.env,
      PGHOST: host,
      PGPORT: String(port),
      PGUSER: user,
      PGPASSWORD: tunnel.password,
      PGDATABASE: target,
      PGSSLMODE: 'disable',
      PGCONNECT_TIMEOUT: '10',
    },
    close: () => tunnel.close(),
  };
}

/** A superuser connection straight to the demo database, bypassing the gateway (for checking effects). */
export async function directClient(database = 'prod_orders'): Promise<pg.Client> {
  const url = new URL(sharedStack().cluster.adminUrl);
  url.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  return client;
}

/**
 * A state store of its own, in a fresh database of the shared cluster, migrated; `drop` removes it. For tests that
 * count or read audit records and must not see the shared gateway's.
 */
export async function scratchStateStore(prefix: string): Promise<{ database: string; store: StateStore; admin: pg.Client; drop(): Promise<void> }> {
  const database = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = await directClient('postgres');
  await admin.query(`create database ${database}`);
  const url = new URL(sharedStack().cluster.adminUrl);
  const password = new Secret(decodeURIComponent(url.password));
  url.password = '';
  url.pathname = `/${database}`;
  const store = new StateStore({ url: url.toString(), password });
  await store.migrate();
  return {
    database,
    store,
    admin,
    async drop() {
      await store.close();
      await admin.query(`drop database if exists ${database} with (force)`);
      await admin.end();
    },
  };
}

/** Backends of the gateway's service role that are still doing something (what a leak would look like). */
export async function activeServiceBackends(admin: pg.Client, applicationName?: string): Promise<Array<{ pid: number; state: string; query: string }>> {
  const { rows } = await admin.query<{ pid: number; state: string; query: string }>(
    `select pid, state, query from pg_stat_activity
      where usename = 'dbgate_service' and pid <> pg_backend_pid()
        and ($1::text is null or application_name = $1)`,
    [applicationName ?? null],
  );
  return rows;
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns the last result. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 5_000, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
