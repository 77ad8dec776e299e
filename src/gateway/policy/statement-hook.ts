/**
 * The one place every statement passes through. The proxy calls `decideStatement` for each Query and Parse (and
 * FunctionCall) before forwarding it, and `recordStatement` when the server has answered. Here the policy decides
 * (classification by PostgreSQL's grammar, cached), the audit trail's health gates everything (fail closed), and
 * every outcome is recorded with its rule.
 */
import type { TargetConfig } from '../config/load.js';
import type { AuditWriter, EncodedParty } from '../audit/audit-writer.js';
import type { Identity } from '../identity/credentials.js';
import type { ErrorFields } from '../wire/backend-messages.js';
import { SqlState } from '../wire/protocol.js';
import type { NameChange, StatementInfo, StatementOutputs } from './classify.js';
import type { CachedDecision, DecisionCache, DecisionScope } from './decision-cache.js';
import type { DerivedOutputs, Policy } from './policy.js';
import type { PolicyCatalog } from './target-catalog.js';

/** Per-connection state that decisions depend on, tracked by the proxy as statements succeed. */
export interface SessionPolicyState {
  /** The session's search_path, unquoted (`['$user', 'public']`). Replaced, never changed in place. */
  searchPath: string[];
  /** What the policy knows of the target's catalog, from its current read (target-catalog.ts); absent until read. */
  catalog?: PolicyCatalog;
}

/** Per-connection decision memo size; a client cycling through more distinct statements uses the shared cache. */
const SESSION_DECISIONS_LIMIT = 256;

/** Everything known about the connection a statement arrives on. */
export interface ConnectionContext {
  connectionId: string;
  identity: Identity;
  target: TargetConfig;
  clientAddress: string;
  /** The `dbgate connect` tunnel the connection came through, when it did (its TUNNEL_ID_PARAMETER). */
  tunnelId: string | undefined;
  session: SessionPolicyState;
}

export type ProtocolStep = 'query' | 'parse' | 'bind' | 'execute' | 'function-call';

export interface StatementEvent {
  step: ProtocolStep;
  /** SQL text; for bind/execute, the text of the prepared statement they refer to. */
  text: string;
}

export interface StatementDecision {
  action: 'allow' | 'mask' | 'deny' | 'hold';
  /** The rule that decided (policy rule id, `access:<level>`, `builtin:<check>`). */
  rule: string;
  /** For deny and hold: the ErrorResponse the client gets instead of running the statement. */
  error?: ErrorFields;
  /** The session's search_path once the statement has run (when it changes it). */
  searchPathAfter?: string[];
  /** DDL ran: cached catalog facts about the target (masked column positions) may be stale. */
  changesSchema: boolean;
  /**
   * Prepared statements and portals it creates or drops by name in SQL (PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD
   * ALL): a name the proxy saw parsed or bound may mean another statement once it has run.
   */
  namesChanged?: readonly NameChange[];
  /** For mask decisions: result columns computed from masked columns (policy.ts DerivedOutputs). */
  derivedOutputs?: DerivedOutputs;
  /**
   * For mask decisions: the lineage of each statement's result columns (null for statements returning none), for
   * what only the target's catalog knows — columns computed from masked view columns (masking/view-lineage.ts).
   */
  outputs?: ReadonlyArray<StatementOutputs | null>;
  /**
   * Relation names whose meaning it changes (CREATE VIEW, a rename…: classify.ts `redefinedNames`). Until that
   * commits, the catalog the gateway reads does not show it (the uncommitted-schema guard of client-session.ts).
   */
  redefinedNames?: readonly string[];
  /** Tables it creates (CREATE TABLE, CREATE TABLE AS, SELECT INTO): plain tables, whatever the catalog says yet. */
  createdTables?: readonly string[];
  /**
   * The relations its statements use as they are now (`namesUsed`: DDL that only defines objects over them left out).
   * The proxy has the target's catalog read again first when one is not in it (it may be a view the policy must see
   * through), and refuses them after an uncommitted change to what they stand for.
   */
  usedRelations?: readonly string[];
  /**
   * The relations its statements use after one of them redefined relation names: the whole message is judged before
   * any of it runs, on a catalog without the change.
   */
  usedAfterRedefinition?: readonly string[];
}

export interface CompletedStatement {
  step: ProtocolStep;
  text: string;
  startedAt: number;
  finishedAt: number;
  /** cancelled: the client went away while it ran (it was cancelled upstream). */
  outcome: 'ok' | 'error' | 'denied' | 'skipped' | 'cancelled';
  sqlState: string | undefined;
  rows: number | undefined;
  decision: StatementDecision | undefined;
  /** Result columns whose values were masked. */
  maskedColumns: readonly string[];
}

