/**
 * How the gateway logs in to its targets with their service credentials: whatever authentication the target's
 * pg_hba.conf demands (SCRAM-SHA-256, MD5, cleartext password, trust) and over TLS when the target requires it.
 * The user only ever presents a dbgate credential; when the service login fails they learn that the target is
 * unavailable, never the server's words or the service password.
 *
 * A gateway runs in-process, with a config written here exactly as an operator would write one, in front of a
 * PostgreSQL cluster of this file's own; its state store is the shared cluster's dbgate_state database. Its policy
 * grants the test's group admin on every target, so whatever a test sees comes from the login, not from a rule.
 * A second gateway with the same config minus its `policy:` section shows that no policy means nothing runs.
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { DatabaseError } from 'pg-protocol';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayConfig } from '../../src/gateway/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.js';
import type { Logger } from '../../src/gateway/log.js';
import { generateSelfSignedCertificate } from '../../src/gateway/tls/self-signed.js';
import { eventually } from '../support/stack.js';
import { gatewayConfigDir, issueTestCredential, type GatewayConfigDir } from '../support/in-process-gateway.js';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';

const password = (): string => randomBytes(18).toString('base64url');

/** Service roles of the target cluster, one per way PostgreSQL can ask for a password. */
const roles = {
  scram: { name: 'scram_user', password: password() },
  md5: { name: 'md5_user', password: password() },
  cleartext: { name: 'cleartext_user', password: password() },
  trust: { name: 'trust_user', password: undefined },
  tls: { name: 'tls_user', password: password() },
} as const;

/** What each gateway target logs in as, how, and whether the upstream session is encrypted. */
const targets = [
  { target: 'via-scram', role: roles.scram, tls: 'disable', encrypted: false },
  { target: 'via-md5', role: roles.md5, tls: 'disable', encrypted: false },
  { target: 'via-cleartext', role: roles.cleartext, tls: 'disable', encrypted: false },
  { target: 'via-trust', role: roles.trust, tls: 'disable', encrypted: false },
  { target: 'via-tls', role: roles.tls, tls: 'require', encrypted: true },
] as const;

const WRONG_SERVICE_PASSWORD = `wrong-${password()}`;

/** The group the test's credentials carry; the policy grants it admin on every target of the gateway. */
const GROUP = 'upstream-testers';

async function query<T extends pg.QueryResultRow>(config: pg.ClientConfig, sql: string): Promise<T[]> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Turns SSL on in a running cluster: a self-signed certificate in its data directory, then a reload. */
async function enableSsl(cluster: PgCluster): Promise<void> {
  const certificate = await generateSelfSignedCertificate({ commonName: 'upstream-login test target' });
  const owner = await stat(cluster.dataDir);
  const certFile = join(cluster.dataDir, 'server.crt');
  const keyFile = join(cluster.dataDir, 'server.key');
  await writeFile(certFile, certificate.certPem, { mode: 0o644 });
  await writeFile(keyFile, certificate.keyPem, { mode: 0o600 });
  // The server runs as the data directory's owner and refuses a key file anyone else can read.
  for (const file of [certFile, keyFile]) await chown(file, owner.uid, owner.gid);
  await chmod(keyFile, 0o600);
  await query({ connectionString: cluster.adminUrl }, `alter system set ssl = on`);
  await query({ connectionString: cluster.adminUrl }, `select pg_reload_conf()`);
  const sslWorks = async (): Promise<boolean> => {
    try {
      await query({ connectionString: cluster.adminUrl, ssl: { rejectUnauthorized: false } }, 'select 1');
      return true;
    } catch {
      return false;
    }
  };
  if (!(await eventually(sslWorks, 5_000))) throw new Error('the target cluster did not start accepting TLS');
}

