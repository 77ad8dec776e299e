/**
 * The `policy:` config section: validated once at the edge, with errors that point at the key; compiled into the
 * Policy that evaluation uses, with a version that changes whenever the content does (the decision cache's key).
 */
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { policySchema, policyTargetIssues } from '../../src/gateway/config/policy-schema.js';
import { compilePolicy, DEMO_POLICY, DEMO_POLICY_YAML } from '../../src/gateway/policy/policy.js';

/** The messages of a failed validation, as "path: message". */
function problems(value: unknown): string[] {
  const result = policySchema.safeParse(value);
  if (result.success) return [];
  return result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

describe('policy schema', () => {
  it('accepts the demo policy', () => {
    const section = (parseYaml(DEMO_POLICY_YAML) as { policy: unknown }).policy;
    expect(problems(section)).toEqual([]);
    expect(DEMO_POLICY.rules.map((rule) => rule.id)).toEqual([
      'deny-unbounded-writes',
      'hold-schema-changes',
      'hold-engineering-writes',
      'hold-payments-writes',
      'mask-pii',
    ]);
    expect(DEMO_POLICY.approverGroups).toEqual(['dba']);
  });

  it('fills defaults: inference protection on, no grants, no rules', () => {
    expect(policySchema.parse({})).toEqual({ inference_protection: true, approver_groups: [], grants: [], rules: [] });
  });

  it.each([
    [{ rules: [{ id: 'm', action: 'mask' }] }, 'rules.0.columns: a mask rule needs columns'],
    [{ rules: [{ id: 'd', action: 'deny', columns: ['customers.email'] }] }, 'rules.0.columns: columns only apply to action: mask'],
    [{ rules: [{ id: 'k', action: 'deny', match: { kinds: ['delet'] } }] }, 'rules.0.match.kinds.0:'],
    [{ rules: [{ id: 'x', action: 'deny', match: { table: ['customers'] } }] }, 'rules.0.match: Unrecognized key: "table"'],
    [{ rules: [{ id: 'a', action: 'allow' }, { id: 'a', action: 'deny' }] }, 'rules.1.id: rule id "a" is already used by rules[0]'],
    [{ rules: [{ id: 't', action: 'deny', match: { tables: ['a.b.c'] } }] }, 'rules.0.match.tables.0: expected "table" or "schema.table"'],
    [{ rules: [{ id: 'f', action: 'allow', match: { functions: ['pg_read_file()'] } }] }, 'rules.0.match.functions.0: expected "function"'],
    [{ rules: [{ id: 'c', action: 'mask', columns: ['email'] }] }, 'rules.0.columns.0: expected "table.column" or "schema.table.column"'],
    [{ rules: [{ id: 'Bad Id', action: 'allow' }] }, 'rules.0.id: rule ids'],
    [{ rules: [{ id: 'w', action: 'warn' }] }, 'rules.0.action:'],
    [{ grants: [{ groups: ['g'], targets: ['t'], access: 'owner' }] }, 'grants.0.access:'],
    [{ grants: [{ groups: [], targets: ['t'], access: 'read' }] }, 'grants.0.groups:'],
  ])('rejects %j with "%s…"', (value, expected) => {
    expect(problems(value).some((problem) => problem.startsWith(expected))).toBe(true);
  });

  it('names grants and rules whose targets do not exist', () => {
    const policy = policySchema.parse({
      grants: [{ groups: ['g'], targets: ['prod-orders', 'prod-ordrs', '*'], access: 'read' }],
      rules: [{ id: 'r', action: 'deny', match: { targets: ['staging'] } }],
    });
    expect(policyTargetIssues(policy, ['prod-orders'])).toEqual([
      { path: ['grants', 0, 'targets', 1], message: 'unknown target "prod-ordrs" (targets: prod-orders)' },
      { path: ['rules', 0, 'match', 'targets', 0], message: 'unknown target "staging" (targets: prod-orders)' },
    ]);
  });

  it('versions a compiled policy by its content', () => {
    const section = policySchema.parse((parseYaml(DEMO_POLICY_YAML) as { policy: unknown }).policy);
    expect(compilePolicy(section).version).toBe(DEMO_POLICY.version);
    const changed = policySchema.parse({ ...section, approver_groups: ['dba', 'security'] });
    expect(compilePolicy(changed).version).not.toBe(DEMO_POLICY.version);
  });
});
