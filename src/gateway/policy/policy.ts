/**
 * The policy model and its evaluation: given who is asking, which target, the session's search_path and the
 * classification of a message, decide `allow | mask | deny | hold` and say why.
 *
 * ## Semantics
 *
 * 1. **Rules: most restrictive wins.** Every rule whose `match` holds for a statement counts; the decision is the most
 *    restrictive action among them — deny > hold > mask > allow — whatever their order in the file, because rule
 *    order in a YAML file is an easy place for a security mistake. Among rules with that action the first one in the
 *    file is reported. A mask decision masks the columns of every matching mask rule.
 * 2. **Grants: the access level is an implicit rule.** The identity's level on the target is the highest level any of
 *    its groups is granted there (`targets: ['*']` grants every target).
 *    - no grant → deny ("you have no access to target X"); nothing overrides this.
 *    - `read` → a statement that writes is denied, unless a rule holds it (a hold lets that person ask an approver to
 *      run that one statement).
 *    - `write` → DML is fine; DDL, GRANT/REVOKE and role statements need `admin` (again: unless a rule holds it).
 *    - `admin` → whatever the rules allow.
 * 3. **Built-in, fail-closed checks** that no rule switches off:
 *    - a syntax error → deny (PostgreSQL would reject it too).
 *    - session escapes — SET ROLE / RESET ROLE, SET SESSION AUTHORIZATION, `set_config()` of role,
 *      session_authorization or search_path, `standard_conforming_strings = off`, a client_encoding other than UTF8 →
 *      deny. `SET search_path` itself is allowed and returned in `sessionEffects` (later decisions depend on it; the
 *      caller tracks it). RESET ALL / DISCARD ALL are allowed and reset the tracked search_path.
 *    - unanalysable statements (dynamic SQL in DO, COPY … PROGRAM, COPY to/from a server file, SQL-level EXECUTE,
 *      LOAD, unknown statement types) → deny; a rule that names the statement's kind in `match.kinds` (say
 *      `kinds: [do]`) with action hold turns that into a hold.
 *    - a DO block, even one without EXECUTE → deny, unless a rule names kind `do`: then that rule's action applies
 *      (allow lets the block's own statements be judged like any other).
 *    - dangerous functions (functions.ts: file access, large objects, dblink, other sessions…), functions that run SQL
 *      strings (query_to_xml…), and unknown functions (user-defined: they can write or run dynamic SQL) → deny,
 *      unless a rule that matches the identity names the function in `match.functions`: allow/mask vouches for it,
 *      hold holds the statement, deny denies. For CALL a rule naming kind `call` counts as naming the procedure.
 *      An unqualified built-in counts as unknown when the session's search_path puts another schema before
 *      pg_catalog (someone's `lower()` could run instead).
 * 4. **A message is judged as a whole**: every statement is evaluated (search_path changes apply to the statements
 *    after them), and the most restrictive per-statement decision is the message's decision — one denied statement
 *    and nothing of the message runs.
 *
 * Table names: a statement's unqualified table resolves through the session's search_path. A rule naming
 * `schema.table` matches it when that schema is anywhere on the search_path (or pg_catalog) for deny/hold/mask rules,
 * and only when it is the first schema for allow rules: over-matching a restriction is safe, over-matching a
 * permission is not. A rule naming a bare `table` matches that table in every schema — binding it to the session's
 * search_path would let `SET search_path` move the rule away from the table.
 *
 * The target's catalog (target-catalog.ts): a statement is judged with the tables and table columns behind the views
 * it names — restrictions naming a table match statements on views over it, permissions only the names a statement
 * uses; inference protection follows view columns to the table columns behind them — and with masked columns the
 * database renamed under their policy names. A masked read of a table whose masked column the catalog cannot find
 * is denied (`builtin:masked-column-missing`): masking could not find its values.
 *
 * 5. **Inference protection** (`inference_protection`, default on): when a mask rule matches a statement, a column it
 *    masks that the statement filters, joins, sorts, groups, deduplicates, partitions or compares by (its
 *    `inferenceColumns`, inference.ts) → deny (`builtin:inference`): masking the output does not help when the WHERE
 *    clause can test the hidden value. Columns resolve like tables above (restriction semantics); a bare `table.column`
 *    matches the table in every schema; an inference column `*` (whole-row references, NATURAL JOIN, `SELECT DISTINCT
 *    *`…) stands for every masked column of its table. A mask rule's `allow_inference: [where, order_by, …]` permits
 *    those clauses for its columns; `inference_protection: false` turns the check off for the whole policy. It applies
 *    whatever else decides — a held UPDATE whose WHERE tests a masked column is denied, since running it (approved or
 *    not) would tell its author whether the hidden value matched.
 */
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import type { Identity } from '../identity/credentials.js';
import { policySchema, type PolicyConfigFile } from '../config/policy-schema.js';
import type {
  Classification,
  DdlAction,
  DdlObject,
  InferenceClause,
  InferenceColumn,
  SessionEffect,
  StatementInfo,
  StatementKind,
  TableColumn,
  TableRef,
  UnanalyzableReason,
} from './classify.js';
import { strictestStyle } from '../masking/mask.js';
import { assessFunction, BUILTIN_SCHEMA } from './functions.js';
import { catalogColumnName, NO_CATALOG, withCatalog, type PolicyCatalog, type StatementInCatalog } from './target-catalog.js';

// ---------------------------------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------------------------------

export type PolicyAction = 'allow' | 'mask' | 'deny' | 'hold';
export type AccessLevel = 'read' | 'write' | 'admin';

interface NameSpec {
  /** Lower-case; null = any schema. */
  schema: string | null;
  name: string;
}

interface CompiledMatch {
  groups?: ReadonlySet<string>;
  targets?: ReadonlySet<string>;
  kinds?: ReadonlySet<StatementKind>;
  ddlObjects?: ReadonlySet<DdlObject>;
  ddlActions?: ReadonlySet<DdlAction>;
  tables?: readonly NameSpec[];
  functions?: readonly NameSpec[];
  where?: 'present' | 'absent';
  writes?: boolean;
}

