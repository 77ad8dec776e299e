/**
 * The masking catalog on real PostgreSQL, in-process: what it resolves for views (against the RowDescription the
 * server really sends for them), and when it reads the catalog again. Its own schema, its own policy columns —
 * including one no content detector recognises — so nothing here depends on the demo policy.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TargetConfig } from '../../src/gateway/config/load.js';
import { MaskedColumnCatalog, type MaskedColumnKeys } from '../../src/gateway/masking/catalog.js';
import { createMasker, type MaskStyle } from '../../src/gateway/masking/mask.js';
import { ResultMasker } from '../../src/gateway/masking/result-masker.js';
import { readDataRowColumns, writeDataRow, type ResultField } from '../../src/gateway/masking/row-messages.js';
import { Secret } from '../../src/shared/secret.js';
import { directClient, sharedStack } from '../support/stack.js';

const SCHEMA = 'dbgate_catalog_test';
const COLUMNS = new Map<string, MaskStyle>([
  [`${SCHEMA}.patients.notes`, 'redact'],
  [`${SCHEMA}.patients.email`, 'partial'],
]);
const maskers = {
  partial: createMasker('partial', Buffer.alloc(32, 1)),
  redact: createMasker('redact', Buffer.alloc(32, 1)),
  hash: createMasker('hash', Buffer.alloc(32, 1)),
  null: createMasker('null', Buffer.alloc(32, 1)),
} as const;

describe('masking catalog (real PostgreSQL)', () => {
  let admin: pg.Client;
  let target: TargetConfig;

  /** Runs `sql` directly and masks its result as the gateway would with `keys`: the masked values as text. */
  async function maskedResult(sql: string, keys: MaskedColumnKeys): Promise<{ rows: Array<Array<string | null>>; masker: ResultMasker }> {
    // Values as the server sent them (text), not parsed into numbers and dates.
    const result = await admin.query({ text: sql, rowMode: 'array', types: { getTypeParser: () => (value: string) => value } });
    const fields: ResultField[] = result.fields.map((field) => ({
      name: field.name, tableOid: field.tableID, attnum: field.columnID, typeOid: field.dataTypeID, format: 0,
    }));
    const masker = new ResultMasker(fields, keys, maskers);
    const rows = (result.rows as Array<Array<string | null>>).map((values) => {
      const row = writeDataRow(values.map((value) => (value === null ? null : Buffer.from(value))));
      const masked = masker.maskRow(row.subarray(5));
      return readDataRowColumns((masked ?? row).subarray(5)).map((value) => (value === null ? null : value.toString()));
    });
    return { rows, masker };
  }

  beforeAll(async () => {
    admin = await directClient();
    await admin.query(`drop schema if exists ${SCHEMA} cascade`);
    await admin.query(`create schema ${SCHEMA}`);
    await admin.query(`set search_path = ${SCHEMA}, public`);
    // A dropped column leaves a gap in the table's attribute numbers; a view over it numbers its columns 1..n.
    await admin.query('create table patients (id int, dropped text, name text, email text, notes text)');
    await admin.query('alter table patients drop column dropped');
    await admin.query(`insert into patients values (1, 'Ann Lee', 'ann.lee@example.com', 'allergic to penicillin'),
      (2, 'Bo Chan', 'bo.chan@example.org', 'diabetes type 2')`);
    await admin.query('create view everything as select * from patients');
    await admin.query('create view remarks as select id, upper(notes) as shouted, notes, name from patients');
    await admin.query(`create function opaque_lookup(int) returns text language sql stable as 'select notes from ${SCHEMA}.patients where id = $1'`);
    await admin.query('create view looked_up as select id, opaque_lookup(id) as looked from patients');
    // PostgreSQL allows a view without columns; the catalog must read past it.
    await admin.query('create view no_columns as select from patients');
    const stack = sharedStack();
    target = {
      name: 'catalog-test',
      host: stack.cluster.host,
      port: stack.cluster.port,
      database: 'prod_orders',
      user: 'dbgate_service',
      password: new Secret((await readFile(join(stack.gateway.stateDir, 'secrets', 'service-password'), 'utf8')).trim()),
      tls: 'disable',
      ca: undefined,
      description: undefined,
    };
  });

  afterAll(async () => {
    await admin?.query(`drop schema if exists ${SCHEMA} cascade`);
    await admin?.end();
  });

  it('masks a view column no detector would recognise, passed through or computed', async () => {
    const keys = await new MaskedColumnCatalog(COLUMNS).resolve(target);
    const { rows } = await maskedResult('select id, shouted, notes, name from remarks order by id', keys);
    expect(rows).toEqual([['1', '[redacted]', '[redacted]', 'Ann Lee'], ['2', '[redacted]', '[redacted]', 'Bo Chan']]);
  });

  it('maps the columns of a star view by name, across a gap in the table’s attribute numbers', async () => {
    const keys = await new MaskedColumnCatalog(COLUMNS).resolve(target);
    const { rows } = await maskedResult('select * from everything order by id', keys);
    expect(rows).toEqual([
      ['1', 'Ann Lee', 'a***@example.com', '[redacted]'],
      ['2', 'Bo Chan', 'b***@example.org', '[redacted]'],
    ]);
  });

  it('masks every column of a view whose definition calls a function it cannot see into (fail closed)', async () => {
    const keys = await new MaskedColumnCatalog(COLUMNS).resolve(target);
    const { rows } = await maskedResult('select id, looked from looked_up order by id', keys);
    // The strictest style of the policy (redact), whole: NULL for the integer, the token for text.
    expect(rows).toEqual([[null, '[redacted]'], [null, '[redacted]']]);
  });

  it('masks whole a view it has not seen, reports the snapshot stale, and knows the view after a new read', async () => {
    const catalog = new MaskedColumnCatalog(COLUMNS);
    const before = await catalog.resolve(target);
    await admin.query('create view later as select id, reverse(notes) as r, email from patients');
    try {
      const stale = await maskedResult('select id, r, email from later order by id', before);
      expect(stale.rows).toEqual([[null, '[redacted]', '[redacted]'], [null, '[redacted]', '[redacted]']]);
      expect(stale.masker.staleCatalog).toBe(true);
      // Still current until someone says otherwise: it is younger than its maximum age.
      expect(catalog.current(target.name)).toBe(before);
      catalog.invalidate(target.name, before);
      expect(catalog.current(target.name)).toBeUndefined();
      const after = await catalog.resolve(target);
      expect(after).not.toBe(before);
      const fresh = await maskedResult('select id, r, email from later order by id', after);
      expect(fresh.rows).toEqual([['1', '[redacted]', 'a***@example.com'], ['2', '[redacted]', 'b***@example.org']]);
      expect(fresh.masker.staleCatalog).toBe(false);
      // Another session noticing the same old snapshot does not throw the new one away.
      catalog.invalidate(target.name, before);
      expect(catalog.current(target.name)).toBe(after);
    } finally {
      await admin.query('drop view if exists later');
    }
  });

  it('reads the catalog again once a resolution is older than its maximum age (a view replaced in place)', async () => {
    let now = 1_000_000;
    const catalog = new MaskedColumnCatalog(COLUMNS, { maxAgeMs: 60_000, now: () => now });
    await admin.query('create view replaced as select id, name from patients');
    try {
      const first = await catalog.resolve(target);
      // CREATE OR REPLACE keeps the view's OID: nothing in a result would show that the snapshot is stale.
      await admin.query('create or replace view replaced as select id, reverse(notes) as name from patients');
      now += 59_999;
      expect(catalog.current(target.name)).toBe(first);
      expect(await catalog.resolve(target)).toBe(first);
      expect((await maskedResult('select id, name from replaced order by id', first)).rows[0]).toEqual(['1', 'nillicinep ot cigrella']);
      now += 1;
      expect(catalog.current(target.name)).toBeUndefined();
      const second = await catalog.resolve(target);
      expect(second).not.toBe(first);
      expect((await maskedResult('select id, name from replaced order by id', second)).rows[0]).toEqual(['1', '[redacted]']);
    } finally {
      await admin.query('drop view if exists replaced');
    }
  });

  it('logs a renamed or missing masked column when it appears, not at every read', async () => {
    const { rows } = await admin.query<{ oid: number; attnum: number }>(
      `select attrelid::int as oid, attnum from pg_attribute where attrelid = '${SCHEMA}.patients'::regclass and attname = 'email'`);
    // The policy's `mail` is found where the store remembers it, now called `email`; `ghost` is nowhere.
    const columns = new Map<string, MaskStyle>([[`${SCHEMA}.patients.mail`, 'partial'], [`${SCHEMA}.patients.ghost`, 'redact']]);
    const events: string[] = [];
    const catalog = new MaskedColumnCatalog(columns, {
      locations: {
        load: async () => new Map([[`${SCHEMA}.patients.mail`, { tableOid: rows[0]!.oid, attnum: rows[0]!.attnum }]]),
        save: async () => {},
      },
      log: { log: (_level, event, fields) => events.push(`${event} ${String(fields?.['column'])}`) },
    });
    for (let read = 0; read < 3; read += 1) {
      await catalog.resolve(target);
      catalog.invalidate(target.name);
    }
    expect(events.sort()).toEqual([`masking.column_missing ${SCHEMA}.patients.ghost`, `masking.column_renamed ${SCHEMA}.patients.mail`]);
  });

  it('shares one read between concurrent callers, and does not keep a failed one', async () => {
    const catalog = new MaskedColumnCatalog(COLUMNS);
    const [a, b] = await Promise.all([catalog.resolve(target), catalog.resolve(target)]);
    expect(a).toBe(b);
    const unreachable = { ...target, name: 'unreachable', port: 1 };
    await expect(catalog.resolve(unreachable)).rejects.toThrow();
    expect(catalog.current('unreachable')).toBeUndefined();
    // The next caller tries again (and fails again), rather than getting the cached failure.
    await expect(catalog.resolve(unreachable)).rejects.toThrow();
  });
});