export interface StatementHook {
  decideStatement(connection: ConnectionContext, event: StatementEvent): StatementDecision;
  recordStatement(connection: ConnectionContext, statement: CompletedStatement): void;
}

/** A decision that refuses a statement: SQLSTATE 42501, the rule in DETAIL, the next step in HINT. */
export function refusal(rule: string, message: string, hint: string, action: 'deny' | 'hold' = 'deny'): StatementDecision {
  return {
    action,
    rule,
    changesSchema: false,
    error: { severity: 'ERROR', code: SqlState.insufficientPrivilege, message, detail: `rule: ${rule}`, hint },
  };
}

export interface PolicyHookOptions {
  audit: AuditWriter;
  /** Absent: no policy configured, so nothing may run (fail closed). */
  policy: Policy | undefined;
  cache: DecisionCache;
}

export function createPolicyStatementHook({ audit, policy, cache }: PolicyHookOptions): StatementHook {
  /** Each connection's audit fields, encoded once for all its statements. */
  const parties = new WeakMap<ConnectionContext, EncodedParty>();
  return {
    decideStatement(connection, event) {
      if (!audit.healthy) {
        // Fail closed: a statement that cannot be audited does not run.
        return refusal('builtin:audit-unavailable', 'dbgate: the audit trail cannot be written right now, so no statement may run',
          'retry shortly; if it persists, ask the gateway operator to check the state store');
      }
      if (!policy) {
        return refusal('builtin:no-policy', 'dbgate: this gateway has no policy configured, so no statement may run',
          'the gateway operator must add a policy section to the gateway config');
      }
      if (event.step === 'function-call') {
        // The fastpath FunctionCall message names a function by OID with no SQL around it: nothing to analyse.
        return refusal('builtin:fastpath', 'dbgate: the fastpath function-call protocol cannot be checked by policy, so it is not allowed',
          'call the function in a SELECT statement instead');
      }
      // Statements with parameters come again verbatim (drivers parse them anew, unnamed, for every execution): the
      // connection remembers their decisions. Texts with their values inline rarely repeat, and remembering each
      // would cost more than it saves; the shared cache serves them.
      const scope = scopeOf(connection);
      const memo = event.text.includes('$');
      const remembered = memo ? scope.decided.get(event.text) : undefined;
      if (remembered) return remembered;
      const decided = decideWithPolicy(policy, cache, scope, event.text);
      if (memo) {
        if (scope.decided.size >= SESSION_DECISIONS_LIMIT) scope.decided.clear();
        scope.decided.set(event.text, decided);
      }
      return decided;
    },

    recordStatement(connection, statement) {
      let party = parties.get(connection);
      if (party === undefined) {
        const { identity } = connection;
        party = audit.party({
          subject: identity.subject,
          actors: identity.actors,
          sessionId: identity.sessionId,
          connectionId: connection.connectionId,
          clientAddress: connection.clientAddress,
          tunnelId: connection.tunnelId,
          target: connection.target.name,
        });
        parties.set(connection, party);
      }
      audit.appendFor(party, {
        occurredAt: statement.startedAt,
        event: 'statement',
        statement: statement.text,
        protocolStep: statement.step,
        outcome: statement.outcome,
        sqlState: statement.sqlState,
        rows: statement.rows,
        durationMs: statement.finishedAt - statement.startedAt,
        detail: auditDetail(statement.decision, statement.maskedColumns),
      });
    },
  };
}

/** What a decision contributes to the audit detail, one frozen object per decision (the writer encodes it once). */
type AuditDetail = Readonly<Record<string, unknown>>;

const decisionDetails = new WeakMap<StatementDecision, AuditDetail>();

function auditDetail(decision: StatementDecision | undefined, maskedColumns: readonly string[]): AuditDetail {
  if (decision === undefined) return maskedColumns.length > 0 ? { masked_columns: maskedColumns } : NO_DETAIL;
  if (maskedColumns.length > 0) return { decision: decision.action, rule: decision.rule, masked_columns: maskedColumns };
  let detail = decisionDetails.get(decision);
  if (detail === undefined) {
    detail = Object.freeze({ decision: decision.action, rule: decision.rule });
    decisionDetails.set(decision, detail);
  }
  return detail;
}

const NO_DETAIL = Object.freeze({});

/**
 * What a connection's decisions depend on besides the text, and the decisions already taken with it (by text, for
 * texts with parameters). Everything else (policy, identity, target) is fixed for the connection; when its
 * search_path or catalog read changes, a new scope comes with an empty memo.
 */