export interface PolicyRule {
  id: string;
  action: PolicyAction;
  reason: string | undefined;
  hint: string | undefined;
  /** For mask rules: `table.column` or `schema.table.column`, lower-case. */
  columns: readonly string[];
  /** For mask rules: how values are masked. */
  style: 'partial' | 'redact' | 'hash' | 'null';
  /** For mask rules: the clauses in which its columns may be used despite inference protection (`allow_inference`). */
  allowInference: ReadonlySet<InferenceClause>;
  match: CompiledMatch;
}

export interface PolicyGrant {
  groups: ReadonlySet<string>;
  targets: ReadonlySet<string>;
  access: AccessLevel;
}

/** A validated, compiled policy. Immutable; `version` changes whenever its content does (decision cache key). */
export interface Policy {
  version: string;
  inferenceProtection: boolean;
  approverGroups: readonly string[];
  grants: readonly PolicyGrant[];
  rules: readonly PolicyRule[];
}

/** Compiles the validated `policy:` section of the config. */
export function compilePolicy(file: PolicyConfigFile): Policy {
  return {
    version: createHash('sha256').update(JSON.stringify(file)).digest('hex').slice(0, 16),
    inferenceProtection: file.inference_protection,
    approverGroups: [...file.approver_groups],
    grants: file.grants.map((grant) => ({
      groups: new Set(grant.groups),
      targets: new Set(grant.targets),
      access: grant.access,
    })),
    rules: file.rules.map((rule) => {
      const match: CompiledMatch = {};
      const m = rule.match;
      if (m.groups) match.groups = new Set(m.groups);
      if (m.targets) match.targets = new Set(m.targets);
      if (m.kinds) match.kinds = new Set(m.kinds);
      if (m.ddl_objects) match.ddlObjects = new Set(m.ddl_objects);
      if (m.ddl_actions) match.ddlActions = new Set(m.ddl_actions);
      if (m.tables) match.tables = m.tables.map(nameSpec);
      if (m.functions) match.functions = m.functions.map(nameSpec);
      if (m.where) match.where = m.where;
      if (m.writes !== undefined) match.writes = m.writes;
      return {
        id: rule.id,
        action: rule.action,
        reason: rule.reason,
        hint: rule.hint,
        columns: (rule.columns ?? []).map((column) => column.toLowerCase()),
        style: rule.style ?? 'partial',
        allowInference: new Set(rule.allow_inference ?? []),
        match,
      };
    }),
  };
}

/** Validates and compiles a `policy:` section given as a plain value (parsed YAML). Throws the zod error. */
export function parsePolicy(value: unknown): Policy {
  return compilePolicy(policySchema.parse(value));
}

function nameSpec(text: string): NameSpec {
  const lower = text.toLowerCase();
  const dot = lower.lastIndexOf('.');
  return dot < 0 ? { schema: null, name: lower } : { schema: lower.slice(0, dot), name: lower.slice(dot + 1) };
}

// ---------------------------------------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------------------------------------

export interface EvaluationInput {
  identity: Pick<Identity, 'subject' | 'groups' | 'kind'>;
  /** The target name (the startup `database`). */
  target: string;
  /** The session's search_path before this message, unquoted (`['$user', 'public']`). */
  searchPath: readonly string[];
  classification: Classification;
  /** What RESET ALL / DISCARD ALL / RESET search_path return to. Default: PostgreSQL's `"$user", public`. */
  defaultSearchPath?: readonly string[];
  /** What the policy knows of the target's catalog (target-catalog.ts): views, renamed and missing masked columns. */
  catalog?: PolicyCatalog;
}

export interface Decision {
  action: PolicyAction;
  /** The rule that decided: a policy rule id, `access:<level>`, `access:none`, or `builtin:<check>`. */
  ruleId: string;
  /** For the client's ErrorResponse: `dbgate: <what and why>`. */
  message: string;
  /** `rule: <ruleId>` (ErrorResponse DETAIL). */
  detail: string;
  /** The next step (ErrorResponse HINT). */
  hint: string;
  /** For mask decisions: `schema.table.column` of every column to mask. Empty otherwise. */
  maskColumns: string[];
  /** Which statement of the message decided; -1 for an empty message. */
  statementIndex: number;
  /** Session changes the message makes if it runs (the caller tracks search_path from these). */
  sessionEffects: SessionEffect[];
  /** The search_path after the message, if it runs (equal to the input when nothing changed it). */
  searchPath: string[];
  /** Each statement's own action and rule, in order (for the audit record). */
  statements: Array<{ action: PolicyAction; ruleId: string }>;
  /**
   * For mask decisions: result columns computed from masked columns (lineage of the select list), which PostgreSQL
   * reports without a table; null when there are none. See `DerivedOutputs`.
   */
  derivedOutputs: DerivedOutputs | null;
}

/**
 * Which result columns carry values computed from masked columns: `length(email)`, `reverse(ssn)`, an email through a
 * UNION or a subquery's expression. RowDescription names no table for them, so the catalog cannot mask them; the
 * result masker masks them whole (a detector would not recognise a reversed SSN). Entries follow the select list;
 * a `star` entry stands for an unknown number of columns, so positions after it count from the end of the row, and
 * the columns a star covers are masked when it is.
 */
export interface DerivedOutputs {
  /** `computed`: the value is transformed (masked whole); otherwise it is the masked column's own value. */
  columns: Array<{ masked: boolean; star: boolean; computed: boolean }>;
  /** The strictest style among the rules that mask the columns involved (null > redact > hash > partial). */
  style: MaskStyle;
}

export type MaskStyle = PolicyRule['style'];

const SEVERITY: Readonly<Record<PolicyAction, number>> = { allow: 0, mask: 1, hold: 2, deny: 3 };
const ACCESS_RANK: Readonly<Record<AccessLevel, number>> = { read: 0, write: 1, admin: 2 };
const POSTGRES_DEFAULT_SEARCH_PATH = ['$user', 'public'];

/** One candidate outcome for a statement; the most severe wins, then the lowest priority number. */
interface Verdict {
  action: PolicyAction;
  ruleId: string;
  message: string;
  hint: string;
  /** 0 built-in checks, 1 no access, 2 policy rules, 3 access level: the most fundamental reason is reported. */
  priority: number;
}

