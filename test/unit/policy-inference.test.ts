/**
 * Inference protection: a masked column used to filter, join, sort, group, deduplicate or partition rows leaks what
 * masking hides (`WHERE email = 'a@b.c'` tells whether that address exists), so for an identity that sees the column
 * masked such a statement is denied. First what the classifier finds (`inferenceColumns`, resolved through FROM lists,
 * aliases, CTEs and subqueries), then the decisions of the demo policy and the knobs that configure them. Real
 * libpg-query, no mocks.
 */
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyStatements, loadStatementParser, type InferenceColumn } from '../../src/gateway/policy/classify.js';
import { policySchema } from '../../src/gateway/config/policy-schema.js';
import {
  DEMO_POLICY,
  DEMO_POLICY_YAML,
  evaluate,
  parsePolicy,
  type Decision,
  type Policy,
  type PolicyAction,
} from '../../src/gateway/policy/policy.js';

beforeAll(async () => {
  await loadStatementParser();
});

const PEOPLE = {
  alice: { subject: 'alice', groups: ['engineering'], kind: 'human' as const },
  bob: { subject: 'bob', groups: ['dba'], kind: 'human' as const },
  carol: { subject: 'carol', groups: ['security'], kind: 'human' as const },
  'report-bot': { subject: 'report-bot', groups: ['agents'], kind: 'agent' as const },
};
type Person = keyof typeof PEOPLE;

function decide(who: Person, sql: string, options: { policy?: Policy; searchPath?: string[] } = {}): Decision {
  return evaluate(options.policy ?? DEMO_POLICY, {
    identity: PEOPLE[who],
    target: 'prod-orders',
    searchPath: options.searchPath ?? ['$user', 'public'],
    classification: classifyStatements(sql),
  });
}

/** `clause:schema.table.column` of the one statement of `sql`, sorted. */
function inference(sql: string): string[] {
  const classification = classifyStatements(sql);
  expect(classification.parseError).toBeNull();
  expect(classification.statements).toHaveLength(1);
  return classification.statements[0]!.inferenceColumns.map(label).sort();
}

const label = (used: InferenceColumn): string =>
  `${used.clause}:${used.schema === null ? '' : `${used.schema}.`}${used.table}.${used.column}`;

/** The demo policy with its `policy:` section changed by `edit`. */
function demoWith(edit: (section: Record<string, unknown>) => void): Policy {
  const section = (parseYaml(DEMO_POLICY_YAML) as { policy: Record<string, unknown> }).policy;
  edit(section);
  return parsePolicy(section);
}