interface ConnectionScope {
  scope: DecisionScope;
  decided: Map<string, StatementDecision>;
}

const scopes = new WeakMap<ConnectionContext, ConnectionScope>();

function scopeOf(connection: ConnectionContext): ConnectionScope {
  const { identity, target, session } = connection;
  const known = scopes.get(connection);
  // The proxy replaces the search_path and the catalog read when they change, never changes them in place.
  if (known?.scope.searchPath === session.searchPath && known.scope.catalog === session.catalog) return known;
  const scope: DecisionScope = Object.freeze({
    identity: { subject: identity.subject, groups: identity.groups, kind: identity.kind },
    target: target.name,
    searchPath: session.searchPath,
    ...(session.catalog ? { catalog: session.catalog } : {}),
  });
  const fresh = { scope, decided: new Map<string, StatementDecision>() };
  scopes.set(connection, fresh);
  return fresh;
}

/**
 * The proxy's decision built from each cached policy decision, once: texts that share a cached decision (pgbench
 * -M simple: the same statement with other literals) share it too. Never changed once built.
 */
const builtDecisions = new WeakMap<CachedDecision, StatementDecision>();

/** The policy's decision for one statement text in a connection's scope (before the scope's memo). */
function decideWithPolicy(policy: Policy, cache: DecisionCache, { scope }: ConnectionScope, text: string): StatementDecision {
  const cached = cache.decide(policy, scope, text);
  let built = builtDecisions.get(cached);
  if (built === undefined) {
    // The cache key holds the scope's search_path, so what is built from a cached decision is the same for all.
    built = Object.freeze(statementDecision(cached, scope.searchPath));
    builtDecisions.set(cached, built);
  }
  return built;
}

function statementDecision({ decision, classification }: CachedDecision, searchPath: readonly string[]): StatementDecision {
  const changesSchema = classification.statements.some((statement) => statement.kinds.includes('ddl'));
  const namesChanged = classification.statements.flatMap((statement) => statement.namesChanged ?? []);
  const searchPathChanged = decision.searchPath.join('\u0000') !== searchPath.join('\u0000');
  const redefining = classification.statements.findIndex((statement) => statement.redefinedNames !== undefined);
  const redefinedNames = [...new Set(classification.statements.flatMap((statement) => statement.redefinedNames ?? []))];
  const usedRelations = namesUsed(classification.statements);
  const createdTables = [...new Set(classification.statements
    .filter((statement) => statement.ddlObject === 'table' && statement.ddlAction === 'create')
    .flatMap((statement) => statement.tables.filter((table) => table.access === 'write').map((table) => table.name)))];
  const usedAfterRedefinition = redefining < 0 ? [] : namesUsed(classification.statements.slice(redefining + 1));
  const common = {
    rule: decision.ruleId,
    changesSchema,
    ...(searchPathChanged ? { searchPathAfter: decision.searchPath } : {}),
    ...(namesChanged.length > 0 ? { namesChanged } : {}),
    ...(redefinedNames.length > 0 ? { redefinedNames } : {}),
    ...(usedRelations.length > 0 ? { usedRelations } : {}),
    ...(createdTables.length > 0 ? { createdTables } : {}),
    ...(usedAfterRedefinition.length > 0 ? { usedAfterRedefinition } : {}),
  };
  if (decision.action === 'deny' || decision.action === 'hold') {
    return { ...refusal(decision.ruleId, decision.message, decision.hint, decision.action), ...common };
  }
  if (decision.action === 'mask' && classification.statements.some((statement) => statement.kind === 'copy')) {
    // COPY TO streams rows in its own format and COPY FROM could be aimed at masked tables: not for masked users.
    return refusal(decision.ruleId, 'dbgate: COPY is not available to you on this target because its data is masked',
      'use SELECT: masked columns are masked in query results');
  }
  if (decision.action === 'mask') {
    return {
      ...common,
      action: decision.action,
      ...(decision.derivedOutputs ? { derivedOutputs: decision.derivedOutputs } : {}),
      outputs: classification.statements.map((statement) => statement.outputs),
    };
  }
  return { ...common, action: decision.action };
}

/**
 * The relations the statements use as they are now: those they name, but for DDL that only defines objects over them
 * (a view's query runs when the view is used, and is judged then).
 */
function namesUsed(statements: readonly StatementInfo[]): string[] {
  const names = new Set<string>();
  for (const statement of statements) {
    if (statement.runsQuery !== true && statement.kinds.every((kind) => kind === 'ddl')) continue;
    for (const table of statement.tables) names.add(table.name);
  }
  return [...names];
}
