/**
 * GET /v1/targets lists, for each configured target, the highest access level any grant gives one of the caller's
 * groups — the rule the policy engine enforces, '*' wildcards included. (The endpoint itself runs against the dev
 * gateway in cli-targets-query.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { grantedTargets } from '../../src/gateway/api/server.js';
import type { TargetConfig } from '../../src/gateway/config/load.js';
import { DEMO_POLICY, parsePolicy } from '../../src/gateway/policy/policy.js';

function target(name: string, description?: string): TargetConfig {
  return { name, host: '127.0.0.1', port: 5432, database: name, user: 'svc', password: undefined, tls: 'disable', ca: undefined, description };
}

const TARGETS = [target('scratch', 'playground'), target('prod-orders', 'orders'), target('analytics')];

describe('grantedTargets', () => {
  it('gives each group its level under the demo policy, sorted by name, descriptions null when absent', () => {
    expect(grantedTargets(DEMO_POLICY, ['engineering'], TARGETS)).toEqual([{ name: 'prod-orders', access: 'read', description: 'orders' }]);
    expect(grantedTargets(DEMO_POLICY, ['dba'], TARGETS)).toEqual([
      { name: 'prod-orders', access: 'write', description: 'orders' },
      { name: 'scratch', access: 'admin', description: 'playground' },
    ]);
    expect(grantedTargets(DEMO_POLICY, ['marketing'], TARGETS)).toEqual([]);
  });

  it("takes the highest level over all of the caller's groups and honours '*' in groups and targets", () => {
    const policy = parsePolicy({
      grants: [
        { groups: ['*'], targets: ['analytics'], access: 'read' },
        { groups: ['sre'], targets: ['*'], access: 'write' },
        { groups: ['dba'], targets: ['analytics'], access: 'admin' },
      ],
    });
    expect(grantedTargets(policy, ['nobody-special'], TARGETS).map((t) => [t.name, t.access])).toEqual([['analytics', 'read']]);
    expect(grantedTargets(policy, ['sre', 'dba'], TARGETS).map((t) => [t.name, t.access])).toEqual([
      ['analytics', 'admin'], ['prod-orders', 'write'], ['scratch', 'write'],
    ]);
  });

  it('lists nothing when the gateway has no policy (every statement would be denied)', () => {
    expect(grantedTargets(undefined, ['dba'], TARGETS)).toEqual([]);
  });
});