describe('classification: inferenceColumns', () => {
  it.each<[string, string, string[]]>([
    ['nothing for a plain select list', 'SELECT id, email, lower(phone) FROM customers', []],
    ['WHERE, unqualified', 'SELECT id FROM customers WHERE email = \'a@b.c\'', ['where:customers.email']],
    ['WHERE through a function', 'SELECT id FROM customers WHERE lower(email) LIKE \'a%\'', ['where:customers.email']],
    ['qualified through an alias', 'SELECT c.id FROM public.customers c WHERE c.ssn IS NULL', ['where:public.customers.ssn']],
    ['schema.table.column', 'SELECT 1 FROM public.customers WHERE public.customers.phone = \'1\'', ['where:public.customers.phone']],
    ['ORDER BY an input column', 'SELECT id FROM customers ORDER BY ssn', ['order_by:customers.ssn']],
    ['ORDER BY an output alias', 'SELECT email AS e FROM customers ORDER BY e', ['order_by:customers.email']],
    ['ORDER BY a position', 'SELECT id, email FROM customers ORDER BY 2', ['order_by:customers.email']],
    ['ORDER BY a position under *', 'SELECT * FROM customers ORDER BY 3', ['order_by:customers.*']],
    ['GROUP BY', 'SELECT phone, count(*) FROM customers GROUP BY phone', ['group_by:customers.phone']],
    ['GROUP BY ROLLUP', 'SELECT 1 FROM customers GROUP BY ROLLUP (ssn)', ['group_by:customers.ssn']],
    ['DISTINCT: every output column', 'SELECT DISTINCT email, id FROM customers', ['distinct:customers.email', 'distinct:customers.id']],
    ['DISTINCT ON', 'SELECT DISTINCT ON (phone) id FROM customers', ['distinct:customers.phone']],
    ['DISTINCT *', 'SELECT DISTINCT * FROM customers', ['distinct:customers.*']],
    ['count(DISTINCT …)', 'SELECT count(DISTINCT email) FROM customers', ['distinct:customers.email']],
    ['HAVING', 'SELECT 1 FROM customers GROUP BY id HAVING count(email) > 1', ['group_by:customers.id', 'having:customers.email']],
    ['window PARTITION BY and ORDER BY', 'SELECT row_number() OVER (PARTITION BY email ORDER BY ssn) FROM customers',
      ['window:customers.email', 'window:customers.ssn']],
    ['a named window', 'SELECT rank() OVER w FROM customers WINDOW w AS (ORDER BY phone)', ['window:customers.phone']],
    ['aggregate FILTER and ORDER BY', 'SELECT count(*) FILTER (WHERE email LIKE \'a%\'), string_agg(id::text, \',\' ORDER BY ssn) FROM customers',
      ['order_by:customers.ssn', 'where:customers.email']],
    ['JOIN … ON, through a subquery', 'SELECT c.id FROM customers c JOIN (SELECT email FROM customers) x ON c.email = x.email',
      ['join:customers.email']],
    ['JOIN … USING', 'SELECT 1 FROM customers JOIN payments USING (card_number)', ['join:customers.card_number', 'join:payments.card_number']],
    ['NATURAL JOIN: every column', 'SELECT 1 FROM customers NATURAL JOIN orders', ['join:customers.*', 'join:orders.*']],
    ['a CTE column derived from a masked column', 'WITH x AS (SELECT email AS e FROM customers) SELECT * FROM x WHERE e = \'a\'',
      ['where:customers.email']],
    ['a CTE with a column list, through an expression', 'WITH x(a, b) AS (SELECT id, upper(ssn) FROM customers) SELECT a FROM x WHERE b > \'1\'',
      ['where:customers.ssn']],
    ['a CTE column that is not masked', 'WITH x AS (SELECT id, email FROM customers) SELECT email FROM x WHERE id = 1', ['where:customers.id']],
    ['a subquery in FROM', 'SELECT t.e FROM (SELECT x.email AS e FROM customers x) t WHERE t.e IS NULL', ['where:customers.email']],
    ['a subquery in WHERE, correlated or not', 'SELECT id FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id AND c.ssn = \'1\')',
      ['where:customers.id', 'where:customers.ssn', 'where:orders.customer_id']],
    ['a compared subquery\'s output', 'SELECT 1 FROM orders WHERE \'a@b.c\' IN (SELECT email FROM customers)', ['where:customers.email', 'where:orders.email']],
    ['UNION deduplicates, INTERSECT compares', 'SELECT email FROM customers UNION SELECT \'x\'', ['set_operation:customers.email']],
    ['UNION ALL does neither', 'SELECT email FROM customers UNION ALL SELECT \'x\'', []],
    ['a whole-row reference', 'SELECT id FROM customers c WHERE c::text LIKE \'%@%\'', ['where:customers.*', 'where:customers.c']],
    ['a recursive CTE', 'WITH RECURSIVE r(a, b) AS (SELECT id, email FROM customers UNION ALL SELECT a, b FROM r) SELECT 1 FROM r WHERE a = 1',
      ['where:customers.email', 'where:customers.id']],
    ['UPDATE … WHERE', 'UPDATE customers SET name = \'x\' WHERE email = \'y\'', ['where:customers.email']],
    ['RETURNING of a data-modifying CTE', 'WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING ssn AS s) SELECT * FROM d WHERE s = \'1\'',
      ['where:customers.id', 'where:customers.ssn']],
    ['EXPLAIN\'s statement', 'EXPLAIN SELECT 1 FROM customers WHERE phone = \'1\'', ['where:customers.phone']],
    ['a LATERAL subquery', 'SELECT 1 FROM customers c, LATERAL (SELECT c.email) s(m) WHERE m = \'x\'', ['where:customers.email', 'where:customers.m']],
    ['a CTE shadows the table of the same name', 'WITH customers AS (SELECT 1 AS email) SELECT 1 FROM customers WHERE email = 1', []],
  ])('%s', (_name, sql, expected) => {
    expect(inference(sql)).toEqual(expected.sort());
  });

  it('finds them inside DO blocks too', () => {
    const [statement] = classifyStatements('DO $$ BEGIN PERFORM 1 FROM customers WHERE email = \'x\'; END $$').statements;
    expect(statement!.inferenceColumns.map(label)).toEqual(['where:customers.email']);
  });

  it('does not change the parse tree the rest of the classification reads', () => {
    const info = classifyStatements('SELECT (c).email FROM customers c WHERE (c).ssn = \'1\' ORDER BY 1').statements[0]!;
    expect(info.tables).toEqual([{ schema: null, name: 'customers', access: 'read' }]);
    expect(info.inferenceColumns.map(label).sort()).toContain('where:customers.*');
  });
});

