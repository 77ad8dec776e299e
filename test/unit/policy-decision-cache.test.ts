/**
 * The decision cache: a repeated statement is neither re-parsed nor re-evaluated, and a cached decision is exactly
 * the one evaluation would return — because the key holds everything evaluation reads.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyStatements, loadStatementParser } from '../../src/gateway/policy/classify.js';
import { DecisionCache, type DecideRequest } from '../../src/gateway/policy/decision-cache.js';
import { DEMO_POLICY, evaluate, parsePolicy } from '../../src/gateway/policy/policy.js';

beforeAll(async () => {
  await loadStatementParser();
});

const alice = { subject: 'alice', groups: ['engineering'], kind: 'human' as const };
const bob = { subject: 'bob', groups: ['dba'], kind: 'human' as const };

function request(sql: string, overrides: Partial<DecideRequest> = {}): DecideRequest {
  return { identity: alice, target: 'prod-orders', searchPath: ['$user', 'public'], sql, ...overrides };
}

describe('DecisionCache', () => {
  it('answers a repeated statement from the cache with the decision evaluation gives', () => {
    const cache = new DecisionCache();
    const sql = 'DELETE FROM orders WHERE id = 1';
    const first = cache.decide(DEMO_POLICY, request(sql));
    const second = cache.decide(DEMO_POLICY, request(sql));
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
    expect(cache.decide(DEMO_POLICY, request(sql)).decision.ruleId).toBe('hold-engineering-writes');
    expect(cache.decide(DEMO_POLICY, request(sql, { identity: bob })).decision.ruleId).toBe('hold-payments-writes');
    expect(cache.decide(DEMO_POLICY, request(sql, { identity: bob, target: 'analytics' })).decision.ruleId).toBe('access:none');
    const other = parsePolicy({ grants: [{ groups: ['dba'], targets: ['*'], access: 'admin' }] });
    expect(cache.decide(other, request(sql, { identity: bob })).decision).toMatchObject({ action: 'allow', ruleId: 'access:admin' });

    const protectArchive = parsePolicy({
      grants: [{ groups: ['dba'], targets: ['*'], access: 'admin' }],
      rules: [{ id: 'deny-archive', match: { tables: ['archive.orders'] }, action: 'deny' }],
    });
    const del = 'DELETE FROM orders WHERE id = 1';
    expect(cache.decide(protectArchive, request(del, { identity: bob })).decision.action).toBe('allow');
    expect(cache.decide(protectArchive, request(del, { identity: bob, searchPath: ['archive'] })).decision.action).toBe('deny');

    const reordered = { subject: 'x', groups: ['b', 'a'], kind: 'human' as const };
    cache.decide(DEMO_POLICY, request('SELECT 1', { identity: { ...reordered, groups: ['a', 'b'] } }));
    expect(cache.decide(DEMO_POLICY, request('SELECT 1', { identity: reordered })).cached).toBe(true);
  });

  it('shares classifications across identities', () => {
    const cache = new DecisionCache();
    cache.decide(DEMO_POLICY, request('SELECT * FROM customers'));
    cache.decide(DEMO_POLICY, request('SELECT * FROM customers', { identity: bob }));
    expect(cache.stats).toMatchObject({ misses: 2, classificationHits: 1 });
  });

  it('evicts the least recently used entry when full', () => {
    const cache = new DecisionCache({ maxEntries: 2 });
    cache.decide(DEMO_POLICY, request('SELECT 1'));
    cache.decide(DEMO_POLICY, request('SELECT 2'));
    cache.decide(DEMO_POLICY, request('SELECT 1'));
    cache.decide(DEMO_POLICY, request('SELECT 3'));
    expect(cache.decide(DEMO_POLICY, request('SELECT 1')).cached).toBe(true);
    expect(cache.decide(DEMO_POLICY, request('SELECT 2')).cached).toBe(false);
  });

  it('does not cache statements longer than maxStatementLength', () => {
    const cache = new DecisionCache({ maxStatementLength: 20 });
    const long = 'SELECT 1 AS a_long_column_name';
    cache.decide(DEMO_POLICY, request(long));
    expect(cache.decide(DEMO_POLICY, request(long)).cached).toBe(false);
    expect(cache.stats.size).toBe(0);
  });

  it('hands out frozen decisions, so one connection cannot change another\'s', () => {
    const cache = new DecisionCache();
    const { decision } = cache.decide(DEMO_POLICY, request('SELECT * FROM customers'));
    expect(Object.isFrozen(decision)).toBe(true);
    expect(Object.isFrozen(decision.maskColumns)).toBe(true);
    expect(() => decision.maskColumns.pop()).toThrow(TypeError);
  });
});
