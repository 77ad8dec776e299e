/**
 * One `dbgate connect` tunnel carrying many connections at once, as an application's connection pool uses it:
 * every local connection gets its own gateway connection and its own upstream backend, answers never cross, and
 * nothing stays behind upstream once the clients hang up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { activeServiceBackends, directClient, eventually, openTunnel, type OpenTunnel } from '../support/stack.js';

const CONNECTIONS = 100;
/** Marks this file's upstream backends, so other test files' connections on the shared gateway do not count. */
const APPLICATION_NAME = 'tunnel-concurrency-test';

describe('tunnel concurrency', () => {
  let tunnel: OpenTunnel;
  let admin: pg.Client;

  beforeAll(async () => {
    tunnel = await openTunnel('alice');
    admin = await directClient();
  });

  afterAll(async () => {
    await admin?.end();
    await tunnel?.close();
  });

  it(`serves ${CONNECTIONS} simultaneous connections through one tunnel, each on its own backend, then drains them all`, async () => {
    const clients = Array.from({ length: CONNECTIONS }, () => new pg.Client({ ...tunnel.pgConfig, application_name: APPLICATION_NAME }));
    try {
      await Promise.all(clients.map((client) => client.connect()));
      const answers = await Promise.all(clients.map(async (client, index) => {
        const { rows } = await client.query<{ pid: number; index: number }>('select pg_backend_pid() as pid, $1::int as index', [index]);
        return rows;
      }));

      // Each client got exactly its own answer back.
      expect(answers.map((rows) => rows.map((row) => row.index))).toEqual(clients.map((_, index) => [index]));
      // And each ran on a backend of its own.
      const pids = answers.map((rows) => rows[0]!.pid);
      expect(new Set(pids).size).toBe(CONNECTIONS);
      // Upstream agrees: exactly these backends exist for this file's connections (which also proves the
      // application_name filter used for the drain check below really sees them).
      const upstream = await activeServiceBackends(admin, APPLICATION_NAME);
      expect(upstream.map((backend) => backend.pid).sort((a, b) => a - b)).toEqual([...pids].sort((a, b) => a - b));
      expect(tunnel.tunnel.openConnections).toBe(CONNECTIONS);
    } finally {
      await Promise.allSettled(clients.map((client) => client.end()));
    }

    expect(await eventually(async () => (await activeServiceBackends(admin, APPLICATION_NAME)).length === 0, 10_000)).toBe(true);
    expect(await eventually(async () => tunnel.tunnel.openConnections === 0, 10_000)).toBe(true);
  });

  it('frees every upstream backend, busy ones included, when the tunnel itself goes away (dbgate connect killed)', async () => {
    const applicationName = 'tunnel-concurrency-abrupt';
    const doomed = await openTunnel('alice');
    const clients = Array.from({ length: 20 }, () => new pg.Client({ ...doomed.pgConfig, application_name: applicationName }));
    // The clients will see their connections drop; that is the point, not a failure.
    for (const client of clients) client.on('error', () => {});
    await Promise.all(clients.map((client) => client.connect()));
    const sleeping = clients.slice(0, 5).map((client) => client.query('select pg_sleep(30)').catch((error: unknown) => error));
    expect(await eventually(async () =>
      (await activeServiceBackends(admin, applicationName)).filter((b) => b.state === 'active' && b.query === 'select pg_sleep(30)').length === 5,
    10_000)).toBe(true);
    expect(await activeServiceBackends(admin, applicationName)).toHaveLength(20);

    await doomed.close(); // destroys every relayed connection: no Terminate reaches the gateway

    // A backend left running pg_sleep(30) would stay for half a minute: the gateway must cancel it, not just hang up.
    expect(await eventually(async () => (await activeServiceBackends(admin, applicationName)).length === 0, 5_000)).toBe(true);
    const outcomes = await Promise.all(sleeping);
    expect(outcomes.every((outcome) => outcome instanceof Error)).toBe(true);
    await Promise.allSettled(clients.map((client) => client.end()));
  });
});