/** Decides a whole message. Pure: same inputs, same decision (the decision cache relies on it). */
export function evaluate(policy: Policy, input: EvaluationInput): Decision {
  const searchPath = [...input.searchPath];
  const defaultSearchPath = [...(input.defaultSearchPath ?? POSTGRES_DEFAULT_SEARCH_PATH)];
  const { classification } = input;
  if (classification.parseError !== null) {
    return decision(
      {
        action: 'deny',
        ruleId: 'builtin:parse-error',
        message: `dbgate: the statement does not parse: ${classification.parseError}`,
        hint: 'fix the SQL and retry; dbgate reads statements with PostgreSQL\'s own grammar, so the server would ' +
          'reject it too',
        priority: 0,
      },
      { statementIndex: 0, searchPath, effects: [], statements: [{ action: 'deny', ruleId: 'builtin:parse-error' }] },
    );
  }

  const context = new EvaluationContext(policy, input);
  const effects: SessionEffect[] = [];
  const perStatement: Array<{ verdict: Verdict; maskColumns: string[]; derived: DerivedOutputs | null }> = [];
  for (const statement of classification.statements) {
    perStatement.push(context.judge(statement, searchPath));
    for (const effect of statement.sessionEffects) {
      effects.push(effect);
      applySearchPath(effect, searchPath, defaultSearchPath);
    }
  }
  if (perStatement.length === 0) {
    return decision(
      { action: 'allow', ruleId: 'builtin:empty', message: 'dbgate: empty statement', hint: '', priority: 0 },
      { statementIndex: -1, searchPath, effects, statements: [] },
    );
  }

  let chosen = 0;
  perStatement.forEach((judged, index) => {
    if (SEVERITY[judged.verdict.action] > SEVERITY[perStatement[chosen]!.verdict.action]) chosen = index;
  });
  const winner = perStatement[chosen]!.verdict;
  const maskColumns =
    winner.action === 'mask' ? [...new Set(perStatement.flatMap((judged) => judged.maskColumns))].sort() : [];
  return decision(winner, {
    statementIndex: chosen,
    searchPath,
    effects,
    statements: perStatement.map(({ verdict }) => ({ action: verdict.action, ruleId: verdict.ruleId })),
    maskColumns,
    derivedOutputs: winner.action === 'mask' ? combineDerived(perStatement.map((judged) => judged.derived)) : null,
  });
}

/**
 * The derived outputs of a message: one statement's as they are; when several statements of one Query return
 * computed masked values, their results cannot be told apart here, so every unattributed column of every result is
 * masked (one masked star).
 */
function combineDerived(all: ReadonlyArray<DerivedOutputs | null>): DerivedOutputs | null {
  const present = all.filter((derived): derived is DerivedOutputs => derived !== null);
  if (present.length <= 1) return present[0] ?? null;
  return { columns: [{ masked: true, star: true, computed: true }], style: strictestStyle(present.map((derived) => derived.style)) };
}


/**
 * The refusal of a cursor whose rows FETCH could not mask (here for masked table columns; the proxy for masked view
 * columns, which only the target's catalog knows).
 */
export const MASKED_CURSOR = {
  ruleId: 'builtin:masked-cursor',
  message: 'dbgate: a cursor over values computed from columns masked for you (or passed through a set operation or ' +
    'subquery) is not allowed, because the rows FETCH returns could not be masked',
  hint: 'run the SELECT itself (its computed columns are masked), or select the masked columns as they are',
} as const;

/** The statement's result columns computed from columns that `maskRules` mask; null when none is. */
function derivedOutputs(statement: StatementInfo, maskRules: readonly PolicyRule[], searchPath: readonly string[]):
  DerivedOutputs | null {
  if (statement.outputs === null || maskRules.length === 0) return null;
  const styles: MaskStyle[] = [];
  const columns = statement.outputs.columns.map((output) => {
    let masked = false;
    for (const source of output.sources) {
      for (const rule of maskRules) {
        if (maskedColumnUsed(rule, source, searchPath) === undefined) continue;
        masked = true;
        styles.push(rule.style);
      }
    }
    return { masked, star: output.star, computed: output.computed };
  });
  return styles.length === 0 ? null : { columns, style: strictestStyle(styles) };
}

function decision(
  verdict: Verdict,
  extra: {
    statementIndex: number;
    searchPath: string[];
    effects: SessionEffect[];
    statements: Decision['statements'];
    maskColumns?: string[];
    derivedOutputs?: DerivedOutputs | null;
  },
): Decision {
  return {
    action: verdict.action,
    ruleId: verdict.ruleId,
    message: verdict.message,
    detail: `rule: ${verdict.ruleId}`,
    hint: verdict.hint,
    maskColumns: extra.maskColumns ?? [],
    statementIndex: extra.statementIndex,
    sessionEffects: extra.effects,
    searchPath: extra.searchPath,
    statements: extra.statements,
    derivedOutputs: extra.derivedOutputs ?? null,
  };
}

/** Tracks `SET search_path` (and resets) within a message, so later statements resolve names like the server. */
function applySearchPath(effect: SessionEffect, searchPath: string[], defaultSearchPath: readonly string[]): void {
  const resetsSearchPath =
    effect.kind === 'reset_all' ||
    (effect.kind === 'discard' && effect.name === 'all') ||
    (effect.kind === 'search_path' && effect.via !== 'set_config' && effect.searchPath === undefined);
  if (resetsSearchPath) searchPath.splice(0, searchPath.length, ...defaultSearchPath);
  else if (effect.kind === 'search_path' && effect.searchPath !== undefined) {
    searchPath.splice(0, searchPath.length, ...effect.searchPath);
  }
}

/** The per-message state of an evaluation: the identity's access and the rules that apply to it. */
class EvaluationContext {
  private readonly access: AccessLevel | undefined;
  private readonly rules: readonly PolicyRule[];
  private readonly groups: readonly string[];

  constructor(
    private readonly policy: Policy,
    private readonly input: EvaluationInput,
  ) {
    this.groups = input.identity.groups;
    this.access = accessLevel(policy, this.groups, input.target);
    this.rules = policy.rules.filter((rule) => this.appliesToIdentity(rule));
  }

