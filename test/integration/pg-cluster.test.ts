import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgBinDir, startPgBouncer, startPgCluster, type PgCluster } from '../support/pg-cluster.js';

/** Major version of the binaries the harness picked, e.g. "15", so the check follows whatever is installed. */
function installedMajor(): string {
  const out = execFileSync(join(pgBinDir(), 'postgres'), ['--version'], { encoding: 'utf8' });
  const match = /(\d+)(?:\.\d+)?/.exec(out);
  if (!match?.[1]) throw new Error(`cannot parse postgres --version: ${out}`);
  return match[1];
}

async function queryOnce<T extends pg.QueryResultRow>(config: pg.ClientConfig, sql: string): Promise<T[]> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('pg-cluster harness', () => {
  let cluster: PgCluster;

  beforeAll(async () => {
    cluster = await startPgCluster();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('accepts a SCRAM login over TCP with adminUrl', async () => {
    const rows = await queryOnce<{ version: string; peer: string | null }>(
      { connectionString: cluster.adminUrl },
      // A non-null client address proves this was TCP (a `host ... scram-sha-256` rule), not the trusted socket.
      `select version() as version, (select host(client_addr) from pg_stat_activity where pid = pg_backend_pid()) as peer`,
    );
    expect(rows[0]?.version).toContain(`PostgreSQL ${installedMajor()}`);
    expect(rows[0]?.peer).toBe('127.0.0.1');
  });

  it('rejects a wrong password (so TCP really is password-authenticated)', async () => {
    const bad = cluster.adminUrl.replace(`:${encodeURIComponent(cluster.superuserPassword)}@`, ':wrong@');
    await expect(queryOnce({ connectionString: bad }, 'select 1')).rejects.toThrow(/password authentication failed/);
  });

  it('proxies queries through pgbouncer in session mode with SCRAM on both legs', async () => {
    const password = 'app-secret';
    await queryOnce({ connectionString: cluster.adminUrl }, `create role app_user login password '${password}'`);
    const bouncer = await startPgBouncer({ upstream: cluster, database: 'postgres', user: 'app_user', password });
    try {
      const rows = await queryOnce<{ one: number; who: string }>(
        { host: bouncer.host, port: bouncer.port, database: 'postgres', user: 'app_user', password },
        'select 1 as one, current_user as who',
      );
      expect(rows).toEqual([{ one: 1, who: 'app_user' }]);
    } finally {
      await bouncer.stop();
      await bouncer.stop(); // idempotent
    }
  });
});
