/**
 * The statement hook's per-connection memory of decisions: a connection remembers the decisions of texts with
 * parameters (drivers send them again verbatim), and forgets them when what they depend on changes — the session's
 * search_path or the policy's view of the target's catalog — because the proxy replaces those, never edits them.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditWriter } from '../../src/gateway/audit/audit-writer.js';
import type { TargetConfig } from '../../src/gateway/config/load.js';
import { loadStatementParser } from '../../src/gateway/policy/classify.js';
import { DecisionCache } from '../../src/gateway/policy/decision-cache.js';
import { parsePolicy } from '../../src/gateway/policy/policy.js';
import { createPolicyStatementHook, type ConnectionContext } from '../../src/gateway/policy/statement-hook.js';

beforeAll(async () => {
  await loadStatementParser();
});

/** Deleting from archive.orders is denied; bob may do anything else. */
const POLICY = parsePolicy({
  grants: [{ groups: ['dba'], targets: ['*'], access: 'admin' }],
  rules: [{ id: 'deny-archive', match: { tables: ['archive.orders'] }, action: 'deny' }],
});

function connection(): ConnectionContext {
  return {
    connectionId: 'c-test',
    identity: {
      subject: 'bob', email: undefined, name: undefined, groups: ['dba'], kind: 'human',
      sessionId: '00000000-0000-4000-8000-000000000000', expiresAt: Date.now() + 60_000, actors: [],
    },
    target: { name: 'prod-orders' } as TargetConfig,
    clientAddress: '127.0.0.1:1',
    tunnelId: undefined,
    session: { searchPath: ['$user', 'public'] },
  };
}

describe('statement hook', () => {
  // The writer is a seam of ours; deciding only asks whether it is healthy.
  const hook = createPolicyStatementHook({ audit: { healthy: true } as AuditWriter, policy: POLICY, cache: new DecisionCache() });

  it('decides a parameterised text again after the search_path changed', () => {
    const context = connection();
    const text = 'DELETE FROM orders WHERE id = $1';
    expect(hook.decideStatement(context, { step: 'parse', text }).action).toBe('allow');
    expect(hook.decideStatement(context, { step: 'parse', text }).action).toBe('allow');
    context.session.searchPath = ['archive'];
    expect(hook.decideStatement(context, { step: 'parse', text })).toMatchObject({ action: 'deny', rule: 'deny-archive' });
    context.session.searchPath = ['$user', 'public'];
    expect(hook.decideStatement(context, { step: 'parse', text }).action).toBe('allow');
  });

  it('keeps each connection its own memory', () => {
    const inArchive = connection();
    inArchive.session.searchPath = ['archive'];
    const text = 'DELETE FROM orders WHERE id = $1 AND status = $2';
    expect(hook.decideStatement(connection(), { step: 'parse', text }).action).toBe('allow');
    expect(hook.decideStatement(inArchive, { step: 'parse', text }).action).toBe('deny');
  });

  it('tells which relations statements use, redefine, and use after redefining them in the same message', () => {
    const decide = (text: string) => hook.decideStatement(connection(), { step: 'query', text });
    expect(decide('create view v as select * from orders')).toMatchObject({ redefinedNames: ['v'] });
    expect(decide('create view v as select * from orders').usedRelations).toBeUndefined();
    expect(decide('select 1').usedRelations).toBeUndefined();
    expect(decide('create table t as select * from orders')).toMatchObject({ usedRelations: ['t', 'orders'] });
    expect(decide('update orders set status = $1')).toMatchObject({ usedRelations: ['orders'] });
    expect(decide('alter table orders rename to archived_orders')).toMatchObject({ redefinedNames: ['orders', 'archived_orders'] });
    expect(decide('create view v as select * from orders; update v set status = 1')).toMatchObject({ usedAfterRedefinition: ['v'] });
    expect(decide('create view v as select * from orders; create view w as select * from v').usedAfterRedefinition).toBeUndefined();
    expect(decide('update orders set status = 1; create view v as select * from orders').usedAfterRedefinition).toBeUndefined();
  });
});