  judge(named: StatementInfo, searchPath: readonly string[]):
    { verdict: Verdict; maskColumns: string[]; derived: DerivedOutputs | null } {
    const statement = withCatalog(named, this.input.catalog ?? NO_CATALOG, resolvableSchemas(searchPath));
    // FETCH returns rows of a query it does not name: every mask rule of the identity applies to them (the proxy masks
    // them by the table columns they come from).
    const matched = this.rules.filter((rule) =>
      statementMatches(rule, statement, searchPath) || (statement.fetchesCursor === true && rule.action === 'mask'));
    const strongest = strongestRule(matched);
    const verdicts: Verdict[] = [...this.builtinVerdicts(statement, matched, searchPath)];
    const derived = derivedOutputs(statement, matched.filter((rule) => rule.action === 'mask'), searchPath);
    const unattributedMasked = derived?.columns.some((column, index) => column.masked && !statement.outputs!.columns[index]!.attributed);
    if (unattributedMasked === true && statement.outputs?.viaCursor === true) {
      // FETCH shows nothing of the cursor's query: what it returns could not be told apart from clean values.
      verdicts.push({ action: 'deny', ...MASKED_CURSOR, priority: 0 });
    }

    const access = this.accessVerdict(statement, strongest);
    if (access) verdicts.push(access);
    if (strongest) verdicts.push(this.ruleVerdict(strongest, statement));

    let verdict = verdicts[0];
    for (const candidate of verdicts) {
      if (
        verdict === undefined ||
        SEVERITY[candidate.action] > SEVERITY[verdict.action] ||
        (SEVERITY[candidate.action] === SEVERITY[verdict.action] && candidate.priority < verdict.priority)
      ) {
        verdict = candidate;
      }
    }
    verdict ??= {
      action: 'allow',
      ruleId: `access:${this.access ?? 'none'}`,
      message: 'dbgate: allowed',
      hint: '',
      priority: 3,
    };
    const maskColumns =
      verdict.action === 'mask'
        ? matched.filter((rule) => rule.action === 'mask').flatMap((rule) => qualifyColumns(rule.columns, statement, searchPath))
        : [];
    return { verdict, maskColumns, derived: verdict.action === 'mask' ? derived : null };
  }

  private appliesToIdentity(rule: PolicyRule): boolean {
    const { groups, targets } = rule.match;
    if (groups && !groups.has('*') && !this.groups.some((group) => groups.has(group))) return false;
    if (targets && !targets.has('*') && !targets.has(this.input.target)) return false;
    return true;
  }

  // --- built-in checks --------------------------------------------------------------------------------------------

  private *builtinVerdicts(statement: StatementInCatalog, matched: readonly PolicyRule[], searchPath: readonly string[]):
    Generator<Verdict> {
    const statistics = matched.some((rule) => rule.action === 'mask')
      ? statement.tables.find((table) => (table.schema === null || table.schema === BUILTIN_SCHEMA) && COLUMN_STATISTICS.has(table.name))
      : undefined;
    if (statistics !== undefined) {
      yield {
        action: 'deny',
        ruleId: 'builtin:masked-statistics',
        message: `dbgate: ${statistics.name} is not readable while results are masked for you: its most common values and histograms are samples of every column, masked ones included`,
        hint: 'ask the gateway operator for the statistics you need, or for unmasked access',
        priority: 0,
      };
    }
    for (const effect of statement.sessionEffects) {
      const escape = sessionEscape(effect);
      if (escape) {
        yield {
          action: 'deny',
          ruleId: 'builtin:session-escape',
          message: `dbgate: ${escape.what} is not allowed: ${escape.why}`,
          hint: escape.hint,
          priority: 0,
        };
      }
    }

    // Rules that name the statement's own kind (kinds: [do], [call], [copy]…) may hold what cannot be analysed.
    const namingKind = matched.filter((rule) => rule.match.kinds?.has(statement.kind) === true);
    for (const reason of statement.unanalyzableReasons) {
      if (reason.cause === 'unknown_function' || reason.cause === 'dynamic_sql_function') continue;
      const verdict = overridden(namingKind, false, {
        action: 'deny',
        ruleId: 'builtin:unanalyzable',
        message: `dbgate: ${reason.message}; statements dbgate cannot analyse are denied`,
        hint: unanalyzableHint(reason),
        priority: 0,
      }, reason.message);
      if (verdict) yield verdict;
    }

    if (statement.kind === 'do') {
      const verdict = overridden(namingKind, true, {
        action: 'deny',
        ruleId: 'builtin:do-block',
        message: 'dbgate: DO blocks are denied unless a policy rule names kind do',
        hint: 'run the statements of the block one by one, so each is checked on its own',
        priority: 0,
      }, 'the DO block');
      if (verdict) yield verdict;
    }

    for (const dangerous of statement.dangerousFunctions) {
      const verdict = overridden(this.namingFunction(matched, dangerous.name, searchPath), true, {
        action: 'deny',
        ruleId: 'builtin:dangerous-function',
        message: `dbgate: ${dangerous.name}() is not allowed: ${dangerous.why}`,
        hint: `if your group really needs ${dangerous.name}(), ask the policy owner for a rule that allows it`,
        priority: 0,
      }, `${dangerous.name}() (${dangerous.why})`);
      if (verdict) yield verdict;
    }

    for (const reason of statement.unanalyzableReasons) {
      if (reason.cause !== 'dynamic_sql_function' || reason.function === undefined) continue;
      const verdict = overridden(this.namingFunction(matched, reason.function, searchPath), true, {
        action: 'deny',
        ruleId: 'builtin:dynamic-sql',
        message: `dbgate: ${reason.message}, which dbgate cannot check, so it is denied`,
        hint: 'query the tables directly, so dbgate can check (and mask) what you read',
        priority: 0,
      }, reason.message);
      if (verdict) yield verdict;
    }

    for (const fn of unknownFunctions(statement, searchPath)) {
      const explicit = this.namingFunction(matched, fn, searchPath);
      // CALL names a procedure; a rule about kind call speaks for it.
      if (statement.kind === 'call') explicit.push(...namingKind);
      const verdict = overridden(explicit, true, {
        action: 'deny',
        ruleId: 'builtin:unknown-function',
        message: `dbgate: ${fn}() is not a known built-in; a user-defined function can write or run SQL dbgate ` +
          'cannot see, so it needs a policy rule that vouches for it',
        hint: `if ${fn}() is safe, the policy owner can vouch for it: match: { functions: [${fn}] }, action: allow`,
        priority: 0,
      }, `the call of ${fn}()`);
      if (verdict) yield verdict;
    }

    const inference = this.inferenceVerdict(statement, matched, searchPath);
    if (inference) yield inference;
    const missing = this.missingColumnVerdict(statement, matched, searchPath);
    if (missing) yield missing;
  }

