/**
 * The policy engine against attempts to get around it, on the demo schema and the demo policy, through tunnel and
 * gateway against real PostgreSQL. Every case asserts what the client got, that the database did not change
 * (tables exist, row counts and contents the same), and that no unmasked value of a masked column appears anywhere
 * in the bytes the client received.
 */
import { serialize } from 'pg-protocol';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDataRowColumns } from '../../src/gateway/masking/row-messages.js';
import { RawClient, type Exchange } from '../support/raw-client.js';
import { directClient, mintCredential, openTunnel, type OpenTunnel } from '../support/stack.js';

type Expected = 'ok' | 'denied' | 'held';

interface Case {
  name: string;
  sql: string;
  expect: Expected;
  /** A substring the denial message must contain (what and why). */
  because?: string;
  /** For ok cases: a check on the returned rows. */
  rows?: (rows: Array<Array<string | null>>) => void;
}

const masked = (value: string | null): boolean => value === null || /\*{3,}/.test(value) || value.startsWith('[redacted]') || value.startsWith('h:');

/** Cases for alice (engineering: read access, PII masked). */
const ALICE_CASES: Case[] = [
  // masking through every way of selecting a column
  { name: 'select * masks email, phone and ssn', sql: 'select * from customers order by id limit 5', expect: 'ok',
    rows: (rows) => rows.forEach((row) => { expect(masked(row[2]!)).toBe(true); expect(masked(row[3]!)).toBe(true); expect(masked(row[4]!)).toBe(true); }) },
  { name: 'a single masked column', sql: 'select email from customers', expect: 'ok', rows: (rows) => expect(rows.every((r) => masked(r[0]!))).toBe(true) },
  { name: 'lower(email)', sql: 'select lower(email) from customers limit 20', expect: 'ok' },
  { name: 'upper(email) concatenated', sql: "select upper(email) || ' <-' from customers limit 20", expect: 'ok' },
  { name: 'row_to_json of the row', sql: 'select row_to_json(c) from customers c limit 20', expect: 'ok' },
  { name: 'to_jsonb of the row', sql: 'select to_jsonb(c) from customers c limit 20', expect: 'ok' },
  { name: 'json_agg of emails', sql: 'select json_agg(email) from customers', expect: 'ok' },
  { name: 'jsonb_build_object', sql: "select jsonb_build_object('e', email, 's', ssn) from customers limit 20", expect: 'ok' },
  { name: 'string_agg of emails', sql: "select string_agg(email, ',') from customers", expect: 'ok' },
  { name: 'array_agg of ssns', sql: 'select array_agg(ssn) from customers', expect: 'ok' },
  { name: 'cast to varchar', sql: 'select email::varchar(300) from customers limit 20', expect: 'ok' },
  { name: 'cast phone to text', sql: 'select cast(phone as text) from customers limit 20', expect: 'ok' },
  { name: 'CTE', sql: 'with x as (select email, ssn from customers) select * from x limit 20', expect: 'ok' },
  { name: 'subquery', sql: 'select * from (select ssn from customers) s limit 20', expect: 'ok' },
  { name: 'union all', sql: "select email from customers union all select 'nobody@example.org' limit 30", expect: 'ok' },
  // values computed from masked columns: PostgreSQL attributes them to no table, the lineage does
  { name: 'length(email) is masked (NULL)', sql: 'select id, length(email) from customers order by id limit 5', expect: 'ok',
    rows: (rows) => rows.forEach((row) => { expect(row[0]).not.toBeNull(); expect(row[1]).toBeNull(); }) },
  { name: 'reverse(ssn)', sql: 'select reverse(ssn) from customers limit 20', expect: 'ok', rows: (rows) => expect(rows.every((r) => masked(r[0]!))).toBe(true) },
  { name: 'reverse(email)', sql: 'select reverse(email) from customers limit 20', expect: 'ok', rows: (rows) => expect(rows.every((r) => masked(r[0]!))).toBe(true) },
  { name: "replace(email, '@', ' at ')", sql: "select replace(email, '@', ' at ') from customers limit 20", expect: 'ok',
    rows: (rows) => expect(rows.every((r) => masked(r[0]!))).toBe(true) },
  { name: 'a comparison in the select list', sql: "select email = 'kimberly.lee1@example.com' from customers limit 5", expect: 'ok',
    rows: (rows) => expect(rows.every((r) => r[0] === null)).toBe(true) },
  { name: 'substr of an ssn', sql: 'select substr(ssn, 1, 3), substr(ssn, 8) from customers limit 20', expect: 'ok',
    rows: (rows) => expect(rows.every((r) => masked(r[0]!) && masked(r[1]!))).toBe(true) },
  { name: 'a computed column through a subquery', sql: 'select r from (select reverse(phone) r from customers) s limit 20', expect: 'ok',
    rows: (rows) => expect(rows.every((r) => masked(r[0]!))).toBe(true) },
  { name: 'a computed column through a star over a CTE', sql: 'with x as (select id, reverse(ssn) r from customers) select * from x limit 20', expect: 'ok',
    rows: (rows) => expect(rows.every((r) => masked(r[1]!))).toBe(true) },
  { name: 'a computed column after a star', sql: 'select *, reverse(ssn) from customers order by id limit 5', expect: 'ok',
    rows: (rows) => rows.forEach((row) => { expect(row[1]).not.toBeNull(); expect(masked(row[6]!)).toBe(true); }) },
  { name: 'a computed column through UNION ALL', sql: "select reverse(ssn) from customers union all select 'x' limit 20", expect: 'ok',
    rows: (rows) => expect(rows.every((r) => masked(r[0]!))).toBe(true) },
  { name: 'a JSON value built from the row is masked whole', sql: 'select id, row_to_json(c) from customers c order by id limit 5', expect: 'ok',
    rows: (rows) => rows.forEach((row) => expect(row[1]).toBe('"****"')) },
  { name: 'a whole-row reference', sql: 'select c from customers c order by id limit 5', expect: 'ok',
    rows: (rows) => rows.forEach((row) => expect(masked(row[0]!)).toBe(true)) },
  { name: "a cursor over the table (psql's FETCH_COUNT) is masked by catalog", expect: 'ok',
    sql: 'begin; declare c no scroll cursor for select * from customers order by id; fetch 5 from c; close c; commit',
    rows: (rows) => rows.forEach((row) => { expect(row[1]).not.toBeNull(); expect(masked(row[2]!)).toBe(true); }) },
  { name: 'a cursor over computed masked values', sql: 'declare c cursor with hold for select reverse(ssn) from customers', expect: 'denied',
    because: 'cursor' },
  // inference: conditions on masked columns would reveal their values without showing them
  { name: 'UNION (its de-duplication reveals whether a value exists)', sql: "select email from customers union select 'kimberly.lee1@example.com'", expect: 'denied', because: 'masked for you' },
  { name: 'a predicate on a masked column', sql: "select id from customers where email = 'kimberly.lee1@example.com'", expect: 'denied', because: 'masked for you' },
  { name: 'a LIKE probe through lower()', sql: "select count(*) from customers where lower(email) like 'k%'", expect: 'denied' },
  { name: 'ordering by a masked column', sql: 'select id from customers order by ssn limit 3', expect: 'denied' },
  { name: 'grouping by a masked column', sql: 'select count(*) from customers group by phone', expect: 'denied' },
  { name: 'joining on a masked column', sql: 'select 1 from customers a join customers b on a.email = b.email limit 1', expect: 'denied' },
  { name: 'a CTE-derived masked column in WHERE', sql: "with x as (select email as e from customers) select count(*) from x where e like 'a%'", expect: 'denied' },
  { name: 'card numbers', sql: 'select card_number from payments limit 20', expect: 'ok' },
  { name: 'a count of a masked column is a count, not a masked value', sql: 'select count(email), count(*) from customers', expect: 'ok',
    rows: (rows) => expect(rows[0]![0]).toBe(rows[0]![1]) },
  { name: 'card number through substr', sql: 'select substr(card_number, 1, 16) from payments limit 20', expect: 'ok' },
  { name: 'card number formatted with spaces', sql: "select regexp_replace(card_number, '(\\d{4})', '\\1 ', 'g') from payments limit 20", expect: 'ok' },
  { name: 'a join', sql: 'select c.email, o.total_cents from customers c join orders o on o.customer_id = c.id limit 20', expect: 'ok' },
  { name: 'a view over customers', sql: 'select * from adversarial_contacts limit 20', expect: 'ok' },
  { name: 'unmasked columns stay intact', sql: 'select id, name from customers order by id limit 1', expect: 'ok',
    rows: (rows) => expect(rows[0]).toEqual(['1', 'Kimberly Lee']) },
  { name: 'explain without analyze', sql: 'explain select * from customers', expect: 'ok' },
  { name: 'a string literal that looks like a drop', sql: "select 'drop table customers' as text", expect: 'ok' },
  { name: 'a dollar-quoted literal that looks like two statements', sql: 'select $x$; drop table customers; $x$ as text', expect: 'ok' },
  // writes and schema changes
  { name: 'insert', sql: "insert into orders (customer_id, status, total_cents, created_at) values (1, 'pending', 1, now())", expect: 'held', because: 'writes by engineering need an approval' },
  { name: 'update with where', sql: "update customers set name = 'x' where id = 1", expect: 'held' },
  { name: 'delete without where', sql: 'delete from orders', expect: 'denied', because: 'without a WHERE clause' },
  { name: 'update without where', sql: "update customers set name = 'x'", expect: 'denied', because: 'without a WHERE clause' },
  { name: 'a delete hidden in a CTE', sql: 'with d as (delete from orders where id = 1 returning *) select * from d', expect: 'held' },
  { name: 'EXPLAIN ANALYZE of a delete', sql: 'explain analyze delete from orders where id = 1', expect: 'held' },
  // Even approved, these would copy the masked columns into a table where they read in clear.
  { name: 'CREATE TABLE AS', sql: 'create table stolen as select * from customers', expect: 'denied', because: 'could be read in clear' },
  { name: 'SELECT INTO', sql: 'select * into stolen2 from customers', expect: 'denied', because: 'could be read in clear' },
  { name: 'INSERT … SELECT of a masked column', sql: 'insert into orders (customer_id, status, total_cents, created_at) select id, email, 0, now() from customers',
    expect: 'denied', because: 'could be read in clear' },
  { name: 'COPY TO stdout of a masked table', sql: 'copy customers to stdout', expect: 'denied', because: 'COPY' },
  { name: 'COPY of a query', sql: 'copy (select email from customers) to stdout', expect: 'denied' },
  { name: 'COPY FROM', sql: 'copy orders from stdin', expect: 'held' },
  { name: 'COPY TO PROGRAM', sql: "copy customers to program 'cat > /tmp/x'", expect: 'denied' },
  { name: 'truncate', sql: 'truncate orders', expect: 'held' },
  { name: 'drop table', sql: 'drop table customers', expect: 'held', because: 'schema changes need an approval' },
  { name: 'drop table with comments and odd case', sql: '/* harmless */ DrOp  TaBlE "customers" -- really', expect: 'held' },
  { name: 'alter table', sql: 'alter table customers add column x int', expect: 'held' },
  { name: 'select then drop in one message: nothing runs', sql: 'select 1; drop table customers', expect: 'held' },
  { name: 'select then unbounded delete in one message', sql: 'select 1; delete from orders', expect: 'denied' },
  { name: 'DO block', sql: 'do $$ begin delete from orders where id = 1; end $$', expect: 'denied' },
  { name: 'DO with dynamic SQL', sql: "do $$ begin execute 'drop table customers'; end $$", expect: 'denied' },
  { name: 'a procedure call', sql: 'call some_procedure()', expect: 'denied' },
  { name: 'PREPARE of a write', sql: 'prepare p as delete from orders where id = 1', expect: 'held' },
  { name: 'SQL-level EXECUTE', sql: 'execute p', expect: 'denied' },
  { name: 'nextval (a write)', sql: "select nextval('orders_id_seq')", expect: 'held' },
  { name: 'FOR UPDATE (a write: it locks rows)', sql: 'select * from customers where id = 1 for update', expect: 'held' },
  { name: 'grant', sql: 'grant select on customers to public', expect: 'held' },
  { name: 'create role', sql: 'create role intruder superuser', expect: 'held' },
  // dangerous functions
  { name: 'pg_read_file', sql: "select pg_read_file('/etc/passwd')", expect: 'denied' },
  { name: 'pg_ls_dir', sql: "select pg_ls_dir('.')", expect: 'denied' },
  { name: 'lo_import', sql: "select lo_import('/etc/passwd')", expect: 'denied' },
  { name: 'dblink', sql: "select * from dblink('host=evil', 'select 1') as t(x int)", expect: 'denied' },
  { name: 'query_to_xml runs a SQL string', sql: "select query_to_xml('delete from orders', true, true, '')", expect: 'denied' },
  { name: 'an unknown function', sql: 'select my_exfiltrate(email) from customers', expect: 'denied' },
  { name: 'pg_terminate_backend', sql: 'select pg_terminate_backend(1)', expect: 'denied' },
  // session escapes
  { name: 'SET ROLE', sql: 'set role postgres', expect: 'denied' },
  { name: 'SET SESSION AUTHORIZATION', sql: 'set session authorization postgres', expect: 'denied' },
  { name: "set_config('role')", sql: "select set_config('role', 'postgres', false)", expect: 'denied' },
  { name: 'a masked value as an advisory lock key (pg_locks shows it)', sql: "select pg_advisory_lock(replace(ssn, '-', '')::bigint) from customers where id = 1",
    expect: 'denied', because: 'its effect or row count shows the value' },
  { name: 'a masked value as a row count (generate_series)', sql: 'select count(*) from (select generate_series(1, ascii(email)) from customers where id = 1) s',
    expect: 'denied', because: 'row count shows the value' },
  { name: 'a masked value as a LIMIT', sql: 'select id from orders limit (select length(email) from customers where id = 1)',
    expect: 'denied', because: 'limiting the number of rows' },
  { name: 'planner statistics (sample values of masked columns)', sql: "select histogram_bounds from pg_stats where attname = 'ssn'",
    expect: 'denied', because: 'masked ones included' },
  { name: 'a masked value stored in a setting (SHOW would read it back)', sql: "select set_config('x.y', email, false) from customers where id = 1",
    expect: 'denied', because: 'its effect or row count shows the value' },
  { name: 'standard_conforming_strings off', sql: 'set standard_conforming_strings = off', expect: 'denied' },
  { name: 'a non-UTF8 client_encoding', sql: "set client_encoding = 'SJIS'", expect: 'denied' },
  { name: 'a syntax error', sql: 'selec * from customers', expect: 'denied' },
];

