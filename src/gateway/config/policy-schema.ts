/**
 * The `policy:` section of the gateway configuration, as a schema. `compilePolicy` (policy/policy.ts) turns the
 * validated section into the `Policy` that `evaluate` uses; the semantics are documented there.
 *
 * ```yaml
 * policy:
 *   inference_protection: true      # WHERE/ORDER BY/GROUP BY/DISTINCT/JOIN on masked columns denied (masking)
 *   approver_groups: [dba]          # named in the hint of held statements
 *   grants:                         # which groups reach which targets, at which access level
 *     - groups: [engineering]
 *       targets: [prod-orders]      # '*' = every target
 *       access: read                # read | write | admin
 *   rules:                          # every matching rule counts; the most restrictive action wins
 *     - id: hold-ddl
 *       match: { kinds: [ddl, truncate] }
 *       action: hold                # allow | mask | deny | hold
 *       reason: schema changes need an approval
 *     - id: deny-unbounded-writes
 *       match: { kinds: [update, delete], where: absent }
 *       action: deny
 *       reason: UPDATE/DELETE without WHERE would change every row
 *       hint: add a WHERE clause that selects the rows to change
 *     - id: mask-pii
 *       match: { groups: [engineering, agents] }
 *       action: mask
 *       columns: [customers.email, public.payments.card_number]
 *       allow_inference: [order_by]   # optional: clauses in which these columns may still be used
 * ```
 *
 * Match fields (all optional; a rule matches when every field given matches, an empty match matches everything):
 * `groups`, `targets` ('*' allowed in both), `kinds` (statement kinds), `ddl_objects`, `ddl_actions`, `tables`
 * (`table` = that table in any schema; `schema.table`), `functions` (`name` = any schema; `schema.name`),
 * `where: present | absent`, `writes: true | false` (with `tables`: one of those tables is written).
 */
import { z } from 'zod';
import { DDL_ACTIONS, DDL_OBJECTS, INFERENCE_CLAUSES, STATEMENT_KINDS } from '../policy/classify.js';

/** Identifiers as policy files spell them: no dots, quotes or whitespace inside one part. */
const part = '[^.\\s"()]+';
const groupOrTarget = z.string().min(1);
const tableName = z.string().regex(new RegExp(`^${part}(\\.${part})?$`), 'expected "table" or "schema.table"');
const columnName = z
  .string()
  .regex(new RegExp(`^${part}\\.${part}(\\.${part})?$`), 'expected "table.column" or "schema.table.column"');
const functionName = z
  .string()
  .regex(new RegExp(`^${part}(\\.${part})?$`), 'expected "function" or "schema.function", without parentheses');

export const POLICY_ACTIONS = ['allow', 'mask', 'deny', 'hold'] as const;
export const ACCESS_LEVELS = ['read', 'write', 'admin'] as const;

export const policyMatchSchema = z
  .object({
    groups: z.array(groupOrTarget).min(1).optional(),
    targets: z.array(groupOrTarget).min(1).optional(),
    kinds: z.array(z.enum(STATEMENT_KINDS)).min(1).optional(),
    ddl_objects: z.array(z.enum(DDL_OBJECTS)).min(1).optional(),
    ddl_actions: z.array(z.enum(DDL_ACTIONS)).min(1).optional(),
    tables: z.array(tableName).min(1).optional(),
    functions: z.array(functionName).min(1).optional(),
    where: z.enum(['present', 'absent']).optional(),
    writes: z.boolean().optional(),
  })
  .strict();

export const policyRuleSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'rule ids: lower-case letters, digits, _ and -'),
    match: policyMatchSchema.default({}),
    action: z.enum(POLICY_ACTIONS),
    /** Shown to the user: "dbgate: … denied: <reason>". */
    reason: z.string().min(1).optional(),
    /** The next step shown to the user when this rule denies. */
    hint: z.string().min(1).optional(),
    /** For action mask: the columns to mask. */
    columns: z.array(columnName).min(1).optional(),
    /**
     * For action mask: how values are masked — partial (`a***@example.com`, `****1234`; the default), redact
     * (`[redacted]`), hash (a keyed deterministic hash: joins and equality on masked values still line up), null.
     */
    style: z.enum(['partial', 'redact', 'hash', 'null']).optional(),
    /**
     * For action mask: clauses in which its columns may be used although inference protection is on (`where`,
     * `join`, `order_by`, `group_by`, `distinct`, `having`, `window`, `set_operation`).
     */
    allow_inference: z.array(z.enum(INFERENCE_CLAUSES)).min(1).optional(),
  })
  .strict()
  .superRefine((rule, ctx) => {
    if (rule.action === 'mask' && rule.columns === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a mask rule needs columns', path: ['columns'] });
    }
    if (rule.action !== 'mask' && rule.columns !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'columns only apply to action: mask', path: ['columns'] });
    }
    if (rule.action !== 'mask' && rule.style !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'style only applies to action: mask', path: ['style'] });
    }
    if (rule.action !== 'mask' && rule.allow_inference !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'allow_inference only applies to action: mask', path: ['allow_inference'] });
    }
  });

export const policyGrantSchema = z
  .object({
    groups: z.array(groupOrTarget).min(1),
    targets: z.array(groupOrTarget).min(1),
    access: z.enum(ACCESS_LEVELS),
  })
  .strict();

export const policySchema = z
  .object({
    /**
     * Deny predicates, joins, ordering, grouping, DISTINCT, window partitions and set operations on masked columns
     * (they leak the hidden values by inference). Per mask rule, `allow_inference` permits chosen clauses.
     */
    inference_protection: z.boolean().default(true),
    /** Groups whose members may approve held statements; named in the hint of a hold. */
    approver_groups: z.array(groupOrTarget).default([]),
    grants: z.array(policyGrantSchema).default([]),
    rules: z.array(policyRuleSchema).default([]),
  })
  .strict()
  .superRefine((policy, ctx) => {
    const seen = new Map<string, number>();
    policy.rules.forEach((rule, index) => {
      const first = seen.get(rule.id);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `rule id "${rule.id}" is already used by rules[${first}]`,
          path: ['rules', index, 'id'],
        });
      } else {
        seen.set(rule.id, index);
      }
    });
  });

export type PolicyConfigFile = z.infer<typeof policySchema>;
export type PolicyRuleConfig = z.infer<typeof policyRuleSchema>;
export type PolicyGrantConfig = z.infer<typeof policyGrantSchema>;

/** A problem in the policy that the schema alone cannot see, with its path below `policy`. */
export interface PolicyIssue {
  path: Array<string | number>;
  message: string;
}

/**
 * Cross-checks against the rest of the config: every target a grant or rule names must exist (a typo there would
 * silently grant nothing, or hold nothing). Paths are relative to `policy`.
 */
export function policyTargetIssues(policy: PolicyConfigFile, targetNames: Iterable<string>): PolicyIssue[] {
  const known = new Set(targetNames);
  const issues: PolicyIssue[] = [];
  const check = (targets: readonly string[], path: Array<string | number>): void => {
    targets.forEach((target, index) => {
      if (target !== '*' && !known.has(target)) {
        issues.push({ path: [...path, index], message: `unknown target "${target}" (targets: ${[...known].join(', ')})` });
      }
    });
  };
  policy.grants.forEach((grant, index) => check(grant.targets, ['grants', index, 'targets']));
  policy.rules.forEach((rule, index) => check(rule.match.targets ?? [], ['rules', index, 'match', 'targets']));
  return issues;
}