  /**
   * Fail closed: a statement touching a table whose masked column the catalog cannot find (renamed while no gateway
   * was watching, or dropped), for an identity that column is masked for. Its values could be under any name now.
   */
  private missingColumnVerdict(statement: StatementInCatalog, matched: readonly PolicyRule[], searchPath: readonly string[]):
    Verdict | undefined {
    const missing = this.input.catalog?.missingColumns;
    if (missing === undefined || missing.size === 0) return undefined;
    for (const rule of matched) {
      if (rule.action !== 'mask') continue;
      for (const column of rule.columns) {
        const name = catalogColumnName(column);
        if (!missing.has(name)) continue;
        const [schema, table] = name.split('.') as [string, string, string];
        const touched = statement.tables.some((used) => nameMatches({ schema, name: table }, tableSpec(used), searchPath, false));
        if (!touched) continue;
        return {
          action: 'deny',
          ruleId: 'builtin:masked-column-missing',
          message: `dbgate: ${schema}.${table} cannot be read with masking: the policy masks ${name} for you (rule ` +
            `${rule.id}), but the database has no such column any more (renamed or dropped while no gateway saw it), ` +
            'so dbgate cannot tell which values to mask',
          hint: 'tell the gateway operator: the masking rule must name the column as the database has it now',
          priority: 0,
        };
      }
    }
    return undefined;
  }

  /**
   * Inference protection: the first use of a masked column in a clause that reveals its values (WHERE, JOIN, ORDER BY,
   * GROUP BY, DISTINCT, HAVING, window, set operations), for the mask rules that match this statement.
   */
  private inferenceVerdict(statement: StatementInCatalog, matched: readonly PolicyRule[], searchPath: readonly string[]):
    Verdict | undefined {
    if (!this.policy.inferenceProtection) return undefined;
    const maskRules = matched.filter((rule) => rule.action === 'mask');
    if (maskRules.length === 0) return undefined;
    // The clause that says most first: `error` (a computation that can fail) is also found inside the others.
    for (const used of byClauseWording(statement.inferenceColumns)) {
      for (const rule of maskRules) {
        if (rule.allowInference.has(used.clause)) continue;
        const masked = maskedColumnUsed(rule, used, searchPath);
        if (masked === undefined) continue;
        const table = used.schema === null ? used.table : `${used.schema}.${used.table}`;
        const column = used.via ?? `${table}.${masked}`;
        return {
          action: 'deny',
          ruleId: 'builtin:inference',
          message: `dbgate: ${INFERENCE_WORDING[used.clause](column)} is not allowed because its values are masked ` +
            `for you (rule ${rule.id})${used.column === '*' ? `; the statement uses ${table} as a whole there` : ''}`,
          hint: `select the masked column without ${used.clause === 'error' ? 'computing on it (computed values come back masked anyway)' : 'conditions on it'}, ` +
            `or ask for unmasked access (the policy owner can permit this with allow_inference: [${used.clause}] on rule ${rule.id})`,
          priority: 0,
        };
      }
    }
    // Fail closed: behind a view dbgate cannot analyse, any column may carry masked values.
    for (const view of statement.opaqueViews) {
      for (const used of byClauseWording(view.inferenceColumns)) {
        const rule = maskRules.find((candidate) => !candidate.allowInference.has(used.clause));
        if (rule === undefined) continue;
        const column = `${used.schema === null ? used.table : `${used.schema}.${used.table}`}.${used.column}`;
        return {
          action: 'deny',
          ruleId: 'builtin:inference',
          message: `dbgate: ${INFERENCE_WORDING[used.clause](column)} is not allowed: dbgate cannot analyse the ` +
            `definition of view ${view.view}, so it cannot tell whether that column carries values masked for you ` +
            `(rule ${rule.id})`,
          hint: 'select the column without conditions on it, or query the tables behind the view directly',
          priority: 0,
        };
      }
    }
    return undefined;
  }

  /** Matched rules that name `fn` in match.functions. */
  private namingFunction(matched: readonly PolicyRule[], fn: string, searchPath: readonly string[]): PolicyRule[] {
    const call = nameSpec(fn);
    return matched.filter((rule) =>
      rule.match.functions?.some((spec) => nameMatches(spec, call, searchPath, isPermission(rule))) === true,
    );
  }

  // --- access level -----------------------------------------------------------------------------------------------

  private accessVerdict(statement: StatementInfo, strongest: PolicyRule | undefined): Verdict | undefined {
    const target = this.input.target;
    if (this.access === undefined) {
      return {
        action: 'deny',
        ruleId: 'access:none',
        message: `dbgate: you have no access to target ${target}`,
        hint: this.groups.length > 0
          ? `ask an administrator to grant one of your groups (${this.groups.join(', ')}) access to ${target}`
          : `your identity carries no groups; ask an administrator to add you to a group with access to ${target}`,
        priority: 1,
      };
    }
    const needed = requiredAccess(statement);
    if (ACCESS_RANK[this.access] >= ACCESS_RANK[needed]) return undefined;
    // A rule that holds the statement lets its author ask for an approval instead of being turned away.
    if (strongest?.action === 'hold') return undefined;
    const what = describeStatement(statement);
    if (needed === 'write') {
      return {
        action: 'deny',
        ruleId: `access:${this.access}`,
        message: `dbgate: ${what} writes, and your access to ${target} is read-only`,
        hint: `run writes as an identity with write access to ${target}, or ask for write access`,
        priority: 3,
      };
    }
    return {
      action: 'deny',
      ruleId: `access:${this.access}`,
      message: `dbgate: ${what} needs admin access to ${target}; your access is ${this.access}`,
      hint: `DDL, GRANT/REVOKE and role changes need admin access to ${target}; ask an administrator or a DBA`,
      priority: 3,
    };
  }

  // --- rules ------------------------------------------------------------------------------------------------------

