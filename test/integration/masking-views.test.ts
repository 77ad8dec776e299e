/**
 * Masking through views and materialized views, on the demo schema and the demo policy (alice: customers.email,
 * phone, ssn and payments.card_number masked, partial style), through tunnel and gateway against real PostgreSQL.
 * PostgreSQL reports a view's columns with the view's OID, so these values are masked only because the gateway's
 * catalog resolved the views' definitions. The views are created directly on the database, as a migration would,
 * not through the gateway.
 */
import type pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, type Exchange } from '../support/raw-client.js';
import { directClient, mintCredential, openTunnel, type OpenTunnel } from '../support/stack.js';

const VIEWS: Array<[name: string, kind: 'view' | 'materialized view', query: string]> = [
  ['mv_contacts', 'view', 'select id, name, email, phone from customers'],
  // PostgreSQL expands the star when the view is created: the view's columns are customers' columns in order.
  ['mv_everything', 'view', 'select * from customers'],
  ['mv_computed', 'view', "select id, name, reverse(ssn) as r, length(email) as l, email || '' as e from customers"],
  ['mv_nested', 'view', 'select c.id, c.email, k.r, upper(c.name) as shout from mv_contacts c join mv_computed k on k.id = c.id'],
  ['mv_documents', 'view', 'select id, row_to_json(c) as doc, c as whole from customers c'],
  ['mv_snapshot', 'materialized view', 'select id, name, email, reverse(phone) as rp from customers'],
];

/** A later view, created while alice is connected. */
const LATE_VIEW = 'mv_late';

interface Customer {
  id: string;
  name: string;
  email: string;
  phone: string;
  ssn: string;
}

/** The partial mask of an email (`k***@example.com`) and of a phone number or SSN (`****` and its last four digits). */
const partialEmail = (email: string): string => `${email[0]}***${email.slice(email.lastIndexOf('@'))}`;
const lastFour = (value: string): string => `****${value.replace(/\D/g, '').slice(-4)}`;