/** Cases for bob (dba: write on prod-orders, no masking). */
const BOB_CASES: Case[] = [
  { name: 'dba reads unmasked data', sql: 'select email from customers order by id limit 1', expect: 'ok',
    rows: (rows) => expect(rows[0]![0]).toBe('kimberly.lee1@example.com') },
  { name: 'dba update with where runs', sql: "update customers set name = name where id = 1", expect: 'ok' },
  { name: 'dba delete without where is denied', sql: 'delete from orders', expect: 'denied' },
  { name: 'dba writes to payments are held', sql: 'update payments set status = status where id = 1', expect: 'held', because: 'payments' },
  { name: 'dba drop is held too', sql: 'drop table orders', expect: 'held' },
  { name: 'dba truncate is held', sql: 'truncate payments', expect: 'held' },
];

interface Snapshot {
  tables: string[];
  digest: string;
}

async function snapshot(admin: pg.Client): Promise<Snapshot> {
  // Other test files keep scratch tables of their own in public while they run (psql_copy_test,
  // node_pg_pipeline_items); what matters here is that no statement of this file created or dropped one.
  const tables = await admin.query<{ tablename: string }>(
    "select tablename from pg_tables where schemaname = 'public' and tablename not in ('psql_copy_test', 'node_pg_pipeline_items') order by 1");
  const digest = await admin.query<{ d: string }>(
    // Rows from id 500,000 up belong to the masking property test, which runs concurrently.
    `select md5((select string_agg(c::text, '|' order by id) from customers c where id < 500000) ||
                (select string_agg(o::text, '|' order by id) from orders o) ||
                (select string_agg(p::text, '|' order by id) from payments p where id < 500000)) as d`);
  return { tables: tables.rows.map((row) => row.tablename), digest: digest.rows[0]!.d };
}