  private ruleVerdict(rule: PolicyRule, statement: StatementInfo): Verdict {
    const what = describeStatement(statement);
    const because = rule.reason ?? `policy rule ${rule.id}`;
    switch (rule.action) {
      case 'deny':
        return {
          action: 'deny',
          ruleId: rule.id,
          message: `dbgate: ${what} denied: ${because}`,
          hint: rule.hint ?? 'the policy does not allow this statement for your groups; ask the policy owner if you ' +
            'need it',
          priority: 2,
        };
      case 'hold':
        return {
          action: 'hold',
          ruleId: rule.id,
          message: `dbgate: ${what} is held for approval: ${because}`,
          hint: rule.hint ?? this.holdHint(),
          priority: 2,
        };
      case 'mask':
        return { action: 'mask', ruleId: rule.id, message: 'dbgate: allowed with masked columns', hint: '', priority: 2 };
      case 'allow':
        return { action: 'allow', ruleId: rule.id, message: 'dbgate: allowed', hint: '', priority: 2 };
    }
  }

  private holdHint(): string {
    const approvers = this.policy.approverGroups;
    const who = approvers.length > 0 ? `an approver (group ${approvers.join(' or ')})` : 'an approver';
    return `ask ${who} to approve it; approvals arrive in a later dbgate release, so for now the statement did not run`;
  }
}

/**
 * Resolves a built-in check against the rules that speak to it explicitly: none → the built-in verdict; the most
 * restrictive of them deny or hold → that rule decides; allow/mask → the check is lifted when `liftable`.
 */
function overridden(
  explicit: readonly PolicyRule[],
  liftable: boolean,
  builtin: Verdict,
  subject: string,
): Verdict | undefined {
  const strongest = strongestRule(explicit);
  if (strongest === undefined) return builtin;
  if (strongest.action === 'deny') return { ...builtin, ruleId: strongest.id, hint: strongest.hint ?? builtin.hint };
  if (strongest.action === 'hold') {
    return {
      action: 'hold',
      ruleId: strongest.id,
      message: `dbgate: ${subject} is held for approval: ${strongest.reason ?? `policy rule ${strongest.id}`}`,
      hint: strongest.hint ?? builtin.hint,
      priority: 0,
    };
  }
  return liftable ? undefined : builtin;
}

function strongestRule(rules: readonly PolicyRule[]): PolicyRule | undefined {
  let strongest: PolicyRule | undefined;
  for (const rule of rules) {
    if (strongest === undefined || SEVERITY[rule.action] > SEVERITY[strongest.action]) strongest = rule;
  }
  return strongest;
}

/** The highest access level any grant gives one of `groups` on `target` ('*' matches every group or target). */
export function accessLevel(policy: Policy, groups: readonly string[], target: string): AccessLevel | undefined {
  let level: AccessLevel | undefined;
  for (const grant of policy.grants) {
    if (!grant.targets.has('*') && !grant.targets.has(target)) continue;
    if (!grant.groups.has('*') && !groups.some((group) => grant.groups.has(group))) continue;
    if (level === undefined || ACCESS_RANK[grant.access] > ACCESS_RANK[level]) level = grant.access;
  }
  return level;
}

/** The access level a statement needs: admin for DDL, grants and roles; write for anything that writes. */
export function requiredAccess(statement: StatementInfo): AccessLevel {
  if (statement.kinds.some((kind) => kind === 'ddl' || kind === 'grant' || kind === 'role')) return 'admin';
  return statement.writes ? 'write' : 'read';
}

// ---------------------------------------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------------------------------------

/** Allow rules match names strictly; deny/hold/mask rules broadly (see the module comment). */
function isPermission(rule: PolicyRule): boolean {
  return rule.action === 'allow';
}

function statementMatches(rule: PolicyRule, statement: StatementInCatalog, searchPath: readonly string[]): boolean {
  const m = rule.match;
  if (m.kinds && !statement.kinds.some((kind) => m.kinds!.has(kind))) return false;
  if (m.ddlObjects && (statement.ddlObject === undefined || !m.ddlObjects.has(statement.ddlObject))) return false;
  if (m.ddlActions && (statement.ddlAction === undefined || !m.ddlActions.has(statement.ddlAction))) return false;
  if (m.where === 'absent' && statement.hasWhere !== false) return false;
  if (m.where === 'present' && statement.hasWhere !== true) return false;
  if (m.writes !== undefined && statement.writes !== m.writes) return false;
  if (m.tables) {
    // "writes: true" with tables: one of those tables is written.
    const written = (access: TableRef['access']): boolean => m.writes !== true || access === 'write';
    const strict = isPermission(rule);
    // A permission names the relation the statement names; a restriction also what stands behind a view.
    const candidates = statement.tables.filter((table) => written(table.access) && !(strict && table.view !== undefined));
    const hit = candidates.some((table) => m.tables!.some((spec) => nameMatches(spec, tableSpec(table), searchPath, strict)));
    // Fail closed: a view dbgate cannot analyse may read any table a restriction names.
    const opaque = !strict && statement.opaqueViews.some((view) => written(view.access));
    if (!hit && !opaque) return false;
  }
  if (m.functions) {
    const strict = isPermission(rule);
    const hit = statement.functions.some((fn) =>
      m.functions!.some((spec) => nameMatches(spec, nameSpec(fn), searchPath, strict)),
    );
    if (!hit) return false;
  }
  return true;
}

function tableSpec(table: TableRef): NameSpec {
  return { schema: table.schema?.toLowerCase() ?? null, name: table.name.toLowerCase() };
}

/**
 * Whether a rule's `spec` names the object the statement wrote as `used` (schema null = unqualified, resolved through
 * the search_path). `strict`: only the first schema of the search_path counts (permissions); otherwise any schema on it
 * or pg_catalog (restrictions).
 */
function nameMatches(spec: NameSpec, used: NameSpec, searchPath: readonly string[], strict: boolean): boolean {
  if (spec.name !== used.name) return false;
  if (spec.schema === null) return true;
  if (used.schema !== null) return spec.schema === used.schema;
  // Unqualified: PostgreSQL looks in pg_catalog first unless the search_path lists it somewhere else.
  if (spec.schema === BUILTIN_SCHEMA) return strict ? catalogSearchedFirst(searchPath) : true;
  const schemas = resolvableSchemas(searchPath);
  return strict ? schemas.find((schema) => schema !== BUILTIN_SCHEMA) === spec.schema : schemas.includes(spec.schema);
}

/** The schemas an unqualified name can resolve to, lower-case, without `$user` (the service account's own schema). */
function resolvableSchemas(searchPath: readonly string[]): string[] {
  return searchPath.filter((schema) => schema !== '$user' && schema !== 'pg_temp').map((schema) => schema.toLowerCase());
}