describe('masking through views (demo policy, alice)', () => {
  let admin: pg.Client;
  let tunnel: OpenTunnel;
  let alice: RawClient;
  /** The first customers by id, as stored. */
  let customers: Customer[];
  /** Every stored email, phone and SSN, and each reversed: none may reach alice. */
  let sensitive: string[];

  function assertNoLeak(exchange: Exchange): void {
    const received = exchange.bytes.toString('utf8');
    const leaked = sensitive.filter((value) => received.includes(value));
    expect(leaked.slice(0, 3), 'unmasked values reached the client').toEqual([]);
  }

  /** Runs `sql` as alice: no error, rows back, nothing sensitive in the bytes. */
  async function read(sql: string): Promise<Array<Array<string | null>>> {
    const exchange = await alice.query(sql);
    expect(exchange.errors).toEqual([]);
    expect(exchange.rows.length).toBeGreaterThan(0);
    assertNoLeak(exchange);
    return exchange.rows;
  }

  beforeAll(async () => {
    admin = await directClient();
    await dropViews(admin);
    for (const [name, kind, query] of VIEWS) {
      await admin.query(`create ${kind} ${name} as ${query}`);
      await admin.query(`grant select on ${name} to dbgate_service`);
    }
    // Demo rows only (ids from 500,000 up belong to the masking property test, which runs concurrently).
    const stored = await admin.query<Customer>(
      'select id::text as id, name, email, phone, ssn from customers c where c.id < 500000 order by c.id limit 20');
    customers = stored.rows;
    const values = await admin.query<{ v: string }>(
      'select email as v from customers union all select phone from customers union all select ssn from customers');
    sensitive = values.rows.map((row) => row.v);
    sensitive.push(...values.rows.map((row) => [...row.v].reverse().join('')));
    tunnel = await openTunnel('alice', { credential: await mintCredential('alice', { groups: ['engineering'] }) });
    alice = await RawClient.login({ host: tunnel.host, port: tunnel.port, user: 'alice', database: 'prod-orders', password: tunnel.password });
  });

  afterAll(async () => {
    alice?.close();
    await tunnel?.close();
    if (admin) await dropViews(admin);
    await admin?.end();
  });

  it('masks a view created on the database from its first result on, column by column from the next statement', async () => {
    // The gateway's catalog may have been read before these views existed. Then the first result names a relation
    // it does not know: every column is masked whole (fail closed), and the next statement waits for a new read.
    const first = await read('select id, name, email from mv_contacts where id < 500000 order by id limit 20');
    for (const [index, row] of first.entries()) {
      const customer = customers[index]!;
      expect([partialEmail(customer.email), '****']).toContain(row[2]);
    }
    const next = await read('select id, name, email from mv_contacts where id < 500000 order by id limit 20');
    expect(next).toEqual(customers.map((c) => [c.id, c.name, partialEmail(c.email)]));
  });

  it('masks the masked columns a view passes through like the table does, and leaves its other columns intact', async () => {
    const rows = await read('select id, name, email, phone from mv_contacts where id < 500000 order by id limit 20');
    expect(rows).toEqual(customers.map((c) => [c.id, c.name, partialEmail(c.email), lastFour(c.phone)]));
  });

  it('maps the columns of a view defined with a star (expanded when it was created)', async () => {
    const rows = await read('select * from mv_everything where id < 500000 order by id limit 20');
    expect(rows.map((row) => row.slice(0, 5))).toEqual(
      customers.map((c) => [c.id, c.name, partialEmail(c.email), lastFour(c.phone), lastFour(c.ssn)]));
    // created_at, a column of no rule, is intact.
    expect(rows.every((row) => /^\d{4}-\d{2}-\d{2} /.test(row[5]!))).toBe(true);
  });

  it('masks whole the view columns computed from masked ones: reverse(ssn), length(email), email || \'\'', async () => {
    const rows = await read('select id, name, r, l, e from mv_computed where id < 500000 order by id limit 20');
    // Text becomes the style's token; a number cannot hold one, so it is NULL.
    expect(rows).toEqual(customers.map((c) => [c.id, c.name, '****', null, '****']));
  });

  it('resolves a view over views: passed-through columns keep their mask, computed ones stay masked whole', async () => {
    const rows = await read('select id, email, r, shout from mv_nested where id < 500000 order by id limit 20');
    expect(rows).toEqual(customers.map((c) => [c.id, partialEmail(c.email), '****', c.name.toUpperCase()]));
  });

  it('masks whole a view column built from the whole row (row_to_json, the row itself)', async () => {
    const rows = await read('select id, doc, whole from mv_documents where id < 500000 order by id limit 20');
    expect(rows).toEqual(customers.map((c) => [c.id, '"****"', null]));
  });

  it('masks a whole-row reference to a view that holds masked values', async () => {
    const rows = await read('select v from mv_computed v where id < 500000 order by id limit 5');
    expect(rows).toEqual(customers.slice(0, 5).map(() => [null]));
  });

  it('masks a materialized view like a view', async () => {
    const rows = await read('select id, name, email, rp from mv_snapshot where id < 500000 order by id limit 20');
    expect(rows).toEqual(customers.map((c) => [c.id, c.name, partialEmail(c.email), '****']));
  });

  it('masks whole what a statement computes from masked view columns, and leaves what it computes from others', async () => {
    const rows = await read(
      'select id, reverse(ssn), length(email), upper(name) from mv_everything where id < 500000 order by id limit 20');
    expect(rows).toEqual(customers.map((c) => [c.id, '****', null, c.name.toUpperCase()]));
    // reverse(r) would give the SSN back; r is masked whole in the view already, and so is anything computed from it.
    expect(await read('select reverse(r) from mv_computed where id < 500000 order by id limit 20'))
      .toEqual(customers.map(() => ['****']));
    expect(await read('select row_to_json(v) from mv_contacts v where id < 500000 order by id limit 5'))
      .toEqual(customers.slice(0, 5).map(() => ['"****"']));
    // A view column's own value through a scalar subquery: masked as the view column is.
    expect(await read('select (select email from mv_contacts order by id limit 1), (select r from mv_computed order by id limit 1)'))
      .toEqual([[partialEmail(customers[0]!.email), '****']]);
  });

  it('masks a result that follows results with nothing to mask, in one query and in one pipeline', async () => {
    // Columns of a plain table that no rule masks: the result streams untouched, and the next one is masked again.
    const clean = 'select id, name from customers where id < 500000 order by id limit 5';
    const masked = 'select id, email from customers where id < 500000 order by id limit 5';
    const cleanRows = customers.slice(0, 5).map((c) => [c.id, c.name]);
    const maskedRows = customers.slice(0, 5).map((c) => [c.id, partialEmail(c.email)]);
    expect(await read(`${clean}; ${masked}; ${clean}; ${masked}`)).toEqual([...cleanRows, ...maskedRows, ...cleanRows, ...maskedRows]);
    const pipeline = await alice.send([
      serialize.parse({ text: clean }), serialize.bind({}), serialize.describe({ type: 'P' }), serialize.execute({}),
      serialize.parse({ text: masked }), serialize.bind({}), serialize.describe({ type: 'P' }), serialize.execute({}),
      serialize.sync(),
    ]);
    expect(pipeline.errors).toEqual([]);
    assertNoLeak(pipeline);
    expect(pipeline.rows).toEqual([...cleanRows, ...maskedRows]);
  });

  it('extended protocol: masks view columns of rows that come without a RowDescription', async () => {
    const exchange = await alice.send([
      serialize.parse({ text: 'select v.id, v.name, v.r, c.email from mv_computed v join mv_contacts c on c.id = v.id where v.id < 500000 order by v.id limit 20' }),
      serialize.bind({}), serialize.execute({}), serialize.sync(),
    ]);
    expect(exchange.errors).toEqual([]);
    assertNoLeak(exchange);
    // No column is attributed to a table: what derives from masked columns is NULL (its type is unknown), the rest
    // is scanned (names pass).
    expect(exchange.rows).toEqual(customers.map((c) => [c.id, c.name, null, null]));
  });

  it('denies a cursor over values computed from masked view columns; a cursor over the view itself stays masked', async () => {
    const denied = await alice.query('declare c cursor with hold for select reverse(email) from mv_contacts');
    expect(denied.errors).toHaveLength(1);
    expect(denied.errors[0]!['C']).toBe('42501');
    expect(denied.errors[0]!['M']).toContain('cursor');
    expect(denied.errors[0]!['D']).toBe('rule: builtin:masked-cursor');
    const rows = await read(
      'begin; declare d no scroll cursor for select id, email, r from mv_nested where id < 500000 order by id; fetch 20 from d; close d; commit');
    expect(rows).toEqual(customers.map((c) => [c.id, partialEmail(c.email), '****']));
  });

  it('masks a view created while the session is open: whole at first if need be, column by column after', async () => {
    await read('select id from mv_contacts limit 1');
    await admin.query(`create view ${LATE_VIEW} as select id, reverse(ssn) as r, email from customers`);
    await admin.query(`grant select on ${LATE_VIEW} to dbgate_service`);
    const first = await read(`select id, r, email from ${LATE_VIEW} where id < 500000 order by id limit 20`);
    for (const [index, row] of first.entries()) {
      expect([customers[index]!.id, null]).toContain(row[0]);
      expect(row[1]).toBe('****');
      expect([partialEmail(customers[index]!.email), '****']).toContain(row[2]);
    }
    const next = await read(`select id, r, email from ${LATE_VIEW} where id < 500000 order by id limit 20`);
    expect(next).toEqual(customers.map((c) => [c.id, '****', partialEmail(c.email)]));
  });
});

