/**
 * `dbgate-gateway dev --upstream … --json` as scripts and CI use it (the automation contract), on a PostgreSQL
 * server of this test's own so that the shared stack's service password is not rotated underneath other tests.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';

interface DevRun {
  stdoutLines: string[];
  stderr: string;
  code: number | null;
}

/** Starts dev, waits for its first stdout line, then SIGTERMs it and collects everything. */
async function runDevUntilReady(args: string[], onReady: (line: string) => Promise<void>): Promise<DevRun> {
  const child = spawn(process.execPath, ['bin/dbgate-gateway', 'dev', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('\n')) resolve();
    });
    child.once('exit', () => reject(new Error(`dev exited early: ${stderr}`)));
  });
  await onReady(stdout.split('\n')[0]!);
  child.kill('SIGTERM');
  const code = await exited;
  return { stdoutLines: stdout.split('\n').filter(Boolean), stderr, code };
}

describe('dbgate-gateway dev --upstream', () => {
  let cluster: PgCluster;
  let stateDir: string;

  beforeAll(async () => {
    cluster = await startPgCluster();
    stateDir = await mkdtemp(join(tmpdir(), 'dbgate-dev-contract-'));
  });

  afterAll(async () => {
    await cluster?.stop();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('prints exactly one ready line with pg, api, idp and state, serves the demo target, and stops on SIGTERM', async () => {
    const run = await runDevUntilReady(
      ['--upstream', cluster.adminUrl, '--state', stateDir, '--pg-port', '0', '--api-port', '0', '--idp-port', '0', '--json'],
      async (line) => {
        const ready = JSON.parse(line) as Record<string, unknown>;
        expect(Object.keys(ready).sort()).toEqual(['api', 'idp', 'pg', 'state']);
        expect(ready['pg']).toMatch(/^127\.0\.0\.1:\d+$/);
        expect(ready['api']).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
        expect(ready['state']).toBe(stateDir);
        const discovery = await (await fetch(`${String(ready['api'])}/.well-known/dbgate-configuration`)).json() as { pg: { port: number } };
        expect(`127.0.0.1:${discovery.pg.port}`).toBe(ready['pg']);
      },
    );
    expect(run.code).toBe(0);
    expect(run.stdoutLines).toHaveLength(1);
  });

  it('seeded the demo schema into the given server, owned by the service role, with the state store beside it', async () => {
    const url = new URL(cluster.adminUrl);
    url.pathname = '/prod_orders';
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      const { rows } = await client.query<{ tablename: string; tableowner: string }>(
        "select tablename, tableowner from pg_tables where schemaname = 'public' order by tablename");
      expect(rows).toEqual([
        { tablename: 'customers', tableowner: 'dbgate_service' },
        { tablename: 'orders', tableowner: 'dbgate_service' },
        { tablename: 'payments', tableowner: 'dbgate_service' },
      ]);
      const counts = await client.query<{ n: number }>('select count(*)::int as n from customers');
      expect(counts.rows[0]!.n).toBeGreaterThanOrEqual(1000);
      const databases = await client.query<{ datname: string }>("select datname from pg_database where datname = 'dbgate_state'");
      expect(databases.rowCount).toBe(1);
    } finally {
      await client.end();
    }
  });

  it('keeps its secrets in the state dir readable by the owner only, and restarts on the same state', async () => {
    for (const file of ['secrets/service-password', 'secrets/credential-signing.jwk', 'tls/gateway.key', 'gateway.yaml']) {
      expect(((await stat(join(stateDir, file))).mode & 0o777).toString(8)).toBe('600');
    }
    expect(((await stat(stateDir)).mode & 0o777).toString(8)).toBe('700');
    const config = await readFile(join(stateDir, 'gateway.yaml'), 'utf8');
    expect(config).not.toContain(cluster.superuserPassword);
    const key = await readFile(join(stateDir, 'secrets', 'credential-signing.jwk'), 'utf8');
    const second = await runDevUntilReady(['--upstream', cluster.adminUrl, '--state', stateDir, '--pg-port', '0', '--api-port', '0', '--json'], async () => {});
    expect(second.code).toBe(0);
    expect(await readFile(join(stateDir, 'secrets', 'credential-signing.jwk'), 'utf8')).toBe(key);
  });

  it('starts two dev gateways at the same moment on one server and a new state dir', async () => {
    // Both set up the same role and databases; without taking turns one of them failed ("tuple concurrently updated").
    // Both create the state dir's secrets and TLS pair; without care one could get the other's certificate beside
    // its own key, and fail to start ("key values mismatch"), or serve a pair that did not match.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const fresh = await mkdtemp(join(tmpdir(), 'dbgate-dev-race-'));
      try {
        const args = ['--upstream', cluster.adminUrl, '--state', fresh, '--pg-port', '0', '--api-port', '0', '--idp-port', '0', '--json'];
        const runs = await Promise.all([runDevUntilReady(args, async () => {}), runDevUntilReady(args, async () => {})]);
        expect(runs.map((run) => run.code)).toEqual([0, 0]);
        expect(runs.map((run) => run.stderr)).not.toContainEqual(expect.stringContaining('internal error'));
        const certificate = new X509Certificate(await readFile(join(fresh, 'tls', 'gateway.crt')));
        expect(certificate.checkPrivateKey(createPrivateKey(await readFile(join(fresh, 'tls', 'gateway.key'))))).toBe(true);
        expect((await readdir(fresh)).filter((name) => name.startsWith('tls-'))).toEqual([]);
      } finally {
        await rm(fresh, { recursive: true, force: true });
      }
    }
  });

  it('keeps serving when a dev stack with another state dir starts on the same server', async () => {
    // Each used to set the service role's password to its own state dir's, cutting the other off from its targets.
    const other = await mkdtemp(join(tmpdir(), 'dbgate-dev-other-'));
    try {
      const args = (state: string): string[] => ['--upstream', cluster.adminUrl, '--state', state, '--pg-port', '0', '--api-port', '0', '--idp-port', '0', '--json'];
      const first = await runDevUntilReady(args(stateDir), async (line) => {
        const second = await runDevUntilReady(args(other), async () => {});
        expect(second.code).toBe(0);
        const [host, port] = (JSON.parse(line) as { pg: string }).pg.split(':') as [string, string];
        const token = execFileSync(process.execPath, ['bin/dbgate-gateway', 'credential', 'mint', '--state', stateDir, '--user', 'alice',
          '--groups', 'engineering', '--ttl', '5m'], { encoding: 'utf8' }).trim();
        const client = new pg.Client({ host, port: Number(port), user: 'alice', password: token, database: 'prod-orders', ssl: false });
        await client.connect();
        try {
          const { rows } = await client.query<{ customers: number }>('select count(*)::int as customers from customers');
          expect(rows[0]!.customers).toBeGreaterThan(0);
        } finally {
          await client.end();
        }
      });
      expect(first.code).toBe(0);
      expect(await readFile(join(other, 'secrets', 'service-password'), 'utf8'))
        .toBe(await readFile(join(stateDir, 'secrets', 'service-password'), 'utf8'));
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('explains a bad --upstream in one line with exit 1, without echoing the password', async () => {
    const child = spawn(process.execPath, ['bin/dbgate-gateway', 'dev', '--upstream', 'postgres://postgres:hunter2@127.0.0.1:9/postgres',
      '--state', stateDir, '--pg-port', '0', '--api-port', '0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toContain('dbgate-gateway: cannot connect to --upstream');
    expect(stderr).not.toContain('hunter2');
  });
});
