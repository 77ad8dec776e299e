/**
 * Property: a message is judged as a whole. For random compositions of statements (random order, repetition,
 * separators with comments), the message's decision is the most restrictive of its statements' own decisions — so a
 * message containing any denied statement is denied, whatever surrounds it.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyStatements, loadStatementParser } from '../../src/gateway/policy/classify.js';
import { DEMO_POLICY, evaluate, type Decision, type PolicyAction } from '../../src/gateway/policy/policy.js';

beforeAll(async () => {
  await loadStatementParser();
});

/** Statements over the demo schema; none changes search_path, so each one's decision does not depend on the others. */
const STATEMENTS = [
  'SELECT * FROM customers',
  'SELECT count(*) FROM orders WHERE status = \'paid\'',
  'SELECT $q$ ; DROP TABLE customers; $q$',
  'UPDATE orders SET status = \'paid\' WHERE id = 7',
  'UPDATE payments SET status = \'refunded\' WHERE id = 7',
  'DELETE FROM orders',
  'WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d',
  'EXPLAIN DELETE FROM orders',
  'EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1',
  'INSERT INTO orders (customer_id) VALUES (1)',
  'DROP TABLE payments',
  'TRUNCATE orders',
  'GRANT SELECT ON customers TO mallory',
  'SELECT pg_read_file(\'/etc/passwd\')',
  'SELECT lo_import(\'/etc/passwd\')',
  'SELECT audit_touch(id) FROM customers',
  'SET ROLE postgres',
  'SELECT set_config(\'role\', \'postgres\', false)',
  'SET standard_conforming_strings = off',
  'COPY customers TO PROGRAM \'cat\'',
  'COPY orders FROM STDIN',
  'DO $$ BEGIN EXECUTE \'DROP TABLE orders\'; END $$',
  'BEGIN',
  'COMMIT',
  'SET statement_timeout = \'5s\'',
];

const IDENTITIES = [
  { subject: 'alice', groups: ['engineering'], kind: 'human' as const },
  { subject: 'bob', groups: ['dba'], kind: 'human' as const },
  { subject: 'carol', groups: ['security'], kind: 'human' as const },
  { subject: 'report-bot', groups: ['agents'], kind: 'agent' as const },
];

const SEPARATORS = [';', '; ', ';\n', ' ; -- a comment; with a semicolon\n', '; /* ; */ '];
const SEVERITY: Record<PolicyAction, number> = { allow: 0, mask: 1, hold: 2, deny: 3 };

function judge(identity: (typeof IDENTITIES)[number], sql: string): Decision {
  return evaluate(DEMO_POLICY, {
    identity,
    target: 'prod-orders',
    searchPath: ['$user', 'public'],
    classification: classifyStatements(sql),
  });
}

describe('multi-statement messages (property)', () => {
  it('the message decision is the most restrictive statement decision; any deny denies the message', () => {
    const message = fc.record({
      identity: fc.constantFrom(...IDENTITIES),
      parts: fc.array(fc.record({ sql: fc.constantFrom(...STATEMENTS), separator: fc.constantFrom(...SEPARATORS) }), {
        minLength: 1,
        maxLength: 6,
      }),
    });
    fc.assert(
      fc.property(message, ({ identity, parts }) => {
        const sql = parts.map((part) => part.sql + part.separator).join('');
        const alone = parts.map((part) => judge(identity, part.sql));
        const whole = judge(identity, sql);

        expect(classifyStatements(sql).statements.map((statement) => statement.kind)).toEqual(
          parts.map((part) => classifyStatements(part.sql).statements[0]!.kind),
        );
        const worst = Math.max(...alone.map((decision) => SEVERITY[decision.action]));
        expect(SEVERITY[whole.action]).toBe(worst);
        if (alone.some((decision) => decision.action === 'deny')) expect(whole.action).toBe('deny');
        // The statement it names as deciding is one with that decision, and the first such.
        expect(alone[whole.statementIndex]!.action).toBe(whole.action);
        expect(alone.findIndex((decision) => decision.action === whole.action)).toBe(whole.statementIndex);
        expect(whole.ruleId).toBe(alone[whole.statementIndex]!.ruleId);
      }),
      { numRuns: 300 },
    );
  });
});