describe('the demo policy: inference on masked columns is denied for engineering and agents', () => {
  const denied: Array<[Person, string]> = [
    ['alice', 'SELECT id FROM customers WHERE email = \'a@b.c\''],
    ['alice', 'SELECT id FROM customers WHERE lower(email) LIKE \'a%\''],
    ['alice', 'SELECT id, name FROM customers ORDER BY ssn'],
    ['alice', 'SELECT phone, count(*) FROM customers GROUP BY phone'],
    ['alice', 'SELECT DISTINCT email FROM customers'],
    ['alice', 'SELECT count(DISTINCT email) FROM customers'],
    ['alice', 'SELECT c.id FROM customers c JOIN customers x ON c.email = x.email'],
    ['alice', 'WITH x AS (SELECT email AS e FROM customers) SELECT * FROM x WHERE e = \'a@b.c\''],
    ['alice', 'SELECT * FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE email LIKE \'%@example.com\')'],
    ['alice', 'SELECT 1 FROM customers GROUP BY id HAVING count(email) > 1'],
    ['alice', 'SELECT id, row_number() OVER (PARTITION BY email) FROM customers'],
    ['alice', 'SELECT id FROM customers c WHERE c::text LIKE \'%@%\''],
    ['alice', 'SELECT email FROM customers INTERSECT SELECT \'a@b.c\''],
    ['alice', 'SELECT order_id FROM payments WHERE card_number LIKE \'4111%\''],
    ['alice', 'EXPLAIN SELECT 1 FROM customers WHERE ssn = \'123-45-6789\''],
    ['report-bot', 'SELECT id FROM public.customers WHERE public.customers.phone = \'555-0100\''],
    ['report-bot', 'SELECT email FROM customers ORDER BY 1'],
    // Whether a computation fails shows the value it computed on (clause error).
    ['alice', 'SELECT 1 / (ascii(email) - 107) FROM customers WHERE id = 1'],
    ['alice', 'SELECT 1 / (length(email) - 16) FROM customers WHERE id = 1'],
    ['alice', 'SELECT email::int FROM customers'],
    ['alice', 'SELECT CAST(ssn AS date) FROM customers'],
    ['alice', 'SELECT ssn::text[] FROM customers'],
    ['alice', 'SELECT CASE WHEN email LIKE \'k%\' THEN 1 / 0 ELSE 1 END FROM customers WHERE id = 1'],
    ['alice', 'SELECT coalesce(nullif(length(email), 16), 1 / 0) FROM customers'],
    ['alice', 'SELECT email LIKE \'k%\' AND id / 0 = 1 FROM customers'],
    // What CASE and AND/OR decide on chooses what else runs, and how long it takes.
    ['alice', 'SELECT CASE WHEN email LIKE \'k%\' THEN md5(md5(md5(name))) ELSE \'\' END FROM customers WHERE id = 1'],
    ['alice', 'SELECT CASE email WHEN \'x\' THEN 1 ELSE 2 END FROM customers'],
    ['alice', 'SELECT ssn > \'5\' OR length(md5(name)) > 0 FROM customers'],
    ['alice', 'SELECT CASE WHEN ssn > \'5\' THEN (SELECT 1 FROM generate_series(1, 2)) END FROM customers'],
    ['alice', 'SELECT \'x\' ~ email FROM customers'],
    ['alice', 'SELECT \'x\' LIKE email FROM customers'],
    ['alice', 'SELECT substr(email, 1, length(name)) FROM customers'],
    ['alice', 'SELECT format(email, 1) FROM customers'],
    ['alice', 'SELECT (SELECT 1 / (ascii(c.email) - 107)) FROM customers c'],
    ['alice', 'SELECT xmlelement(name e, email) FROM customers'],
    // A cast to a type of another schema named like text could be a domain with a CHECK.
    ['alice', 'SELECT email::public.text FROM customers'],
  ];

  it.each(denied)('%s: %s → deny (builtin:inference)', (who, sql) => {
    const decision = decide(who, sql);
    expect({ action: decision.action, ruleId: decision.ruleId }).toEqual({ action: 'deny', ruleId: 'builtin:inference' });
    expect(decision.message).toMatch(/^dbgate: .* is not allowed because its values are masked for you \(rule mask-pii\)/);
    expect(decision.detail).toBe('rule: builtin:inference');
    expect(decision.hint).toMatch(/^select the masked column without (conditions on it|computing on it \(computed values come back masked anyway\)), or ask for unmasked access/);
  });

  const allowed: Array<[Person, string, PolicyAction]> = [
    ['alice', 'SELECT email FROM customers WHERE id = 1', 'mask'],
    ['alice', 'SELECT email, phone FROM customers ORDER BY id', 'mask'],
    ['alice', 'SELECT * FROM customers ORDER BY id LIMIT 5', 'mask'],
    ['alice', 'SELECT c.email, o.total_cents FROM customers c JOIN orders o ON o.customer_id = c.id', 'mask'],
    ['alice', 'WITH x AS (SELECT id, email FROM customers) SELECT email FROM x WHERE id = 1', 'mask'],
    ['alice', 'SELECT email FROM customers UNION ALL SELECT \'nobody@example.org\'', 'mask'],
    ['alice', 'SELECT count(*), count(email) FROM customers', 'mask'],
    // Computations that never fail stay usable (their results are masked whole).
    ['alice', 'SELECT length(email), lower(email) || \'!\', md5(ssn), email::text, email LIKE \'k%\' FROM customers', 'mask'],
    ['alice', 'SELECT CASE WHEN id = 1 THEN email ELSE name END, coalesce(phone, \'none\') FROM customers', 'mask'],
    ['alice', 'SELECT to_jsonb(c) ->> \'email\', row_to_json(c) FROM customers c', 'mask'],
    ['alice', 'SELECT substr(ssn, 1, 3), lpad(phone, 12), format(\'%s!\', email), jsonb_build_object(\'e\', email) FROM customers', 'mask'],
    ['alice', 'SELECT substr(ssn, $1, $2), email LIKE $3 FROM customers', 'mask'],
    ['alice', 'SELECT email::pg_catalog.text, email::varchar(20), ssn::character varying FROM customers', 'mask'],
    // Failing computations on columns that are not masked are no business of masking.
    ['alice', 'SELECT id / 0, CASE WHEN name LIKE \'k%\' THEN 1 / 0 END, email FROM customers', 'mask'],
    ['alice', 'SELECT id FROM archive.customers WHERE email = \'a@b.c\'', 'mask'],
    ['bob', 'SELECT id FROM customers WHERE email = \'a@b.c\'', 'allow'],
    ['bob', 'SELECT DISTINCT ssn FROM customers ORDER BY ssn', 'allow'],
    ['carol', 'SELECT c.id FROM customers c JOIN customers x ON c.email = x.email', 'allow'],
  ];

  it.each(allowed)('%s: %s → %s', (who, sql, action) => {
    expect(decide(who, sql).action).toBe(action);
  });

  it('says which column, in which clause, and which rule masks it', () => {
    expect(decide('alice', 'SELECT id FROM customers WHERE email = \'a@b.c\'')).toMatchObject({
      action: 'deny',
      ruleId: 'builtin:inference',
      message: 'dbgate: filtering on customers.email (WHERE) is not allowed because its values are masked for you (rule mask-pii)',
      hint: 'select the masked column without conditions on it, or ask for unmasked access (the policy owner can permit ' +
        'this with allow_inference: [where] on rule mask-pii)',
    });
    expect(decide('alice', 'SELECT id FROM customers ORDER BY ssn').message).toMatch(/^dbgate: sorting by customers\.ssn \(ORDER BY\)/);
    expect(decide('alice', 'SELECT DISTINCT * FROM customers').message).toMatch(
      /^dbgate: deduplicating on customers\.email \(DISTINCT\) .*; the statement uses customers as a whole there$/,
    );
  });

  it('denies a held write whose WHERE tests a masked column: running it would answer the test', () => {
    expect(decide('alice', 'UPDATE customers SET name = \'x\' WHERE id = 1')).toMatchObject({ action: 'hold' });
    expect(decide('alice', 'UPDATE customers SET name = \'x\' WHERE email = \'a@b.c\'')).toMatchObject({
      action: 'deny',
      ruleId: 'builtin:inference',
    });
  });

  it('judges every statement of a message', () => {
    const decision = decide('alice', 'SELECT email FROM customers; SELECT id FROM customers WHERE ssn = \'1\'');
    expect(decision).toMatchObject({ action: 'deny', ruleId: 'builtin:inference', statementIndex: 1 });
  });

  it('resolves unqualified tables through the search_path like the rest of the engine', () => {
    const sql = 'SELECT id FROM customers WHERE email = \'a@b.c\'';
    expect(decide('alice', sql, { searchPath: ['archive'] }).action).toBe('mask');
    expect(decide('alice', sql, { searchPath: ['archive', 'public'] }).ruleId).toBe('builtin:inference');
    expect(decide('alice', `SET search_path = archive; ${sql}`).action).toBe('mask');
  });
});