/**
 * The statement's functions dbgate cannot vouch for: what the classifier found unknown, plus unqualified built-ins when
 * the search_path lists another schema before pg_catalog (a function there would be called instead).
 */
function unknownFunctions(statement: StatementInfo, searchPath: readonly string[]): string[] {
  const unknown = new Set(statement.unknownFunctions);
  if (!catalogSearchedFirst(searchPath)) {
    for (const fn of statement.functions) {
      if (fn.includes('.')) continue;
      const { risk } = assessFunction({ schema: null, name: fn });
      if (risk === 'safe' || risk === 'writes' || risk === 'session') unknown.add(fn);
    }
  }
  return [...unknown];
}

/** `customers.email` → `<schema>.customers.email` for every schema the statement's `customers` can be in. */
function qualifyColumns(columns: readonly string[], statement: StatementInfo, searchPath: readonly string[]): string[] {
  const qualified: string[] = [];
  for (const column of columns) {
    const parts = column.split('.');
    if (parts.length === 3) {
      qualified.push(column);
      continue;
    }
    const [table, name] = parts as [string, string];
    const schemas = new Set(resolvableSchemas(searchPath));
    for (const touched of statement.tables) {
      if (touched.schema !== null && touched.name.toLowerCase() === table) schemas.add(touched.schema.toLowerCase());
    }
    for (const schema of schemas) qualified.push(`${schema}.${table}.${name}`);
  }
  return qualified;
}

/**
 * The column of `rule` (its bare name) that the inference column `used` is, or undefined. `*` (a whole-row use) is
 * every masked column of its table: the first one is named.
 */
function maskedColumnUsed(rule: PolicyRule, used: TableColumn, searchPath: readonly string[]): string | undefined {
  const column = used.column.toLowerCase();
  const table: NameSpec = { schema: used.schema?.toLowerCase() ?? null, name: used.table.toLowerCase() };
  for (const spec of rule.columns) {
    const parts = spec.split('.');
    const name = parts[parts.length - 1]!;
    if (column !== '*' && column !== name) continue;
    const specTable: NameSpec = { schema: parts.length === 3 ? parts[0]! : null, name: parts[parts.length - 2]! };
    if (nameMatches(specTable, table, searchPath, false)) return name;
  }
  return undefined;
}

/** Inference columns with those of clause `error` last (see inferenceVerdict). */
function byClauseWording(columns: readonly InferenceColumn[]): readonly InferenceColumn[] {
  if (!columns.some((column) => column.clause === 'error')) return columns;
  return [...columns.filter((column) => column.clause !== 'error'), ...columns.filter((column) => column.clause === 'error')];
}

const INFERENCE_WORDING: Readonly<Record<InferenceClause, (column: string) => string>> = {
  where: (column) => `filtering on ${column} (WHERE)`,
  join: (column) => `joining on ${column}`,
  order_by: (column) => `sorting by ${column} (ORDER BY)`,
  group_by: (column) => `grouping by ${column} (GROUP BY)`,
  distinct: (column) => `deduplicating on ${column} (DISTINCT)`,
  having: (column) => `filtering groups on ${column} (HAVING)`,
  window: (column) => `partitioning or ordering a window by ${column}`,
  set_operation: (column) => `comparing ${column} across UNION/INTERSECT/EXCEPT`,
  write: (column) => `writing values of ${column} (they could be read in clear where they are written)`,
  limit: (column) => `limiting the number of rows by ${column} (LIMIT/OFFSET)`,
  side_effect: (column) => `passing ${column} to a lock, a delay, a notification, a sequence, a setting or a set-returning function (its effect or row count shows the value)`,
  error: (column) => `computing on ${column} with an operation that can fail or that decides what else runs (arithmetic, a cast, a pattern, a function outside the ones that never fail, a CASE or AND/OR deciding on it: whether the statement fails, or how long it takes, shows the value)`,
};

// ---------------------------------------------------------------------------------------------------------------------
// Session escapes
// ---------------------------------------------------------------------------------------------------------------------

/** Why a session effect is not allowed, or undefined when it is. Use it for startup parameters too. */
export function sessionEscape(effect: SessionEffect): { what: string; why: string; hint: string } | undefined {
  const viaFunction = effect.via === 'set_config';
  const spelled = (setting: string, statement: string): string =>
    viaFunction ? `set_config('${setting}', …)` : effect.via === 'startup' ? `the startup parameter ${setting}` : statement;
  const identityHint = 'dbgate runs every statement as the gateway\'s service role and audits it under your identity; ' +
    'ask for the access you need in the gateway policy instead';
  switch (effect.kind) {
    case 'set_role':
      return {
        what: spelled('role', effect.via === 'reset' ? 'RESET ROLE' : 'SET ROLE'),
        why: 'it changes the database role that every later check and the audit trail assume',
        hint: identityHint,
      };
    case 'session_authorization':
      return {
        what: spelled('session_authorization', effect.via === 'reset' ? 'RESET SESSION AUTHORIZATION' : 'SET SESSION AUTHORIZATION'),
        why: 'it changes the database user that every later check and the audit trail assume',
        hint: identityHint,
      };
    case 'search_path':
      // `SELECT set_config('search_path', '…', false)` alone is a SET in function form, tracked like one.
      if (!viaFunction || effect.once) return undefined;
      return {
        what: spelled('search_path', 'SET search_path'),
        why: 'table and function names resolve through search_path, and a value set by a function can be computed ' +
          'at run time where dbgate cannot follow it',
        hint: 'use SET search_path TO … (or set_config(\'search_path\', \'…\', false) with constants as a SELECT of its own), which dbgate tracks',
      };
    case 'standard_conforming_strings': {
      if (effect.via === 'reset' || (effect.value !== undefined && isOn(effect.value))) return undefined;
      return {
        what: `${spelled('standard_conforming_strings', 'SET standard_conforming_strings')} = ${effect.value ?? '(computed)'}`,
        why: 'with it off the server reads backslashes in string literals differently from the statement dbgate checked',
        hint: 'keep standard_conforming_strings on (the default); use E\'…\' literals where you need backslash escapes',
      };
    }
    case 'client_encoding': {
      if (effect.via === 'reset' || (effect.value !== undefined && isUtf8(effect.value))) return undefined;
      return {
        what: `${spelled('client_encoding', 'SET client_encoding')} = ${effect.value ?? '(computed)'}`,
        why: 'in encodings other than UTF8 some multibyte characters hide quotes and backslashes, so the server could ' +
          'read a different statement than the one dbgate checked',
        hint: 'use client_encoding UTF8 and convert in your client',
      };
    }
    case 'set_config':
    case 'reset_all':
    case 'discard':
    case 'other_set':
      return undefined;
  }
}

