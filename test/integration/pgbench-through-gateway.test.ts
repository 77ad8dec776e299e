/**
 * pgbench, PostgreSQL's own load generator, straight at the gateway (no tunnel) the way the design promises any
 * client can connect: TLS, user = the identity, database = the target, PGPASSWORD = the dbgate credential.
 * It initialises its tables through the gateway (DDL, COPY, VACUUM) and then runs the read-only workload in each
 * query mode: simple protocol, extended protocol with unnamed statements, and named prepared statements.
 *
 * It runs as bob (group dba) on the dev stack's `scratch` target (database dbgate_scratch), where the demo policy
 * gives dba admin access and no guardrails: creating, filling and vacuuming tables is what that target is for, while
 * on prod-orders schema changes are held for an approval.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { directClient, mintCredential, sharedStack } from '../support/stack.js';

const PGBENCH_TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_history', 'pgbench_tellers'];
/** The dev stack's playground target and the database behind it (dba: admin, no guardrail rules). */
const SCRATCH_TARGET = 'scratch';
const SCRATCH_DATABASE = 'dbgate_scratch';

/** Runs pgbench to completion without blocking the event loop. */
function pgbench(env: NodeJS.ProcessEnv, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('pgbench', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

/** A number from pgbench's summary, e.g. "number of transactions actually processed: 12345". */
function summaryNumber(output: string, label: string): number | undefined {
  const match = new RegExp(`^${label}: (\\d+)`, 'm').exec(output);
  return match ? Number(match[1]) : undefined;
}

describe('pgbench through the gateway', () => {
  let admin: pg.Client;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    admin = await directClient(SCRATCH_DATABASE);
    const { gateway } = sharedStack();
    env = {
      ...process.env,
      PGHOST: gateway.pgHost,
      PGPORT: String(gateway.pgPort),
      PGUSER: 'bob',
      PGPASSWORD: await mintCredential('bob', { groups: ['dba'] }),
      PGDATABASE: SCRATCH_TARGET,
      PGSSLMODE: 'require',
      PGCONNECT_TIMEOUT: '10',
      PGAPPNAME: 'pgbench-through-gateway',
    };
  });

  afterAll(async () => {
    await admin?.query(`drop table if exists ${PGBENCH_TABLES.join(', ')}`);
    await admin?.end();
  });

  it('initialises scale 1 (pgbench -i -s 1): tables created and filled in the target', async () => {
    const result = await pgbench(env, ['-i', '-s', '1']);
    expect(result.stderr).not.toMatch(/error/i);
    expect(result.status).toBe(0);
    expect(result.stderr).toContain('done in');
    const { rows } = await admin.query(`select
        (select count(*)::int from pgbench_accounts) as accounts,
        (select count(*)::int from pgbench_branches) as branches,
        (select count(*)::int from pgbench_tellers) as tellers,
        (select tableowner from pg_tables where tablename = 'pgbench_accounts') as owner`);
    // The gateway logged in upstream with its service role: the tables belong to it, not to a user.
    expect(rows[0]).toEqual({ accounts: 100_000, branches: 1, tellers: 10, owner: 'dbgate_service' });
  }, 60_000);

  // The three modes are independent read-only runs of 5 s each: run them side by side.
  describe.concurrent('select-only workload, 4 clients, 2 threads, 5 s', () => {
    for (const mode of ['simple', 'extended', 'prepared'] as const) {
      it(`completes with no failed transactions in -M ${mode}`, async ({ expect }) => {
        const result = await pgbench(env, ['-S', '-n', '-c', '4', '-j', '2', '-T', '5', '-M', mode]);
        expect(result.stderr).not.toMatch(/error/i);
        expect(result.status).toBe(0);
        expect(result.stdout).toContain(`query mode: ${mode}`);
        expect(result.stdout).toMatch(/^number of failed transactions: 0 \(0\.000%\)$/m);
        expect(summaryNumber(result.stdout, 'number of transactions actually processed')).toBeGreaterThan(0);
      }, 30_000);
    }
  });
});
