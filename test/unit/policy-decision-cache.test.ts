/**
 * The decision cache: a repeated statement is neither re-parsed nor re-evaluated, and a cached decision is exactly
 * the one evaluation would return — because the key holds everything evaluation reads.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyStatements, loadStatementParser } from '../../src/gateway/policy/classify.js';
import { DecisionCache, type CachedDecision, type DecisionScope } from '../../src/gateway/policy/decision-cache.js';
import { DEMO_POLICY, evaluate, parsePolicy, type Policy } from '../../src/gateway/policy/policy.js';

beforeAll(async () => {
  await loadStatementParser();
});

const alice = { subject: 'alice', groups: ['engineering'], kind: 'human' as const };
const bob = { subject: 'bob', groups: ['dba'], kind: 'human' as const };

function decideText(cache: DecisionCache, policy: Policy, sql: string, overrides: Partial<DecisionScope> = {}): CachedDecision {
  return cache.decide(policy, { identity: alice, target: 'prod-orders', searchPath: ['$user', 'public'], ...overrides }, sql);
}

describe('DecisionCache', () => {
  it('answers a repeated statement from the cache with the decision evaluation gives', () => {
    const cache = new DecisionCache();
    const sql = 'DELETE FROM orders WHERE id = 1';
    const first = decideText(cache, DEMO_POLICY, sql);
    const second = decideText(cache, DEMO_POLICY, sql);
    expect(first.cached).toBe(false);
    expect(second.cached).toBe(true);
    expect(second.decision).toEqual(first.decision);
    expect(second.decision).toEqual(
      evaluate(DEMO_POLICY, {
        identity: alice,
        target: 'prod-orders',
        searchPath: ['$user', 'public'],
        classification: classifyStatements(sql),
      }),
    );
    expect(cache.stats).toMatchObject({ hits: 1, misses: 1, size: 1 });
  });

  it('keys on groups (in any order), target, search_path and policy version', () => {
    const cache = new DecisionCache();
    const sql = 'UPDATE payments SET status = \'x\' WHERE id = 1';
    expect(decideText(cache, DEMO_POLICY, sql).decision.ruleId).toBe('hold-engineering-writes');
    expect(decideText(cache, DEMO_POLICY, sql, { identity: bob }).decision.ruleId).toBe('hold-payments-writes');
    expect(decideText(cache, DEMO_POLICY, sql, { identity: bob, target: 'analytics' }).decision.ruleId).toBe('access:none');
    const other = parsePolicy({ grants: [{ groups: ['dba'], targets: ['*'], access: 'admin' }] });
    expect(decideText(cache, other, sql, { identity: bob }).decision).toMatchObject({ action: 'allow', ruleId: 'access:admin' });

    const protectArchive = parsePolicy({
      grants: [{ groups: ['dba'], targets: ['*'], access: 'admin' }],
      rules: [{ id: 'deny-archive', match: { tables: ['archive.orders'] }, action: 'deny' }],
    });
    const del = 'DELETE FROM orders WHERE id = 1';
    expect(decideText(cache, protectArchive, del, { identity: bob }).decision.action).toBe('allow');
    expect(decideText(cache, protectArchive, del, { identity: bob, searchPath: ['archive'] }).decision.action).toBe('deny');

    const reordered = { subject: 'x', groups: ['b', 'a'], kind: 'human' as const };
    decideText(cache, DEMO_POLICY, 'SELECT 1', { identity: { ...reordered, groups: ['a', 'b'] } });
    expect(decideText(cache, DEMO_POLICY, 'SELECT 1', { identity: reordered }).cached).toBe(true);
  });

  it('shares classifications across identities', () => {
    const cache = new DecisionCache();
    decideText(cache, DEMO_POLICY, 'SELECT * FROM customers');
    decideText(cache, DEMO_POLICY, 'SELECT * FROM customers', { identity: bob });
    expect(cache.stats).toMatchObject({ misses: 2, classificationHits: 1 });
  });

  it('evicts the least recently used entry when full', () => {
    const cache = new DecisionCache({ maxEntries: 2 });
    decideText(cache, DEMO_POLICY, 'SELECT id FROM orders');
    decideText(cache, DEMO_POLICY, 'SELECT status FROM orders');
    decideText(cache, DEMO_POLICY, 'SELECT id FROM orders');
    decideText(cache, DEMO_POLICY, 'SELECT total FROM orders');
    expect(decideText(cache, DEMO_POLICY, 'SELECT id FROM orders').cached).toBe(true);
    expect(decideText(cache, DEMO_POLICY, 'SELECT status FROM orders').cached).toBe(false);
  });

  it('does not cache statements longer than maxStatementLength', () => {
    const cache = new DecisionCache({ maxStatementLength: 20 });
    const long = 'SELECT 1 AS a_long_column_name';
    decideText(cache, DEMO_POLICY, long);
    expect(decideText(cache, DEMO_POLICY, long).cached).toBe(false);
    expect(cache.stats.size).toBe(0);
  });

  it('hands out frozen decisions, so one connection cannot change another\'s', () => {
    const cache = new DecisionCache();
    const { decision } = decideText(cache, DEMO_POLICY, 'SELECT * FROM customers');
    expect(Object.isFrozen(decision)).toBe(true);
    expect(Object.isFrozen(decision.maskColumns)).toBe(true);
    expect(() => decision.maskColumns.pop()).toThrow(TypeError);
  });

  it('shares one decision among texts that differ only in their literals, from the second of a shape on', () => {
    const cache = new DecisionCache();
    const text = (aid: number): string => `SELECT abalance FROM pgbench_accounts WHERE aid = ${aid}`;
    expect(decideText(cache, DEMO_POLICY, text(1)).cached).toBe(false);
    expect(decideText(cache, DEMO_POLICY, text(2)).cached).toBe(false);
    for (let aid = 3; aid < 13; aid += 1) {
      const answer = decideText(cache, DEMO_POLICY, text(aid));
      expect(answer.cached).toBe(true);
      expect(answer.decision).toEqual(evaluate(DEMO_POLICY, {
        identity: alice, target: 'prod-orders', searchPath: ['$user', 'public'], classification: classifyStatements(text(aid)),
      }));
    }
    expect(cache.stats).toMatchObject({ misses: 2, hits: 10, normalizedHits: 10 });
  });

  it('finds the normalised text of a verified literal shape without normalizing again', () => {
    const cache = new DecisionCache();
    const text = (aid: number | string): string => `SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`;
    decideText(cache, DEMO_POLICY, text(1));
    expect(cache.stats.shapeHits).toBe(0);
    for (let aid = 2; aid < 12; aid += 1) {
      const answer = decideText(cache, DEMO_POLICY, text(aid));
      expect(cache.stats.shapeHits).toBe(aid - 1);
      // The decision a cache that has to normalize (a fresh one) gives, and the one evaluation gives.
      expect(answer.decision).toEqual(decideText(new DecisionCache(), DEMO_POLICY, text(aid)).decision);
      expect(answer.decision).toEqual(evaluate(DEMO_POLICY, {
        identity: alice, target: 'prod-orders', searchPath: ['$user', 'public'], classification: classifyStatements(text(aid)),
      }));
    }
    expect(cache.stats).toMatchObject({ misses: 2, normalizedHits: 9 });
    // An integer beyond int32 is another kind of literal: another shape, which normalize has not verified yet.
    expect(decideText(cache, DEMO_POLICY, text('2147483648')).cached).toBe(true);
    expect(cache.stats.shapeHits).toBe(10);
  });

  it('keeps normalizing the texts of a shape that fails verification, and still shares their decision', () => {
    const cache = new DecisionCache();
    const text = (id: number): string => `DELETE FROM orders WHERE id = -${id}`;
    for (let id = 1; id < 8; id += 1) {
      const answer = decideText(cache, DEMO_POLICY, text(id));
      expect(answer.decision).toEqual(evaluate(DEMO_POLICY, {
        identity: alice, target: 'prod-orders', searchPath: ['$user', 'public'], classification: classifyStatements(text(id)),
      }));
    }
    // Normalize folds the sign into the constant (`id = $1`), so the shape `id = -<int>` never verifies.
    expect(cache.stats).toMatchObject({ shapeHits: 0, misses: 2, normalizedHits: 5 });
  });

  it('never shares a decision that read a literal: settings, set_config, positions', () => {
    const cache = new DecisionCache();
    const harmless = "SELECT set_config('application_name', 'report', false)";
    decideText(cache, DEMO_POLICY, harmless);
    decideText(cache, DEMO_POLICY, harmless.replace('report', 'other'));
    const escape = decideText(cache, DEMO_POLICY, "SELECT set_config('role', 'evil', false)");
    expect(escape.cached).toBe(false);
    expect(escape.decision.action).toBe('deny');
    expect(classifyStatements(harmless).literalSensitive).toBe(true);
    expect(classifyStatements('SELECT id FROM customers ORDER BY 1').literalSensitive).toBe(true);
    expect(classifyStatements('SELECT id FROM customers WHERE id = 1 LIMIT 5').literalSensitive).toBe(false);
  });

  /**
   * The safety property: whatever order statements arrive in, a cached decision is the one a fresh evaluation of
   * that very text gives. Templates cover the places where literals decide (settings, set_config, ORDER BY / GROUP
   * BY positions, regclass names, DO bodies, COPY files, EXPLAIN options, dynamic SQL) and plain ones.
   */
  it('gives every text of a shape the decision evaluation gives it, in any order', () => {
    const templates = [
      'SELECT * FROM customers WHERE id = {n}',
      'SELECT id, name, email FROM customers ORDER BY {n}',
      'SELECT email, count(*) FROM customers GROUP BY {n}',
      'SELECT * FROM customers LIMIT {n} OFFSET {n}',
      "SELECT set_config({s}, {s}, {b})",
      'SET client_encoding = {s}',
      'SET search_path = {s}',
      'SET standard_conforming_strings = {s}',
      'SELECT {s}::regclass',
      'SELECT nextval({s})',
      "SELECT pg_read_file({s})",
      "SELECT query_to_xml({s}, true, true, '')",
      'DO $$BEGIN PERFORM {n}; END$$',
      'COPY customers TO {s}',
      'EXPLAIN (ANALYZE {b}) DELETE FROM orders WHERE id = {n}',
      'UPDATE orders SET status = {s} WHERE id = {n}',
      "SELECT * FROM customers c WHERE c.email = {s}",
      'SELECT {s} AS x, length({s})',
    ];
    const strings = ["'public'", "'search_path'", "'application_name'", "'LATIN1'", "'UTF8'", "'off'", "'customers'",
      "'/etc/passwd'", "'select * from customers'", "'x'"];
    const numbers = ['1', '2', '3', '0', '42'];
    const booleans = ['true', 'false'];
    const texts: string[] = [];
    for (const template of templates) {
      for (let variant = 0; variant < 12; variant += 1) {
        let counter = variant;
        const pick = (list: string[]): string => list[(counter++ * 7 + 3) % list.length]!;
        texts.push(template.replace(/\{s\}/g, () => pick(strings)).replace(/\{n\}/g, () => pick(numbers))
          .replace(/\{b\}/g, () => pick(booleans)));
      }
    }
    for (const order of [texts, [...texts].reverse(), texts.filter((_, i) => i % 2 === 0).concat(texts.filter((_, i) => i % 2 === 1))]) {
      const cache = new DecisionCache();
      for (const identity of [alice, bob]) {
        for (const sql of order) {
          const expected = evaluate(DEMO_POLICY, {
            identity, target: 'prod-orders', searchPath: ['$user', 'public'], classification: classifyStatements(sql),
          });
          expect(decideText(cache, DEMO_POLICY, sql, { identity }).decision, sql).toEqual(expected);
        }
      }
      expect(cache.stats.normalizedHits).toBeGreaterThan(0);
    }
  });
});