/**
 * System views that show values of table columns: the planner's statistics (most common values, histogram bounds).
 * pg_statistic and pg_statistic_ext_data themselves are readable by superusers only.
 */
const COLUMN_STATISTICS: ReadonlySet<string> = new Set(['pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs', 'pg_statistic', 'pg_statistic_ext_data']);

/** Whether unqualified functions and operators resolve in pg_catalog first: it is first, or not listed (implicitly first). */
function catalogSearchedFirst(searchPath: readonly string[]): boolean {
  return searchPath.indexOf(BUILTIN_SCHEMA) <= 0;
}

function isOn(value: string): boolean {
  return ['on', 'true', 'yes', '1'].includes(value.trim().toLowerCase());
}

function isUtf8(value: string): boolean {
  const bare = value.toLowerCase().replace(/[^a-z0-9]/g, '');
  return bare === 'utf8' || bare === 'unicode';
}

// ---------------------------------------------------------------------------------------------------------------------
// Wording
// ---------------------------------------------------------------------------------------------------------------------

/** "DELETE on public.orders", "DROP TABLE on payments", "SELECT", "DO block". */
export function describeStatement(statement: StatementInfo): string {
  const written = statement.tables.filter((table) => table.access === 'write' && table.view === undefined).map(tableLabel);
  const on = written.length > 0 ? ` on ${written.join(', ')}` : '';
  if (statement.ddlAction !== undefined && statement.ddlObject !== undefined) {
    return `${statement.ddlAction.toUpperCase()} ${statement.ddlObject.replace(/_/g, ' ').toUpperCase()}${on}`;
  }
  const nestedWrite = statement.kinds.find((kind) => ['insert', 'update', 'delete', 'merge'].includes(kind) && kind !== statement.kind);
  const label = KIND_LABELS[statement.kind];
  return nestedWrite ? `${label} with ${nestedWrite.toUpperCase()}${on}` : `${label}${on}`;
}

const KIND_LABELS: Readonly<Record<StatementKind, string>> = {
  select: 'SELECT',
  insert: 'INSERT',
  update: 'UPDATE',
  delete: 'DELETE',
  merge: 'MERGE',
  ddl: 'DDL',
  truncate: 'TRUNCATE',
  copy: 'COPY',
  grant: 'GRANT/REVOKE',
  role: 'role change',
  set: 'SET',
  session: 'DISCARD',
  transaction: 'transaction control',
  call: 'CALL',
  do: 'DO block',
  explain: 'EXPLAIN',
  prepare: 'PREPARE',
  execute: 'EXECUTE',
  listen: 'LISTEN/NOTIFY',
  utility: 'utility statement',
  unknown: 'statement',
};

function tableLabel(table: TableRef): string {
  return table.schema === null ? table.name : `${table.schema}.${table.name}`;
}

function unanalyzableHint(reason: UnanalyzableReason): string {
  switch (reason.cause) {
    case 'do_block':
    case 'dynamic_sql':
      return 'run the statements one by one so dbgate can check each; or ask the policy owner for a rule that holds ' +
        'kind do, so an approver can review the block';
    case 'copy_program':
    case 'copy_server_file':
      return 'use COPY … TO STDOUT / FROM STDIN (psql: \\copy), which moves the data through your own connection';
    case 'prepared_statement':
      return 'send the statement itself, or use your driver\'s prepared statements (the extended query protocol), ' +
        'which dbgate checks at Parse';
    case 'computed_setting':
      return 'name the setting as a literal';
    case 'shadowing_type':
      return 'give the type another name';
    case 'load_library':
      return 'server libraries are configured by the database administrator, not loaded per session';
    case 'dynamic_sql_function':
      return 'query the tables directly, so dbgate can check (and mask) what you read';
    case 'unknown_function':
      return 'ask the policy owner to vouch for the function with a rule naming it';
    case 'unknown_statement':
    case 'analysis_failed':
      return 'this statement is not supported through dbgate; tell the gateway operator what you need to run';
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The demo policy (DESIGN.md, "Demo fixture")
// ---------------------------------------------------------------------------------------------------------------------

/**
 * The demo policy as a `policy:` config section: alice (engineering) reads with PII masked; bob (dba) writes and
 * approves; carol (security, the auditor) reads; report-bot (agents) reads with PII masked. DDL and TRUNCATE are held
 * for everyone, UPDATE/DELETE without WHERE are denied, other writes by engineering and every write to payments are
 * held.
 */
export const DEMO_POLICY_YAML = `policy:
  inference_protection: true
  approver_groups: [dba]
  grants:
    - groups: [engineering, agents, security]
      targets: [prod-orders]
      access: read
    - groups: [dba]
      targets: [prod-orders]
      access: write
    # scratch: a playground database next to prod-orders (benchmarks, experiments), no guardrails for dba.
    - groups: [dba]
      targets: [scratch]
      access: admin
  rules:
    - id: deny-unbounded-writes
      match: { targets: [prod-orders], kinds: [update, delete], where: absent }
      action: deny
      reason: UPDATE/DELETE without a WHERE clause would change every row
      hint: add a WHERE clause that selects the rows to change
    - id: hold-schema-changes
      match: { targets: [prod-orders], kinds: [ddl, truncate] }
      action: hold
      reason: DROP, TRUNCATE, ALTER and other schema changes need an approval
    - id: hold-engineering-writes
      match: { targets: [prod-orders], groups: [engineering], writes: true }
      action: hold
      reason: writes by engineering need an approval
    - id: hold-payments-writes
      match: { targets: [prod-orders], tables: [public.payments], writes: true }
      action: hold
      reason: writes to payments need an approval
    - id: mask-pii
      match: { targets: [prod-orders], groups: [engineering, agents] }
      action: mask
      columns:
        - public.customers.email
        - public.customers.phone
        - public.customers.ssn
        - public.payments.card_number
`;

/** The demo policy, compiled. */
export const DEMO_POLICY: Policy = parsePolicy((parseYaml(DEMO_POLICY_YAML) as { policy: unknown }).policy);
