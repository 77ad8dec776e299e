/**
 * `dbgate-gateway dev`: a complete gateway for trying dbgate and for tests, in one process. It seeds the demo
 * target into a PostgreSQL server — its own embedded one by default, or the one `--upstream` names — and keeps its
 * state store in a separate database on that server; everything it generates (config, keys, certificate, service password) lives under the state dir, so
 * a restart keeps credentials valid.
 */
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { parse as parseYaml, stringify } from 'yaml';
import { DEMO_POLICY_YAML } from '../gateway/policy/policy.js';
import { DbgateError } from '../shared/errors.js';
import { loadGatewayConfig } from '../gateway/config/load.js';
import { startGateway, type RunningGateway } from '../gateway/gateway.js';
import { generateSigningKeyJwk } from '../gateway/identity/credentials.js';
import type { Logger } from '../gateway/log.js';
import { generateSelfSignedCertificate } from '../gateway/tls/self-signed.js';
import { DEMO_DATABASE, DEMO_TARGET_NAME, seedDemoDatabase } from './demo-fixture.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.js';
import { readOrCreateSecretFile, startDevIdp, type DevIdp } from './dev-idp.js';
import { DEV_CLI_CLIENT_ID, DEV_GATEWAY_AUDIENCE, DEV_GATEWAY_RESOURCE, DEV_GROUPS_CLAIM, DEV_KIND_CLAIM } from './dev-identities.js';

/** Fixed dev ports, so the quickstart's commands never change; 0 asks for random ones. */
export const DEV_DEFAULT_PORTS = { pg: 6543, api: 6580, idp: 6590 } as const;
export const DEV_SERVICE_ROLE = 'dbgate_service';
export const DEV_STATE_DATABASE = 'dbgate_state';
export const DEV_SCRATCH_TARGET = 'scratch';
export const DEV_SCRATCH_DATABASE = 'dbgate_scratch';
export const DEV_CONFIG_FILE = 'gateway.yaml';

export interface DevStackOptions {
  /** postgres://user:password@host:port/db of a server the dev stack may create roles and databases on; default: embedded. */
  upstream: string | undefined;
  stateDir?: string | undefined;
  pgPort?: number | undefined;
  apiPort?: number | undefined;
  idpPort?: number | undefined;
  log?: Logger;
  env?: NodeJS.ProcessEnv;
}

export interface DevStack {
  gateway: RunningGateway;
  stateDir: string;
  configFile: string;
  /** The automation contract's ready line. */
  idp: DevIdp;
  readyLine: { pg: string; api: string; idp: string; state: string };
  close(): Promise<void>;
}

/** Where dev state lives unless --state says otherwise: $XDG_STATE_HOME/dbgate/dev. */
export function defaultDevStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env['XDG_STATE_HOME'] || join(homedir(), '.local', 'state');
  return join(base, 'dbgate', 'dev');
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/**
 * The dev gateway's certificate and key in `<state>/tls`, created when either is missing. They are one pair, so they
 * are written into a fresh directory that then replaces the empty `tls` in one rename: two dev stacks starting at
 * once on a new state dir cannot end up with one's certificate beside the other's key. When another got there
 * first, `tls` is not empty any more, the rename fails, and theirs stays. Clients pin the new fingerprint via
 * discovery.
 */
