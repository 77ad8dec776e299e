/**
 * The search_path the gateway decides with is the server's, even where the statement text alone does not tell:
 * a SET rolled back (in the same message or later), undone by ROLLBACK TO SAVEPOINT, set LOCAL, or sent in a message
 * that failed. The demo policy holds writes to public.payments (rule hold-payments-writes, bob is a dba with write
 * access): if the gateway believed the search_path were pg_catalog while the server still had public, an
 * unqualified `UPDATE payments` would slip past the rule and run on public.payments.
 */
import { serialize } from 'pg-protocol';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/raw-client.js';
import { directClient, mintCredential, openTunnel, type OpenTunnel } from '../support/stack.js';

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

  describe('statements sent before the server has answered a search_path change', () => {
    let admin: pg.Client;

    /** The row the writes would change: its xmin moves with every UPDATE that reaches it. */
    async function paymentVersion(): Promise<string> {
      return (await admin.query<{ xmin: string }>('select xmin::text from public.payments where id = 1')).rows[0]!.xmin;
    }

    beforeAll(async () => {
      admin = await directClient();
      // A schema of the test's own with a harmless table of the same name: a statement judged with this schema on the
      // search_path names no table a rule protects.
      await admin.query('create schema if not exists probe_elsewhere');
      await admin.query('create table if not exists probe_elsewhere.payments (id int primary key, status text)');
      await admin.query("insert into probe_elsewhere.payments values (1, 'x') on conflict do nothing");
      await admin.query('grant usage on schema probe_elsewhere to dbgate_service');
      await admin.query('grant all on probe_elsewhere.payments to dbgate_service');
    });

    afterAll(async () => {
      await admin?.query('drop schema if exists probe_elsewhere cascade');
      await admin?.end();
    });

    it('two simple queries in one write: the second waits for the first\'s search_path', async () => {
      await run('set search_path = probe_elsewhere');
      const before = await paymentVersion();
      const exchange = await client.send([serialize.query('set search_path = public'), serialize.query(WRITE)], 2);
      expect(exchange.errors).toHaveLength(1);
      expect(exchange.errors[0]!['D']).toBe('rule: hold-payments-writes');
      expect(await paymentVersion()).toBe(before);
      await run('reset search_path');
      await expectHeld();
    });

    it('a statement pipelined after a search_path change, before Sync, is refused', async () => {
      await run('set search_path = probe_elsewhere');
      const before = await paymentVersion();
      const exchange = await client.send([
        serialize.parse({ text: 'set search_path = public' }), serialize.bind({}), serialize.execute({}),
        serialize.parse({ text: WRITE }), serialize.bind({}), serialize.execute({}),
        serialize.sync(),
      ]);
      expect(exchange.errors).toHaveLength(1);
      expect(exchange.errors[0]!['D']).toBe('rule: builtin:session-change-pending');
      expect(exchange.errors[0]!['H']).toContain('Sync');
      expect(await paymentVersion()).toBe(before);
      // The refusal failed the pipeline's implicit transaction, and the SET with it: the gateway asked after the Sync.
      expect((await client.query('show search_path')).rows).toEqual([['probe_elsewhere']]);
      await run('reset search_path');
      await expectHeld();
    });

    it('a prepared statement is judged again at Bind when the search_path changed since its Parse', async () => {
      await run('set search_path = probe_elsewhere');
      // Judged on probe_elsewhere: its own payments table, no rule. The server prepares it.
      const prepared = await client.send([serialize.parse({ name: 'probe_write', text: WRITE }), serialize.sync()]);
      expect(prepared.errors).toEqual([]);
      await run('reset search_path');
      const before = await paymentVersion();
      // PostgreSQL parses it again on the new search_path: it would now write public.payments.
      const exchange = await client.send([
        serialize.bind({ statement: 'probe_write' }), serialize.execute({}), serialize.sync(),
      ]);
      expect(exchange.errors).toHaveLength(1);
      expect(exchange.errors[0]!['D']).toBe('rule: hold-payments-writes');
      expect(await paymentVersion()).toBe(before);
      // Back on the search_path it was judged on, it runs (on probe_elsewhere.payments).
      await run('set search_path = probe_elsewhere');
      const again = await client.send([serialize.bind({ statement: 'probe_write' }), serialize.execute({}), serialize.sync()]);
      expect(again.errors).toEqual([]);
      expect(await paymentVersion()).toBe(before);
      await run('reset search_path');
      await expectHeld();
    });

    it('a Bind of a statement PREPAREd in SQL is refused: dbgate never judged it', async () => {
      await run('prepare probe_sql as select 1');
      const exchange = await client.send([serialize.bind({ statement: 'probe_sql' }), serialize.execute({}), serialize.sync()]);
      expect(exchange.errors).toHaveLength(1);
      expect(exchange.errors[0]!['D']).toBe('rule: builtin:unknown-prepared-statement');
      await run('deallocate probe_sql');
    });
  });

  it('a SET in a transaction that failed, then ROLLBACK', async () => {
    await run('begin');
    await run('set search_path = pg_catalog');
    expect((await client.query('select 1/0')).errors[0]!['C']).toBe('22012');
    await run('rollback');
    await expectHeld();
  });
});
