/**
 * The search_path the gateway decides with is the server's, even where the statement text alone does not tell:
 * a SET rolled back (in the same message or later), undone by ROLLBACK TO SAVEPOINT, set LOCAL, or sent in a message
 * that failed. The demo policy holds writes to public.payments (rule hold-payments-writes, bob is a dba with write
 * access): if the gateway believed the search_path were pg_catalog while the server still had public, an
 * unqualified `UPDATE payments` would slip past the rule and run on public.payments.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/raw-client.js';
import { mintCredential, openTunnel, type OpenTunnel } from '../support/stack.js';

const WRITE = 'update payments set status = status where id = 1';

describe('search_path tracking', () => {
  let tunnel: OpenTunnel;
  let client: RawClient;

  beforeAll(async () => {
    tunnel = await openTunnel('bob', { credential: await mintCredential('bob', { groups: ['dba'] }) });
    client = await RawClient.login({ host: tunnel.host, port: tunnel.port, user: 'bob', database: 'prod-orders', password: tunnel.password });
  });

  afterAll(async () => {
    client?.close();
    await tunnel?.close();
  });

  async function run(sql: string): Promise<void> {
    const exchange = await client.query(sql);
    expect(exchange.errors, sql).toEqual([]);
  }

  async function expectHeld(): Promise<void> {
    const exchange = await client.query(WRITE);
    expect(exchange.errors).toHaveLength(1);
    expect(exchange.errors[0]!['D']).toBe('rule: hold-payments-writes');
    // And the server agrees about the search_path: the gateway's own question never reached the client.
    const shown = await client.query('show search_path');
    expect(shown.rows).toEqual([['"$user", public']]);
  }

  it('a plain SET is tracked: the write then names a table the server cannot find', async () => {
    await run('set search_path = pg_catalog');
    const exchange = await client.query(WRITE);
    expect(exchange.errors).toHaveLength(1);
    expect(exchange.errors[0]!['C']).toBe('42P01');
    await run('reset search_path');
    await expectHeld();
  });

  it('set_config(\'search_path\', …) as a SELECT of its own is tracked like SET (pg_dump scripts start with one)', async () => {
    const exchange = await client.query("select pg_catalog.set_config('search_path', 'pg_catalog', false)");
    expect(exchange.errors).toEqual([]);
    expect(exchange.rows).toEqual([['pg_catalog']]);
    const write = await client.query(WRITE);
    expect(write.errors[0]!['C']).toBe('42P01');
    await run("select set_config('search_path', '\"$user\", public', false)");
    await expectHeld();
  });

  it('set_config(…, true) ends with its transaction, like SET LOCAL', async () => {
    await run('begin');
    await run("select set_config('search_path', 'pg_catalog', 't')");
    expect((await client.query(WRITE)).errors[0]!['C']).toBe('42P01');
    await run('commit');
    await expectHeld();
  });

  it('set_config(\'search_path\', …) inside a larger SELECT is still refused: it may run any number of times', async () => {
    for (const sql of [
      "select set_config('search_path', 'pg_catalog', false) from generate_series(1, 2)",
      "select set_config('search_path', 'pg_catalog', false) limit 0",
      "select 1, set_config('search_path', 'pg_catalog', false)",
    ]) {
      const exchange = await client.query(sql);
      expect(exchange.errors[0]?.['D'], sql).toBe('rule: builtin:session-escape');
    }
    await expectHeld();
  });

  it('a SET rolled back in the same message', async () => {
    await run('begin; set search_path = pg_catalog; rollback');
    await expectHeld();
  });

  it('a SET rolled back by a later message', async () => {
    await run('begin');
    await run('set search_path = pg_catalog');
    await run('rollback');
    await expectHeld();
  });

  it('a SET undone by ROLLBACK TO SAVEPOINT, inside the transaction', async () => {
    await run('begin');
    await run('savepoint a');
    await run('set search_path = pg_catalog');
    await run('rollback to savepoint a');
    const exchange = await client.query(WRITE);
    expect(exchange.errors[0]!['D']).toBe('rule: hold-payments-writes');
    await run('rollback');
    await expectHeld();
  });

  it('SET LOCAL ends with its transaction', async () => {
    await run('begin');
    await run('set local search_path = pg_catalog');
    await run('commit');
    await expectHeld();
  });

  it('a SET in a message that failed after it', async () => {
    const exchange = await client.query('set search_path = pg_catalog; select 1/0');
    expect(exchange.errors[0]!['C']).toBe('22012');
    await expectHeld();
  });

  it('a SET in a transaction that failed, then ROLLBACK', async () => {
    await run('begin');
    await run('set search_path = pg_catalog');
    expect((await client.query('select 1/0')).errors[0]!['C']).toBe('22012');
    await run('rollback');
    await expectHeld();
  });
});