export async function ensureTlsPair(stateDir: string): Promise<void> {
  const dir = join(stateDir, 'tls');
  const certFile = join(dir, 'gateway.crt');
  const keyFile = join(dir, 'gateway.key');
  if ((await exists(certFile)) && (await exists(keyFile))) return;
  // Half a pair (an interrupted older version, a file deleted by hand) is no pair: start again.
  await Promise.all([rm(certFile, { force: true }), rm(keyFile, { force: true })]);
  const certificate = await generateSelfSignedCertificate({ commonName: 'dbgate dev gateway' });
  const staging = await mkdtemp(join(stateDir, 'tls-'));
  try {
    await writeFile(join(staging, 'gateway.key'), certificate.keyPem, { mode: 0o600 });
    await writeFile(join(staging, 'gateway.crt'), certificate.certPem, { mode: 0o644 });
    await rename(staging, dir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
  }
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  const stateDir = resolve(options.stateDir ?? defaultDevStateDir(options.env));
  await mkdir(join(stateDir, 'secrets'), { recursive: true, mode: 0o700 });
  await mkdir(join(stateDir, 'tls'), { recursive: true, mode: 0o700 });
  await chmod(stateDir, 0o700);

  let embedded: EmbeddedPostgres | undefined;
  if (!options.upstream) embedded = await startEmbeddedPostgres(stateDir);
  try {
    const stack = await startDevStackOn(embedded?.adminUrl ?? options.upstream!, stateDir, options);
    return {
      ...stack,
      close: async () => {
        await stack.close();
        await embedded?.stop();
      },
    };
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
}

async function startDevStackOn(upstream: string, stateDir: string, options: DevStackOptions): Promise<DevStack> {
  let upstreamUrl: URL;
  try {
    upstreamUrl = new URL(upstream);
  } catch {
    throw new DbgateError('USAGE', `--upstream is not a URL: ${upstream.replace(/:[^:@/]*@/, ':***@')}`);
  }
  if (!/^postgres(ql)?:$/.test(upstreamUrl.protocol) || !upstreamUrl.hostname) {
    throw new DbgateError('USAGE', '--upstream must be a postgres://user:password@host:port/database URL (TCP)');
  }

  const servicePasswordFile = join(stateDir, 'secrets', 'service-password');
  const proposedPassword = (await readOrCreateSecretFile(servicePasswordFile, () => randomBytes(24).toString('base64url'))).trim();
  await readOrCreateSecretFile(join(stateDir, 'secrets', 'credential-signing.jwk'), async () =>
    `${JSON.stringify(await generateSigningKeyJwk(), null, 2)}\n`);
  await ensureTlsPair(stateDir);
  const adminPassword = decodeURIComponent(upstreamUrl.password);
  if (adminPassword) await writeFile(join(stateDir, 'secrets', 'state-store-password'), adminPassword, { mode: 0o600 });

  const servicePassword = await prepareUpstream(upstreamUrl, proposedPassword);
  // Another dev stack on this server chose the password first: use theirs (the role has one password).
  if (servicePassword !== proposedPassword) await writeFile(servicePasswordFile, servicePassword, { mode: 0o600 });
  const idp = await startDevIdp({
    port: options.idpPort ?? DEV_DEFAULT_PORTS.idp,
    stateDir,
    ...(options.log ? { log: (line: string) => options.log!.log('info', 'idp', { line }) } : {}),
  });

  /** A target on the upstream server, reached as the service role. */
  const serviceTarget = (database: string, description: string): Record<string, unknown> => ({
    host: upstreamUrl.hostname.replace(/^\[|\]$/g, ''),
    port: Number(upstreamUrl.port || 5432),
    database,
    user: DEV_SERVICE_ROLE,
    password_file: 'secrets/service-password',
    description,
  });
  const stateStoreUrl = new URL(upstreamUrl.toString());
  stateStoreUrl.password = '';
  stateStoreUrl.pathname = `/${DEV_STATE_DATABASE}`;
  const config = {
    name: 'dev',
    listen: {
      pg: `127.0.0.1:${options.pgPort ?? DEV_DEFAULT_PORTS.pg}`,
      api: `127.0.0.1:${options.apiPort ?? DEV_DEFAULT_PORTS.api}`,
    },
    tls: { cert_file: 'tls/gateway.crt', key_file: 'tls/gateway.key', require: false },
    credentials: { signing_key_file: 'secrets/credential-signing.jwk', default_ttl: '1h', max_ttl: '12h' },
    state_store: {
      url: stateStoreUrl.toString(),
      ...(adminPassword ? { password_file: 'secrets/state-store-password' } : {}),
    },
    // The gateway trusts the dev IdP exactly as it would Okta or Entra ID: issuer + ordinary OIDC discovery.
    identity: {
      issuer: idp.issuer,
      client_id: DEV_CLI_CLIENT_ID,
      scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
      resource: DEV_GATEWAY_RESOURCE,
      audiences: [DEV_GATEWAY_AUDIENCE],
      groups_claim: DEV_GROUPS_CLAIM,
      kind_claim: DEV_KIND_CLAIM,
    },
    // The demo policy of DESIGN.md: masking for engineering and agents, guardrails on prod-orders, a playground.
    ...(parseYaml(DEMO_POLICY_YAML) as { policy: unknown }),
    targets: {
      [DEV_SCRATCH_TARGET]: serviceTarget(DEV_SCRATCH_DATABASE,
        'a playground database for experiments and benchmarks (dba: admin, no guardrails)'),
      [DEMO_TARGET_NAME]: serviceTarget(DEMO_DATABASE, 'demo orders database (customers, orders, payments)'),
    },
  };
  const configFile = join(stateDir, DEV_CONFIG_FILE);
  await writeFile(configFile, `# Written by dbgate-gateway dev; regenerated on every start.\n${stringify(config)}`, { mode: 0o600 });

  let gateway: RunningGateway;
  try {
    gateway = await startGateway(await loadGatewayConfig(configFile, options.env), options.log ? { log: options.log } : {});
  } catch (error) {
    await idp.close();
    throw error;
  }
  return {
    gateway,
    idp,
    stateDir,
    configFile,
    readyLine: { pg: `${gateway.pg.host}:${gateway.pg.port}`, api: gateway.apiUrl, idp: idp.issuer, state: stateDir },
    close: async () => {
      await gateway.close();
      await idp.close();
    },
  };
}

/** The advisory lock key of the dev setup (any bigint; this one spells "dbgatedv" in ASCII). */
const DEV_SETUP_LOCK = '7233457619772728438';

/**
 * Creates the service role, the demo database (owned by the service role, so the gateway can also run DDL there on
 * behalf of users who are allowed to) and the state database, then seeds the demo data. Idempotent. Returns the
 * service role's password: the server keeps it (a table of the state database), so dev stacks with other state dirs
 * on the same server (two checkouts, parallel CI jobs) use the same one instead of each resetting it to its own,
 * which cut off the other's connections to the targets. `proposed` (the state dir's) is used when none is kept yet.
 */
async function prepareUpstream(upstreamUrl: URL, proposed: string): Promise<string> {
  const admin = new pg.Client({ connectionString: upstreamUrl.toString(), application_name: 'dbgate-dev-setup' });
  try {
    await admin.connect();
  } catch (error) {
    throw new DbgateError('UPSTREAM_FAILED', `cannot connect to --upstream: ${(error as Error).message}`, {
      hint: 'check the URL, the password and that the server accepts TCP connections',
    });
  }
  try {
    // Two dev stacks starting at once on one server (two terminals, parallel CI jobs) would alter the same role and
    // create the same databases concurrently ("tuple concurrently updated"): one setup at a time per server, held
    // until the demo data is seeded.
    await admin.query('select pg_advisory_lock($1)', [DEV_SETUP_LOCK]);
    const role = quoteIdentifier(DEV_SERVICE_ROLE);
    const exists = await admin.query('select 1 from pg_roles where rolname = $1', [DEV_SERVICE_ROLE]);
    if (!exists.rowCount) await admin.query(`create role ${role} login`);
    for (const [database, owner] of [[DEMO_DATABASE, role], [DEV_SCRATCH_DATABASE, role], [DEV_STATE_DATABASE, null]] as const) {
      const found = await admin.query('select 1 from pg_database where datname = $1', [database]);
      if (!found.rowCount) {
        await admin.query(`create database ${quoteIdentifier(database)}${owner ? ` owner ${owner}` : ''}`);
      }
    }
    const servicePassword = await keptServicePassword(upstreamUrl, proposed);
    // A literal in DDL (no parameters there): base64url, or refused by keptServicePassword, so no quote to escape.
    await admin.query(`alter role ${role} login password '${servicePassword}'`);
    const demoUrl = new URL(upstreamUrl.toString());
    demoUrl.pathname = `/${DEMO_DATABASE}`;
    const demo = new pg.Client({ connectionString: demoUrl.toString(), application_name: 'dbgate-dev-setup' });
    await demo.connect();
    try {
      // Create the demo objects as the service role so it owns them.
      await demo.query(`set role ${quoteIdentifier(DEV_SERVICE_ROLE)}`);
      await seedDemoDatabase(demo);
    } finally {
      await demo.end();
    }
    return servicePassword;
  } finally {
    // Ending the session releases the advisory lock.
    await admin.end();
  }
}

/** The dev service role's password as the server keeps it (see prepareUpstream), keeping `proposed` if none is. */
async function keptServicePassword(upstreamUrl: URL, proposed: string): Promise<string> {
  const stateUrl = new URL(upstreamUrl.toString());
  stateUrl.pathname = `/${DEV_STATE_DATABASE}`;
  const state = new pg.Client({ connectionString: stateUrl.toString(), application_name: 'dbgate-dev-setup' });
  await state.connect();
  try {
    // Only the server's administrators (who could reset the role anyway) can read it: no grants to anyone.
    await state.query(`create table if not exists dbgate_dev_secrets (name text primary key, value text not null)`);
    await state.query(`insert into dbgate_dev_secrets values ('service-password', $1) on conflict (name) do nothing`, [proposed]);
    const { rows } = await state.query<{ value: string }>(`select value from dbgate_dev_secrets where name = 'service-password'`);
    const kept = rows[0]!.value;
    if (!/^[A-Za-z0-9_-]+$/.test(kept)) {
      throw new DbgateError('CONFIG_INVALID', 'the dev service password kept on the --upstream server is damaged', {
        hint: `run "delete from dbgate_dev_secrets where name = 'service-password'" in ${DEV_STATE_DATABASE} and start again`,
      });
    }
    return kept;
  } finally {
    await state.end();
  }
}