describe('gateway login to targets', () => {
  let cluster: PgCluster;
  let gateway: RunningGateway;
  let configDir: GatewayConfigDir;
  const logLines: Array<{ event: string; fields: Record<string, unknown> }> = [];
  const log: Logger = { log: (_level, event, fields = {}) => logLines.push({ event, fields }) };

  /** The config file's content; the fail-closed test starts a second gateway from it without the policy section. */
  let config: Record<string, unknown>;

  function credentialFor(subject: string, on: RunningGateway = gateway): Promise<string> {
    return issueTestCredential(on, subject, [GROUP], 'upstream-login-test');
  }

  async function clientConfig(target: string, on: RunningGateway = gateway): Promise<pg.ClientConfig> {
    const subject = `upstream-${randomBytes(4).toString('hex')}`;
    return {
      host: on.pg.host,
      port: on.pg.port,
      user: subject,
      password: await credentialFor(subject, on),
      database: target,
      ssl: false,
    };
  }

  beforeAll(async () => {
    cluster = await startPgCluster({
      extraHba: [
        `host all ${roles.trust.name} 127.0.0.1/32 trust`,
        `host all ${roles.md5.name} 127.0.0.1/32 md5`,
        `host all ${roles.cleartext.name} 127.0.0.1/32 password`,
        `hostssl all ${roles.tls.name} 127.0.0.1/32 scram-sha-256`,
        // Without this line a plaintext login would fall through to the default scram rule and succeed.
        `hostnossl all ${roles.tls.name} 127.0.0.1/32 reject`,
      ],
    });
    const admin = new pg.Client({ connectionString: cluster.adminUrl });
    await admin.connect();
    try {
      for (const role of [roles.scram, roles.cleartext, roles.tls]) {
        await admin.query(`create role ${role.name} login password '${role.password}'`);
      }
      await admin.query(`set password_encryption = 'md5'`);
      await admin.query(`create role ${roles.md5.name} login password '${roles.md5.password}'`);
      await admin.query(`reset password_encryption`);
      await admin.query(`create role ${roles.trust.name} login`);
    } finally {
      await admin.end();
    }
    await enableSsl(cluster);

    configDir = await gatewayConfigDir('upstream-login');
    const { secret } = configDir;

    const upstream = { host: cluster.host, port: cluster.port, database: 'postgres' };
    const configTargets: Record<string, Record<string, unknown>> = {};
    for (const { target, role, tls } of targets) {
      configTargets[target] = {
        ...upstream,
        user: role.name,
        tls,
        ...(role.password ? { password_file: await secret(target, role.password) } : {}),
      };
    }
    // The TLS-only role over plain TCP: proves the target really insists on TLS.
    configTargets['tls-role-in-plaintext'] = { ...upstream, user: roles.tls.name, tls: 'disable', password_file: `secrets/via-tls` };
    configTargets['wrong-password'] = { ...upstream, user: roles.scram.name, password_file: await secret('wrong', WRONG_SERVICE_PASSWORD) };

    config = {
      ...configDir.base,
      targets: configTargets,
      limits: { upstream_connect_timeout: '5s' },
      policy: {
        grants: [{ groups: [GROUP], targets: Object.keys(configTargets), access: 'admin' }],
      },
    };
    gateway = await configDir.start(config, log);
  });

  afterAll(async () => {
    await gateway?.close();
    await cluster?.stop();
    await configDir?.remove();
  });

  it('stores the md5 role\'s password as an MD5 hash, so its login really is MD5', async () => {
    const rows = await query<{ md5: boolean }>(
      { connectionString: cluster.adminUrl },
      `select rolpassword like 'md5%' as md5 from pg_authid where rolname = '${roles.md5.name}'`,
    );
    expect(rows).toEqual([{ md5: true }]);
  });

  it.each(targets)('logs in to $target as $role.name (upstream TLS: $encrypted)', async ({ target, role, encrypted }) => {
    const rows = await query<{ who: string; ssl: boolean }>(
      await clientConfig(target),
      'select current_user as who, (select ssl from pg_stat_ssl where pid = pg_backend_pid()) as ssl',
    );
    expect(rows).toEqual([{ who: role.name, ssl: encrypted }]);
  });

  it('cannot reach the TLS-only role over plain TCP (the target\'s TLS requirement is real)', async () => {
    const error = await query(await clientConfig('tls-role-in-plaintext'), 'select 1').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseError);
    expect((error as DatabaseError).code).toBe('08001');
  });

  it('answers a wrong service password with 08001 "cannot connect to target", never the server\'s text or the password', async () => {
    const before = logLines.length;
    const error = await query(await clientConfig('wrong-password'), 'select 1').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseError);
    const refusal = error as DatabaseError;
    expect(refusal.severity).toBe('FATAL');
    expect(refusal.code).toBe('08001');
    expect(refusal.message).toBe('dbgate: cannot connect to target "wrong-password"');
    const everythingTheClientSaw = JSON.stringify({ ...refusal, message: refusal.message });
    expect(everythingTheClientSaw).not.toMatch(/password authentication failed/i);
    expect(everythingTheClientSaw).not.toContain(roles.scram.name);
    expect(everythingTheClientSaw).not.toContain(WRONG_SERVICE_PASSWORD);

    // The operator gets the server's reason in the gateway log, still without the password.
    const logged = logLines.slice(before).filter((line) => line.event === 'upstream.login_failed');
    expect(logged).toHaveLength(1);
    expect(String(logged[0]!.fields['reason'])).toMatch(/password authentication failed/);
    expect(JSON.stringify(logLines)).not.toContain(WRONG_SERVICE_PASSWORD);
  });

  it('keeps serving after a failed upstream login', async () => {
    const rows = await query<{ who: string }>(await clientConfig('via-scram'), 'select current_user as who');
    expect(rows).toEqual([{ who: roles.scram.name }]);
  });

  describe('without a policy section', () => {
    let unpoliced: RunningGateway;

    beforeAll(async () => {
      const { policy: _policy, ...withoutPolicy } = config;
      const configFile = join(configDir.dir, 'gateway-without-policy.yaml');
      await writeFile(configFile, stringify(withoutPolicy), { mode: 0o600 });
      const loaded = await loadGatewayConfig(configFile, {});
      expect(loaded.policy).toBeUndefined();
      unpoliced = await startGateway(loaded, { log: { log: () => {} } });
    });

    afterAll(async () => {
      await unpoliced?.close();
    });

    it('fails closed: the login works, but `select 1` is refused with 42501 "no policy configured"', async () => {
      const client = new pg.Client(await clientConfig('via-scram', unpoliced));
      await client.connect(); // the upstream login is not what stops it
      try {
        const error = await client.query('select 1').then(() => undefined, (e: unknown) => e);
        expect(error).toBeInstanceOf(DatabaseError);
        expect((error as DatabaseError).severity).toBe('ERROR');
        expect((error as DatabaseError).code).toBe('42501');
        expect((error as DatabaseError).message).toContain('no policy configured');
        // Refused, not broken: the connection stays open and refuses the next statement the same way.
        await expect(client.query('select 1')).rejects.toMatchObject({ code: '42501' });
      } finally {
        await client.end();
      }
    });
  });
});