describe('configuration', () => {
  it('inference_protection: false lets engineering filter on masked columns (still masked)', () => {
    const policy = demoWith((section) => {
      section['inference_protection'] = false;
    });
    expect(policy.version).not.toBe(DEMO_POLICY.version);
    for (const sql of ['SELECT id FROM customers WHERE email = \'a@b.c\'', 'SELECT DISTINCT ssn FROM customers ORDER BY ssn']) {
      const decision = decide('alice', sql, { policy });
      expect({ action: decision.action, ruleId: decision.ruleId }).toEqual({ action: 'mask', ruleId: 'mask-pii' });
    }
  });

  it('allow_inference on a mask rule permits the clauses it names, for its columns only', () => {
    const policy = demoWith((section) => {
      const rules = section['rules'] as Array<Record<string, unknown>>;
      rules.find((rule) => rule['id'] === 'mask-pii')!['allow_inference'] = ['order_by', 'group_by'];
    });
    expect(decide('alice', 'SELECT id FROM customers ORDER BY ssn', { policy }).action).toBe('mask');
    expect(decide('alice', 'SELECT phone, count(*) FROM customers GROUP BY phone', { policy }).action).toBe('mask');
    expect(decide('alice', 'SELECT id FROM customers WHERE ssn = \'1\'', { policy }).ruleId).toBe('builtin:inference');
  });

  it('each matching mask rule protects its own columns', () => {
    const policy = parsePolicy({
      grants: [{ groups: ['analysts'], targets: ['*'], access: 'read' }],
      rules: [
        { id: 'mask-email', match: {}, action: 'mask', columns: ['customers.email'], allow_inference: ['where'] },
        { id: 'mask-ssn', match: { tables: ['customers'] }, action: 'mask', columns: ['public.customers.ssn'] },
      ],
    });
    const analyst = { subject: 'ana', groups: ['analysts'], kind: 'human' as const };
    const judge = (sql: string, searchPath = ['$user', 'public']): Decision =>
      evaluate(policy, { identity: analyst, target: 'prod-orders', searchPath, classification: classifyStatements(sql) });
    expect(judge('SELECT id FROM customers WHERE email = \'x\'').action).toBe('mask');
    expect(judge('SELECT id FROM customers ORDER BY email').message).toMatch(/customers\.email .*rule mask-email/);
    expect(judge('SELECT id FROM customers WHERE ssn = \'1\'').message).toMatch(/customers\.ssn .*rule mask-ssn/);
    // A bare table in a rule matches the table in every schema; a qualified one only there.
    expect(judge('SELECT id FROM sales.customers ORDER BY email').ruleId).toBe('builtin:inference');
    expect(judge('SELECT id FROM sales.customers WHERE ssn = \'1\'').action).toBe('mask');
  });

  it('the schema accepts allow_inference only on mask rules, with known clauses', () => {
    const rule = (extra: Record<string, unknown>): unknown => ({ rules: [{ id: 'r', ...extra }] });
    expect(policySchema.safeParse(rule({ action: 'mask', columns: ['customers.email'], allow_inference: ['where', 'join'] })).success)
      .toBe(true);
    expect(policySchema.safeParse(rule({ action: 'deny', allow_inference: ['where'] })).success).toBe(false);
    expect(policySchema.safeParse(rule({ action: 'mask', columns: ['customers.email'], allow_inference: ['select'] })).success)
      .toBe(false);
    expect(policySchema.safeParse(rule({ action: 'mask', columns: ['customers.email'], allow_inference: [] })).success).toBe(false);
  });
});