describe('the policy through views (demo policy)', () => {
  let admin: pg.Client;
  let tunnel: OpenTunnel;
  let alice: RawClient;
  let bobTunnel: OpenTunnel;
  let bob: RawClient;
  let email: string;

  beforeAll(async () => {
    admin = await directClient();
    await admin.query('drop view if exists mv_policy_contacts, mv_policy_payments, mv_policy_fresh_contacts, mv_policy_fresh_payments');
    await admin.query('create view mv_policy_contacts as select id, name, email from customers');
    await admin.query('create view mv_policy_payments as select id, amount_cents, status from payments');
    await admin.query('grant select, update on mv_policy_contacts, mv_policy_payments to dbgate_service');
    email = (await admin.query<{ email: string }>('select email from customers where id < 500000 order by id limit 1')).rows[0]!.email;
    tunnel = await openTunnel('alice', { credential: await mintCredential('alice', { groups: ['engineering'] }) });
    alice = await RawClient.login({ host: tunnel.host, port: tunnel.port, user: 'alice', database: 'prod-orders', password: tunnel.password });
    bobTunnel = await openTunnel('bob', { credential: await mintCredential('bob', { groups: ['dba'] }) });
    bob = await RawClient.login({ host: bobTunnel.host, port: bobTunnel.port, user: 'bob', database: 'prod-orders', password: bobTunnel.password });
    // Views made directly on the database reach the policy with the next catalog read: a result that names a
    // relation the gateway's catalog does not know starts one (catalog.ts).
    for (const client of [alice, bob]) {
      expect((await client.query('select id from mv_policy_contacts limit 1')).errors).toEqual([]);
      expect((await client.query('select id from mv_policy_contacts limit 1')).errors).toEqual([]);
    }
  });

  afterAll(async () => {
    alice?.close();
    bob?.close();
    await tunnel?.close();
    await bobTunnel?.close();
    await admin?.query('drop view if exists mv_policy_contacts, mv_policy_payments, mv_policy_fresh_contacts, mv_policy_fresh_payments');
    await admin?.end();
  });

  it('denies filtering on a view column that carries a masked column, as on the table (inference protection)', async () => {
    const exchange = await alice.query(`select id from mv_policy_contacts where email = '${email}'`);
    expect(exchange.rows).toEqual([]);
    expect(exchange.errors).toHaveLength(1);
    expect(exchange.errors[0]).toMatchObject({ C: '42501', D: 'rule: builtin:inference' });
    expect(exchange.errors[0]!['M']).toContain('mv_policy_contacts.email (public.customers.email behind the view)');
    const sorted = await alice.query('select id from mv_policy_contacts order by email limit 3');
    expect(sorted.errors[0]).toMatchObject({ C: '42501', D: 'rule: builtin:inference' });
    // The connection stays usable, and conditions on the view's other columns are fine.
    const fine = await alice.query('select id, email from mv_policy_contacts where id < 500000 and name is not null order by id limit 3');
    expect(fine.errors).toEqual([]);
    expect(fine.rows).toHaveLength(3);
    expect(fine.bytes.toString('utf8')).not.toContain(email);
  });

  it('holds an UPDATE through a view over a table whose writes are held, and the row does not change', async () => {
    const before = await admin.query('select id, amount_cents from payments order by id limit 1');
    const { id, amount_cents: amount } = before.rows[0] as { id: string; amount_cents: number };
    const exchange = await bob.query(`update mv_policy_payments set amount_cents = amount_cents + 1 where id = ${id}`);
    expect(exchange.errors).toHaveLength(1);
    expect(exchange.errors[0]).toMatchObject({ C: '42501', D: 'rule: hold-payments-writes' });
    expect(exchange.errors[0]!['M']).toContain('mv_policy_payments');
    const after = await admin.query('select amount_cents from payments where id = $1', [id]);
    expect(after.rows[0]).toEqual({ amount_cents: amount });
    // A write through a view over a table no rule holds runs (bob has write access).
    const name = await bob.query(`update mv_policy_contacts set name = name where id = ${id}`);
    expect(name.errors).toEqual([]);
  });

  it('judges the first statement on a view created directly on the database a moment ago with what is behind it', async () => {
    await admin.query('create view mv_policy_fresh_payments as select id, amount_cents from payments');
    await admin.query('create view mv_policy_fresh_contacts as select id, email from customers');
    await admin.query('grant select, update on mv_policy_fresh_payments, mv_policy_fresh_contacts to dbgate_service');
    // The gateway's catalog was read before the views existed, and more than a second ago (CATALOG_RECHECK_MS).
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const id = (await admin.query<{ id: string }>('select id from payments order by id limit 1')).rows[0]!.id;
    const held = await bob.query(`update mv_policy_fresh_payments set amount_cents = amount_cents + 1 where id = ${id}`);
    expect(held.errors[0]).toMatchObject({ C: '42501', D: 'rule: hold-payments-writes' });
    const filtered = await alice.query(`select id from mv_policy_fresh_contacts where email = '${email}'`);
    expect(filtered.rows).toEqual([]);
    expect(filtered.errors[0]).toMatchObject({ C: '42501', D: 'rule: builtin:inference' });
  });
});

async function dropViews(admin: pg.Client): Promise<void> {
  await admin.query(`drop view if exists ${LATE_VIEW}`);
  for (const [name, kind] of [...VIEWS].reverse()) await admin.query(`drop ${kind} if exists ${name}`);
}