describe('policy against adversarial statements (demo policy, prod-orders)', () => {
  let admin: pg.Client;
  let sensitive: string[];
  let before: Snapshot;
  const tunnels: OpenTunnel[] = [];
  const clients = new Map<string, RawClient>();

  async function clientFor(user: 'alice' | 'bob'): Promise<RawClient> {
    const existing = clients.get(user);
    if (existing) return existing;
    const groups = user === 'bob' ? ['dba'] : ['engineering'];
    const tunnel = await openTunnel(user, { credential: await mintCredential(user, { groups }) });
    tunnels.push(tunnel);
    const client = await RawClient.login({ host: tunnel.host, port: tunnel.port, user, database: 'prod-orders', password: tunnel.password });
    clients.set(user, client);
    return client;
  }

  function assertNoLeak(exchange: Exchange, user: string): void {
    if (user !== 'alice') return;
    // Also with separators removed: a card number reformatted as '4111 1111 …' is still that card number.
    const received = exchange.bytes.toString('utf8');
    const compact = received.replace(/[ -]/g, '');
    const leaked = sensitive.filter((value) => received.includes(value) || (/^\d{13,19}$/.test(value) && compact.includes(value)));
    expect(leaked.slice(0, 3), 'unmasked values reached the client').toEqual([]);
  }

  beforeAll(async () => {
    admin = await directClient();
    await admin.query('create or replace view adversarial_contacts as select name, email, phone from customers');
    await admin.query('grant select on adversarial_contacts to dbgate_service');
    const values = await admin.query<{ v: string }>(
      'select email as v from customers union all select phone from customers union all select ssn from customers union all select card_number from payments');
    sensitive = values.rows.map((row) => row.v);
    // Formatted variants a transformation could produce.
    sensitive.push(...values.rows.map((row) => row.v.toUpperCase()).filter((v) => v.includes('@')));
    // Reversed and rewritten values: no detector recognises them, only lineage masks them.
    sensitive.push(...values.rows.map((row) => [...row.v].reverse().join('')));
    sensitive.push(...values.rows.filter((row) => row.v.includes('@')).map((row) => row.v.replace('@', ' at ')));
    // The local part of an email on its own (as a partial mask of a reversed email would keep it, reversed).
    sensitive.push(...values.rows.filter((row) => row.v.includes('@')).map((row) => [...row.v.split('@')[0]!].reverse().join('')));
    before = await snapshot(admin);
  });

  afterAll(async () => {
    for (const client of clients.values()) client.close();
    for (const tunnel of tunnels) await tunnel.close();
    await admin?.query('drop view if exists adversarial_contacts');
    await admin?.end();
  });

  const table: Array<[string, Case]> = [
    ...ALICE_CASES.map((c): [string, Case] => ['alice', c]),
    ...BOB_CASES.map((c): [string, Case] => ['bob', c]),
  ];

  it('has at least 60 cases', () => {
    expect(table.length).toBeGreaterThanOrEqual(60);
  });

  for (const [user, testCase] of table) {
    it(`${user}: ${testCase.name} → ${testCase.expect}`, async () => {
      const client = await clientFor(user as 'alice' | 'bob');
      const exchange = await client.query(testCase.sql);
      if (testCase.expect === 'ok') {
        expect(exchange.errors).toEqual([]);
        // A result to inspect: a query that returned nothing would prove nothing about masking. (A write that ran
        // reports its own command tag instead.)
        const ranWrite = exchange.messages.some((m) => m.type === 'C' && !m.body.toString('latin1').startsWith('SELECT'));
        expect(exchange.rows.length > 0 || ranWrite).toBe(true);
        testCase.rows?.(exchange.rows);
      } else {
        expect(exchange.errors).toHaveLength(1);
        const error = exchange.errors[0]!;
        expect(error['C']).toBe('42501');
        expect(error['M']).toMatch(/^dbgate: /);
        expect(error['D']).toMatch(/^rule: /);
        expect(error['H']).toBeTruthy();
        if (testCase.expect === 'held') expect(error['M']).toContain('held for approval');
        else expect(error['M']).not.toContain('held for approval');
        if (testCase.because) expect(error['M']).toContain(testCase.because);
        // Nothing of a refused message ran: no rows came back.
        expect(exchange.rows).toEqual([]);
      }
      assertNoLeak(exchange, user);
      // The connection stays usable.
      expect((await client.query('select 1')).errors).toEqual([]);
    });
  }

  it('extended protocol: a denied Parse in a pipeline discards up to Sync, and the next segment works', async () => {
    const client = await clientFor('alice');
    const exchange = await client.send([
      serialize.parse({ text: 'select 1' }), serialize.bind({}), serialize.execute({}),
      serialize.parse({ text: 'drop table customers' }), serialize.bind({}), serialize.execute({}), serialize.sync(),
      serialize.parse({ text: 'select 2' }), serialize.bind({}), serialize.execute({}), serialize.sync(),
    ], 2);
    const types = exchange.messages.map((m) => m.type).join('');
    expect(types).toBe('12DCEZ12DCZ');
    expect(exchange.errors[0]!['M']).toContain('held for approval');
    expect(exchange.rows).toEqual([['1'], ['2']]);
  });

  it('extended protocol: rows of a masked statement are masked even without Describe', async () => {
    const client = await clientFor('alice');
    const exchange = await client.send([
      serialize.parse({ text: 'select email, ssn from customers order by id limit 50' }), serialize.bind({}),
      serialize.execute({}), serialize.sync(),
    ]);
    expect(exchange.errors).toEqual([]);
    expect(exchange.rows).toHaveLength(50);
    assertNoLeak(exchange, 'alice');
  });

  it('extended protocol: computed masked columns are masked even without Describe', async () => {
    const client = await clientFor('alice');
    const exchange = await client.send([
      serialize.parse({ text: 'select id, reverse(ssn), length(email) from customers order by id limit 50' }), serialize.bind({}),
      serialize.execute({}), serialize.sync(),
    ]);
    expect(exchange.errors).toEqual([]);
    expect(exchange.rows).toHaveLength(50);
    for (const row of exchange.rows) {
      expect(row[0]).not.toBeNull();
      expect(masked(row[1]!)).toBe(true);
      expect(row[2]).toBeNull();
    }
    assertNoLeak(exchange, 'alice');
  });

  it('extended protocol: a statement described once is masked column by column when executed again without Describe', async () => {
    // pgjdbc, once it prepared a statement on the server, binds and executes it without describing it again.
    const client = await clientFor('alice');
    const sql = 'select id, email, phone, length(email), created_at from customers where id < 500000 order by id limit 20';
    const described = await client.send([
      serialize.parse({ name: 'customers_page', text: sql }), serialize.describe({ type: 'S', name: 'customers_page' }), serialize.sync(),
    ]);
    expect(described.errors).toEqual([]);
    const first = await client.send([
      serialize.bind({ statement: 'customers_page' }), serialize.describe({ type: 'P', name: '' }), serialize.execute({}), serialize.sync(),
    ]);
    expect(first.errors).toEqual([]);
    for (const again of [1, 2]) {
      const exchange = await client.send([serialize.bind({ statement: 'customers_page' }), serialize.execute({}), serialize.sync()]);
      expect(exchange.errors, `execution ${again}`).toEqual([]);
      // The same values as with a description: partial masks in place, not NULLs.
      expect(exchange.rows, `execution ${again}`).toEqual(first.rows);
      assertNoLeak(exchange, 'alice');
    }
    expect(first.rows).toHaveLength(20);
    for (const row of first.rows) {
      expect(row[1]).toMatch(/^[a-z]\*\*\*@/);
      expect(row[2]).toMatch(/^\*\*\*\*\d{4}$/);
      expect(row[3]).toBeNull();
    }
    // A masked statement the server rejects (no such column) fails at its Describe's turn: the rest of its pipeline
    // is skipped, and the next one is masked as before.
    const failed = await client.send([
      serialize.parse({ name: 'broken', text: 'select email, no_such_column from customers' }),
      serialize.describe({ type: 'S', name: 'broken' }), serialize.bind({ statement: 'customers_page' }), serialize.execute({}),
      serialize.sync(),
      serialize.bind({ statement: 'customers_page' }), serialize.execute({}), serialize.sync(),
    ], 2);
    expect(failed.errors).toHaveLength(1);
    expect(failed.rows).toEqual(first.rows);
    assertNoLeak(failed, 'alice');
  });

  it('extended protocol: binary results of a masked statement are refused at Bind', async () => {
    const client = await clientFor('alice');
    const exchange = await client.send([
      serialize.parse({ text: 'select email from customers limit 5' }), serialize.bind({ binary: true }),
      serialize.execute({}), serialize.sync(),
    ]);
    expect(exchange.errors).toHaveLength(1);
    expect(exchange.errors[0]!['M']).toContain('binary result format');
    assertNoLeak(exchange, 'alice');
  });

  it('extended protocol: binary results of a described masked statement are masked (pgjdbc asks for them)', async () => {
    const client = await clientFor('alice');
    const text = 'select id, email, ssn, length(email) as n, created_at from customers order by id limit 3';
    const described = await client.send([
      serialize.parse({ name: 'binary_page', text }), serialize.describe({ type: 'S', name: 'binary_page' }), serialize.sync(),
    ]);
    expect(described.errors).toEqual([]);
    const exchange = await client.send([serialize.bind({ statement: 'binary_page', binary: true }), serialize.execute({}), serialize.sync()]);
    expect(exchange.errors).toEqual([]);
    expect(exchange.rows).toHaveLength(3);
    const ids = await admin.query<{ id: string }>('select id from customers order by id limit 3');
    exchange.messages.filter((message) => message.type === 'D').forEach((message, index) => {
      const [id, email, ssn, length, createdAt] = readDataRowColumns(message.body);
      expect(email!.toString()).toMatch(/^[a-z]\*\*\*@/);
      expect(ssn!.toString()).toMatch(/^\*\*\*\*\d{4}$/);
      // Computed from a masked column, an int4 that cannot hold the mask: NULL, as in text format.
      expect(length).toBeNull();
      // Clean columns come as the server sent them, in the binary format asked for: an int8 and a timestamptz.
      expect(id!.readBigInt64BE(0).toString()).toBe(ids.rows[index]!.id);
      expect(createdAt).toHaveLength(8);
    });
    assertNoLeak(exchange, 'alice');

    // A column dbgate must scan, in a binary format it does not read (a range): refused at Bind, naming it.
    await client.send([
      serialize.parse({ name: 'binary_numeric', text: "select id, email, '[1,2)'::int4range as span from customers limit 1" }),
      serialize.describe({ type: 'S', name: 'binary_numeric' }), serialize.sync(),
    ]);
    const unreadable = await client.send([
      serialize.bind({ statement: 'binary_numeric', binary: true }), serialize.execute({}), serialize.sync(),
    ]);
    expect(unreadable.errors).toHaveLength(1);
    expect(unreadable.errors[0]!['M']).toContain('"span"');
    expect(unreadable.rows).toEqual([]);
  });

  it('changing search_path does not move a table out of reach of its masking rule', async () => {
    const client = await clientFor('alice');
    const set = await client.query('set search_path = pg_catalog, public');
    expect(set.errors).toEqual([]);
    const exchange = await client.query('select email from customers limit 20');
    expect(exchange.errors).toEqual([]);
    assertNoLeak(exchange, 'alice');
    await client.query('reset search_path');
  });

  it('left the database exactly as it was', async () => {
    expect(await snapshot(admin)).toEqual(before);
  });
});
