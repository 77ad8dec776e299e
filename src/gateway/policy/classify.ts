/**
 * Statement classification on PostgreSQL's own grammar (libpg_query, compiled to WASM). `classifyStatements` parses
 * the text of one Query (or Parse) message once and describes every statement in it: what kind it is, which tables it
 * reads and writes, which functions it calls, whether its UPDATE/DELETE is bounded by a WHERE, what it changes in the
 * session, which columns it filters, joins, sorts or groups by (inference.ts), and — the part that makes dbgate fail
 * closed — why it cannot be analysed when the parse tree does not show what it will do (DO blocks with EXECUTE,
 * SQL-level EXECUTE, COPY … PROGRAM, functions that run SQL strings…).
 *
 * No regular expressions ever look at SQL text: everything below walks the parse tree. The walk is generic (every
 * node, recursively) so that a construct nobody thought of still has its tables and function calls collected; only
 * the nodes that change the meaning (data-modifying statements, CTE names, EXPLAIN, COPY, DO…) have handlers.
 *
 * The classifier knows nothing about policy; `policy.ts` decides what to do with a classification.
 */
import { Buffer } from 'node:buffer';
import type * as LibPgQuery from 'libpg-query';
import { assessFunction, formatFunctionName, type FunctionName } from './functions.js';
import { CAST_TARGET_TYPES, InferenceCollector, type InferenceColumn, type StatementOutputs } from './inference.js';
import { countingLiteralReads, noteLiteralRead } from './literal-reads.js';

export {
  INFERENCE_CLAUSES, type InferenceClause, type InferenceColumn, type OutputColumn, type StatementOutputs, type TableColumn,
} from './inference.js';

// ---------------------------------------------------------------------------------------------------------------------
// The classification
// ---------------------------------------------------------------------------------------------------------------------

/** Statement kinds, as rules name them (`match: { kinds: [...] }`). */
export const STATEMENT_KINDS = [
  'select', 'insert', 'update', 'delete', 'merge', 'ddl', 'truncate', 'copy', 'grant', 'role', 'set', 'session',
  'transaction', 'call', 'do', 'explain', 'prepare', 'execute', 'listen', 'utility', 'unknown',
] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

/** What a DDL (or role) statement creates, alters or drops (`match: { ddl_objects: [...] }`). */
export const DDL_OBJECTS = [
  'table', 'index', 'view', 'materialized_view', 'sequence', 'function', 'procedure', 'aggregate', 'trigger',
  'event_trigger', 'schema', 'extension', 'type', 'domain', 'role', 'database', 'tablespace', 'policy', 'rule',
  'foreign_table', 'foreign_server', 'foreign_data_wrapper', 'user_mapping', 'publication', 'subscription',
  'language', 'operator', 'operator_class', 'collation', 'conversion', 'cast', 'transform', 'statistics',
  'access_method', 'text_search', 'column', 'constraint', 'large_object', 'system', 'other',
] as const;
export type DdlObject = (typeof DDL_OBJECTS)[number];

export const DDL_ACTIONS = ['create', 'alter', 'drop'] as const;
export type DdlAction = (typeof DDL_ACTIONS)[number];

/** A table (or view, sequence…) a statement touches. `schema` is null when the statement did not qualify it. */
export interface TableRef {
  schema: string | null;
  name: string;
  /** write: the statement changes it (DML target, COPY FROM, TRUNCATE, DDL target, SELECT … FOR UPDATE, LOCK). */
  access: 'read' | 'write';
  /** Set by the policy (target-catalog.ts) on a table reached through a view: `schema.name` of that view. */
  view?: string;
}

export type SessionEffectKind =
  | 'set_role'
  | 'session_authorization'
  | 'set_config'
  | 'search_path'
  | 'standard_conforming_strings'
  | 'client_encoding'
  | 'reset_all'
  | 'discard'
  | 'other_set';

/**
 * A change to session state. `value` is absent for RESET / SET … TO DEFAULT (back to the server's default) and when
 * the value is computed at run time (`computed: true`, only possible through set_config()).
 */
export interface SessionEffect {
  kind: SessionEffectKind;
  /** The setting, lower-case (`role`, `search_path`, …); `all` for RESET ALL / DISCARD ALL. */
  name: string;
  /** How it is changed: a SET/RESET statement, a set_config() call, DISCARD, or a startup parameter. */
  via: 'set' | 'reset' | 'set_config' | 'discard' | 'startup';
  value?: string;
  /** For search_path: the schemas, in order (unquoted). Absent when reset to the server default. */
  searchPath?: string[];
  /** SET LOCAL / set_config(…, true): reverts at the end of the transaction. */
  local?: boolean;
  /** The value is computed when the statement runs, so dbgate cannot know it. */
  computed?: boolean;
  /**
   * set_config() with constant arguments as the whole of a top-level `SELECT set_config(…)`: it runs exactly once
   * when the statement does, with a value known in advance — the same as SET (pg_dump's scripts start with one).
   */
  once?: boolean;
}

export type UnanalyzableCause =
  | 'do_block'
  | 'dynamic_sql'
  | 'dynamic_sql_function'
  | 'unknown_function'
  | 'copy_program'
  | 'copy_server_file'
  | 'prepared_statement'
  | 'computed_setting'
  | 'shadowing_type'
  | 'load_library'
  | 'unknown_statement'
  | 'analysis_failed';

/** Why dbgate cannot prove what a statement does. */
export interface UnanalyzableReason {
  cause: UnanalyzableCause;
  /** For the user: "the DO block runs dynamic SQL (EXECUTE) …". */
  message: string;
  /** The function responsible, for dynamic_sql_function / unknown_function (a rule naming it can vouch for it). */
  function?: string;
}

/** One statement of a message, as the policy sees it. */
export interface StatementInfo {
  /** The statement's own kind (for `WITH d AS (DELETE …) SELECT …`: select; for `EXPLAIN ANALYZE DELETE`: explain). */
  kind: StatementKind;
  /**
   * Every kind the statement performs: its own kind plus the statements that run inside it — data-modifying CTEs,
   * the statement under EXPLAIN ANALYZE, the statements of a DO block, a PREPAREd statement. Rules match on these.
   */
  kinds: StatementKind[];
  ddlObject?: DdlObject;
  ddlAction?: DdlAction;
  /** Whether running it changes the database (data, schema, sequences, notifications, locks that block writers…). */
  writes: boolean;
  /** Tables touched; a table both read and written appears once, as write. CTE names are not tables. */
  tables: TableRef[];
  /** Every function called, as written (`lower`, `pg_catalog.pg_read_file`, `public.my_fn`). */
  functions: string[];
  /** Functions that are neither known-safe built-ins nor in the dangerous/dynamic lists: user-defined or extensions. */
  unknownFunctions: string[];
  /** Functions from the dangerous catalog, with the reason (`it reads the database server's file system`). */
  dangerousFunctions: Array<{ name: string; why: string }>;
  /**
   * For statements performing UPDATE or DELETE (also nested ones): false when any of them has no WHERE, or a WHERE
   * that references no column at all (`WHERE true`, `WHERE 1 = 1` cannot bound anything). Null when there is none.
   */
  hasWhere: boolean | null;
  /** The first reason the engine cannot prove what the statement does; null when it can. */
  unanalyzable: string | null;
  /** All such reasons, structured, so the policy can tell a DO block from an unknown function. */
  unanalyzableReasons: UnanalyzableReason[];
  sessionEffects: SessionEffect[];
  /**
   * Columns the statement filters, joins, sorts, groups, deduplicates or partitions by (inference.ts), resolved to
   * their tables through the FROM lists and the lineage of CTEs and subqueries. `column` is `*` where dbgate cannot
   * tell which column of the table (a whole-row reference, NATURAL JOIN, `SELECT DISTINCT *`…). The policy denies
   * those that are masked for the identity (inference protection).
   */
  inferenceColumns: InferenceColumn[];
  /** The lineage of the rows the statement returns (select list, RETURNING, a cursor's query); null when none. */
  outputs: StatementOutputs | null;
  /** FETCH returns rows of an SQL cursor, whose query is not in its text (the policy masks them like all results). */
  fetchesCursor?: boolean;
  /**
   * Relation names (unqualified, as written) whose meaning the statement changes: a view or materialized view
   * (re)defined, a table given a rule (and the tables its actions write), a foreign table, a relation renamed (both
   * names) or moved to another schema, a column renamed (its table). Statements judged on the catalog as it was would
   * misjudge those names. Absent for other statements.
   */
  redefinedNames?: string[];
  /** DDL that runs a query now (CREATE TABLE AS, SELECT INTO, CREATE MATERIALIZED VIEW): it reads data, not just names. */
  runsQuery?: boolean;
  /**
   * Names of prepared statements and portals the statement creates or drops in SQL (PREPARE, DEALLOCATE, DECLARE,
   * CLOSE, DISCARD ALL); `name` null: all of them. A name the proxy saw bound may mean another statement after it.
   */
  namesChanged?: NameChange[];
  /** The statement's own text, trimmed, without the `;` separating it from the next one. */
  text: string;
}

/** A prepared statement or portal (an SQL cursor is one) created or dropped by name; null: all of them. */
export interface NameChange {
  of: 'statement' | 'portal';
  name: string | null;
}

export interface Classification {
  statements: StatementInfo[];
  /** PostgreSQL's syntax error ("syntax error at or near …") when the text does not parse; statements is then empty. */
  parseError: string | null;
  /** 0-based character offset of the syntax error, when the parser reports one. */
  parseErrorPosition?: number;
  /**
   * Whether the value of any literal went into this classification (a setting's value, `ORDER BY 2`, a DO body…).
   * When false, every text that differs only in its literals classifies the same (see decision-cache.ts).
   */
  literalSensitive: boolean;
}

// ---------------------------------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------------------------------

/**
 * The parser, once loaded. Imported lazily so that importing this module for its types and vocabulary (the config
 * schema does) does not start instantiating WASM.
 */
let parser: typeof LibPgQuery | undefined;

/** Loads the WASM parser. Call (and await) once before `classifyStatements`; later calls return at once. */
export async function loadStatementParser(): Promise<void> {
  if (parser) return;
  const module = await import('libpg-query');
  await module.loadModule();
  parser = module;
}

function loadedParser(): typeof LibPgQuery {
  if (!parser) throw new Error('the statement parser is used before loadStatementParser() resolved');
  return parser;
}

/**
 * PostgreSQL's normalisation of a statement text: every constant replaced by `$n` (as pg_stat_statements shows
 * statements), comments and layout kept. Throws on text that does not parse.
 */
export function normalizeStatementText(sql: string): string {
  if (sql.includes('\0')) throw new Error('the statement text contains a NUL character');
  return loadedParser().normalizeSync(sql);
}

/**
 * Classifies every statement of `sql` (the text of one Query or Parse message). Never throws for bad SQL: a syntax
 * error comes back as `parseError`, anything the walk cannot handle as an `unknown` statement with an unanalysable
 * reason — both of which the policy denies.
 */
export function classifyStatements(sql: string): Classification {
  const { result, literalReads } = countingLiteralReads(() => classifyText(sql));
  return { ...result, literalSensitive: literalReads > 0 };
}

function classifyText(sql: string): Omit<Classification, 'literalSensitive'> {
  const { parseSync } = loadedParser();
  // The parser reads a C string: text after a NUL would be invisible to it but not necessarily to the server.
  if (sql.includes('\0')) return { statements: [], parseError: 'the statement text contains a NUL character' };
  if (sql.trim() === '') return { statements: [], parseError: null };
  let rawStatements: RawStatement[];
  try {
    rawStatements = (parseSync(sql).stmts ?? []) as RawStatement[];
  } catch (error) {
    const details = (error as { sqlDetails?: { cursorPosition?: number } }).sqlDetails;
    const classification: Omit<Classification, 'literalSensitive'> = { statements: [], parseError: (error as Error).message };
    if (details?.cursorPosition !== undefined) classification.parseErrorPosition = details.cursorPosition;
    return classification;
  }
  const source = new StatementSource(sql);
  const statements = rawStatements.map((raw) => {
    const text = source.slice(raw.stmt_location ?? 0, raw.stmt_len ?? 0);
    try {
      const analysis = new StatementAnalysis();
      analysis.analyzeTopLevel(raw.stmt, TOP_SCOPE);
      analysis.collectInference(raw.stmt, true);
      return analysis.result(text);
    } catch (error) {
      // Fail closed: a tree the walk cannot handle (stack exhaustion on absurd nesting, a shape it did not expect)
      // becomes an unanalysable statement rather than an exception that someone upstream might swallow.
      return unanalyzableStatement(text, `dbgate could not analyse the statement (${(error as Error).message})`);
    }
  });
  return { statements, parseError: null };
}

/**
 * The session effect of setting `name` to `value` outside of SQL — a startup parameter, or a ParameterStatus the
 * server reports — so the caller can apply the same checks (`isSessionEscape` in policy.ts) as for `SET`.
 */
export function sessionEffectOf(name: string, value: string | undefined, via: SessionEffect['via']): SessionEffect {
  const setting = name.toLowerCase();
  const effect: SessionEffect = { kind: effectKindOf(setting), name: setting, via };
  if (value !== undefined) {
    effect.value = value;
    if (effect.kind === 'search_path') effect.searchPath = splitSearchPath(value);
  }
  return effect;
}

// ---------------------------------------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------------------------------------

/** A JSON parse-tree object: either a wrapper `{ NodeType: {...} }` or a node's fields. */
type Fields = Record<string, unknown>;

interface RawStatement {
  stmt?: Fields;
  stmt_location?: number;
  stmt_len?: number;
}

interface Scope {
  /** CTE names visible here: an unqualified FROM item with one of these names is the CTE, not a table. */
  ctes: ReadonlySet<string>;
  /**
   * Whether the statement being walked runs now. False under EXPLAIN without ANALYZE and inside definitions (a view's
   * query, a rule's actions, a function body): its tables count as read and it writes nothing. Function calls are
   * still assessed there, since the planner may evaluate them while planning.
   */
  executes: boolean;
  /** DO blocks nest (a DO inside a DO's EXECUTE-free body); bounded to keep the analysis finite. */
  doDepth: number;
}

const TOP_SCOPE: Scope = { ctes: new Set(), executes: true, doDepth: 0 };
const MAX_DO_DEPTH = 4;

type NodeHandler = (analysis: StatementAnalysis, node: Fields, scope: Scope) => void;

class StatementAnalysis {
  private kind: StatementKind | undefined;
  private readonly kinds = new Set<StatementKind>();
  private ddlObject: DdlObject | undefined;
  private ddlAction: DdlAction | undefined;
  private writes = false;
  private readonly tables = new Map<string, TableRef>();
  private readonly functions = new Set<string>();
  private readonly unknownFunctions = new Set<string>();
  private readonly dangerousFunctions = new Map<string, string>();
  private boundedWrites = 0;
  private unboundedWrites = 0;
  private readonly reasons: UnanalyzableReason[] = [];
  private readonly effects: SessionEffect[] = [];
  private readonly inference = new InferenceCollector();
  /** The call of a statement that is only `SELECT f(…)` (bareSelectCall): it runs exactly once. */
  private bareCall: Fields | undefined;
  /** StatementInfo.fetchesCursor, redefinedNames (the names written, and these), runsQuery and namesChanged. */
  fetchesCursor = false;
  redefinedNames: string[] | undefined;
  runsQuery = false;
  readonly namesChanged: NameChange[] = [];

  /** Walks one statement node (`{ SelectStmt: {...} }`, `{ DoStmt: {...} }`, …). */
  analyzeTopLevel(statement: Fields | undefined, scope: Scope): void {
    const [type, node] = singleEntry(statement);
    if (type === undefined || node === undefined) {
      this.setKind('unknown', scope);
      this.addReason('unknown_statement', 'the parser returned an empty statement');
      return;
    }
    if (type === 'SelectStmt') this.bareCall = bareSelectCall(node);
    const handler = HANDLERS.get(type);
    if (handler) {
      handler(this, node, scope);
      return;
    }
    // Fail closed: a statement type dbgate has no handler for is walked for tables and functions, then denied.
    this.setKind('unknown', scope);
    this.addReason('unknown_statement', `dbgate does not know the statement type ${type}`);
    this.walk(node, scope);
  }

  result(text: string): StatementInfo {
    const unknownFunctions = [...this.unknownFunctions];
    if (this.writes && unknownFunctions.length > 0) {
      for (const name of unknownFunctions) {
        this.addReason('unknown_function', `the statement writes and calls ${name}(), whose effects dbgate cannot see`,
          name);
      }
    }
    const info: StatementInfo = {
      kind: this.kind ?? 'unknown',
      kinds: [...this.kinds],
      writes: this.writes,
      tables: [...this.tables.values()],
      functions: [...this.functions],
      unknownFunctions,
      dangerousFunctions: [...this.dangerousFunctions].map(([name, why]) => ({ name, why })),
      hasWhere: this.unboundedWrites > 0 ? false : this.boundedWrites > 0 ? true : null,
      unanalyzable: this.reasons[0]?.message ?? null,
      unanalyzableReasons: this.reasons,
      sessionEffects: this.effects,
      inferenceColumns: this.inference.result(),
      outputs: this.inference.outputColumns(),
      text,
    };
    if (this.ddlObject !== undefined) info.ddlObject = this.ddlObject;
    if (this.ddlAction !== undefined) info.ddlAction = this.ddlAction;
    if (this.fetchesCursor) info.fetchesCursor = true;
    if (this.redefinedNames !== undefined) {
      const written = info.tables.filter((table) => table.access === 'write').map((table) => table.name);
      info.redefinedNames = [...new Set([...written, ...this.redefinedNames])];
    }
    if (this.runsQuery) info.runsQuery = true;
    if (this.namesChanged.length > 0) info.namesChanged = this.namesChanged;
    return info;
  }

  /**
   * Finds the statement's inference columns (a separate pass: it needs the FROM scopes of each query level, which the
   * generic walk does not keep). Nested statements — EXPLAIN's, PREPARE's, COPY's query — are part of the same tree.
   */
  collectInference(statement: Fields | undefined, returnsRows = false): void {
    this.inference.collect(statement, returnsRows);
  }

  // --- recording --------------------------------------------------------------------------------------------------

  /**
   * Records a kind. The first one becomes the statement's own kind; nested statements that run add theirs to
   * `kinds` only when `nestedCounts` (a subquery is not a statement of its own; a DELETE in a CTE is).
   */
  setKind(kind: StatementKind, scope: Scope, nestedCounts = true, ddl?: readonly [DdlObject, DdlAction]): void {
    const primary = this.kind === undefined;
    if (primary) {
      this.kind = kind;
      if (ddl) [this.ddlObject, this.ddlAction] = ddl;
    }
    if (primary || (nestedCounts && scope.executes)) this.kinds.add(kind);
  }

  markWrite(scope: Scope): void {
    if (scope.executes) this.writes = true;
  }

  /** Records a RangeVar. `isTarget`: the statement's own target, which is always a table (never a CTE name). */
  addTable(rangeVar: Fields, access: 'read' | 'write', scope: Scope, isTarget = false): void {
    const name = rangeVar['relname'];
    if (typeof name !== 'string') return;
    const schema = typeof rangeVar['schemaname'] === 'string' ? rangeVar['schemaname'] : null;
    if (!isTarget && schema === null && scope.ctes.has(name)) return;
    this.addTableName(schema, name, scope.executes ? access : 'read');
  }

  addTableName(schema: string | null, name: string, access: 'read' | 'write'): void {
    const key = schema === null ? `.${name}` : `${schema}.${name}`;
    const existing = this.tables.get(key);
    if (existing === undefined) this.tables.set(key, { schema, name, access });
    else if (access === 'write') existing.access = 'write';
  }

  addReason(cause: UnanalyzableCause, message: string, fn?: string): void {
    const reason: UnanalyzableReason = { cause, message };
    if (fn !== undefined) reason.function = fn;
    this.reasons.push(reason);
  }

  addEffect(effect: SessionEffect, scope: Scope): void {
    if (scope.executes) this.effects.push(effect);
  }

  /** An UPDATE or DELETE that runs, and whether a WHERE bounds it. */
  recordWhere(whereClause: unknown, scope: Scope): void {
    if (!scope.executes) return;
    if (whereClause !== undefined && referencesColumn(whereClause)) this.boundedWrites += 1;
    else this.unboundedWrites += 1;
  }

  addFunction(node: Fields, scope: Scope): void {
    const fn = functionNameOf(node['funcname']);
    if (fn === undefined) return;
    const name = formatFunctionName(fn);
    this.functions.add(name);
    const assessment = assessFunction(fn);
    switch (assessment.risk) {
      case 'safe':
        return;
      case 'dangerous':
        this.dangerousFunctions.set(name, assessment.why ?? 'it is on dbgate\'s list of dangerous functions');
        return;
      case 'dynamic_sql':
        this.addReason('dynamic_sql_function', `${name}() ${assessment.why ?? 'runs SQL dbgate cannot see'}`, name);
        return;
      case 'writes':
        this.markWrite(scope);
        return;
      case 'session':
        this.addSetConfig(node, scope);
        return;
      case 'unknown':
        this.unknownFunctions.add(name);
        return;
    }
  }

  /** set_config(name, value, is_local): a SET in function form, so it gets the same session checks. */
  private addSetConfig(node: Fields, scope: Scope): void {
    const args = asArray(node['args']);
    const setting = constantText(args[0]);
    if (setting === undefined) {
      this.addReason('computed_setting', 'set_config() is called with a setting name computed at run time');
      return;
    }
    const value = constantText(args[1]);
    const effect = sessionEffectOf(setting, value, 'set_config');
    if (value === undefined) effect.computed = true;
    // is_local is a boolean: 't', 'on' and 'yes' are true too.
    const local = booleanText(constantText(args[2]));
    if (local === true) effect.local = true;
    if (node === this.bareCall && args.length === 3 && value !== undefined && local !== undefined) effect.once = true;
    this.addEffect(effect, scope);
  }

  // --- walking ----------------------------------------------------------------------------------------------------

  /** Visits every node below `value`, dispatching the node types that change meaning to their handlers. */
  walk(value: unknown, scope: Scope): void {
    if (Array.isArray(value)) {
      for (const item of value) this.walk(item, scope);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const node = value as Fields;
    // A RangeVar's fields (wrapped as { RangeVar: {...} } or inline as InsertStmt.relation): the only node with relname.
    if (typeof node['relname'] === 'string') {
      this.addTable(node, 'read', scope);
      return;
    }
    for (const key in node) {
      const child = node[key];
      if (child === null || typeof child !== 'object') continue;
      const handler = NESTED_HANDLERS.get(key);
      if (handler) handler(this, child as Fields, scope);
      else this.walk(child, scope);
    }
  }

  /** Walks every field of `node` except the listed ones (already handled by the caller). */
  walkExcept(node: Fields, scope: Scope, ...skip: string[]): void {
    for (const key in node) {
      if (skip.includes(key)) continue;
      this.walk(node[key], scope);
    }
  }

  /** Walks a WITH clause; returns the scope in which the statement's body sees the CTE names. */
  withClause(withClause: unknown, scope: Scope): Scope {
    if (withClause === undefined || withClause === null || typeof withClause !== 'object') return scope;
    const clause = withClause as Fields;
    const ctes = asArray(clause['ctes']).map((item) => (item as Fields)['CommonTableExpr'] as Fields | undefined);
    const names = ctes.map((cte) => cte?.['ctename']).filter((name): name is string => typeof name === 'string');
    const recursive = clause['recursive'] === true;
    // Without RECURSIVE a CTE sees only the CTEs before it; a same-named table further on is the real table.
    let visible = new Set([...scope.ctes, ...(recursive ? names : [])]);
    for (const cte of ctes) {
      if (cte === undefined) continue;
      this.walk(cte['ctequery'], { ...scope, ctes: visible });
      if (!recursive && typeof cte['ctename'] === 'string') visible = new Set([...visible, cte['ctename']]);
    }
    return { ...scope, ctes: new Set([...scope.ctes, ...names]) };
  }

  /** The body of a DO block, through the PL/pgSQL parser. */
  analyzeDoBlock(node: Fields, scope: Scope): void {
    const options = defElems(node['args']);
    const language = constantText(options.get('language')) ?? 'plpgsql';
    const body = constantText(options.get('as'));
    if (language.toLowerCase() !== 'plpgsql') {
      this.addReason('do_block', `the DO block is written in ${language}, which dbgate cannot analyse`);
      return;
    }
    if (body === undefined) {
      this.addReason('do_block', 'the DO block has no body dbgate can read');
      return;
    }
    if (scope.doDepth >= MAX_DO_DEPTH) {
      this.addReason('do_block', `DO blocks are nested more than ${MAX_DO_DEPTH} deep`);
      return;
    }
    let tree: unknown;
    try {
      tree = loadedParser().parsePlPgSQLSync(wrapAsFunction(body));
    } catch (error) {
      this.addReason('do_block', `the DO block does not parse: ${(error as Error).message}`);
      return;
    }
    this.walkPlpgsql(tree, { ...scope, doDepth: scope.doDepth + 1 });
  }

  private walkPlpgsql(value: unknown, scope: Scope): void {
    if (Array.isArray(value)) {
      for (const item of value) this.walkPlpgsql(item, scope);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const node = value as Fields;
    for (const key in node) {
      const child = node[key];
      if (child === null || typeof child !== 'object') continue;
      // EXECUTE, FOR … IN EXECUTE, OPEN … FOR EXECUTE, RETURN QUERY EXECUTE: the SQL is a string built at run time.
      if (key === 'PLpgSQL_stmt_dynexecute' || key === 'PLpgSQL_stmt_dynfors' || key === 'dynquery') {
        this.addReason('dynamic_sql', 'the DO block runs dynamic SQL (EXECUTE), which dbgate cannot see before it runs');
      }
      if (key === 'PLpgSQL_expr') {
        const expr = child as Fields;
        if (typeof expr['query'] === 'string') this.analyzeEmbeddedSql(expr['query'], Number(expr['parseMode'] ?? 0), scope);
        continue;
      }
      this.walkPlpgsql(child, scope);
    }
  }

  /**
   * One SQL statement or expression of a PL/pgSQL body. `parseMode` is PostgreSQL's RawParseMode: 0 a statement,
   * 2 an expression, 3–5 an assignment (`target := expression`), 1 a type name.
   */
  private analyzeEmbeddedSql(text: string, parseMode: number, scope: Scope): void {
    let sql: string;
    if (parseMode === 0) sql = text;
    else if (parseMode === 2) sql = `SELECT ${text}`;
    else if (parseMode >= 3 && parseMode <= 5) sql = assignmentAsSelect(text);
    else return;
    let statements: RawStatement[];
    try {
      statements = (loadedParser().parseSync(sql).stmts ?? []) as RawStatement[];
    } catch (error) {
      this.addReason('do_block', `a statement in the DO block does not parse: ${(error as Error).message}`);
      return;
    }
    for (const raw of statements) {
      this.analyzeTopLevel(raw.stmt, scope);
      this.collectInference(raw.stmt);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------------------------------

const selectHandler: NodeHandler = (a, node, scope) => {
  // The kind first: a data-modifying CTE walked below must not become the statement's own kind.
  const into = node['intoClause'] as Fields | undefined;
  if (into !== undefined) {
    // SELECT … INTO t is CREATE TABLE t AS SELECT …
    a.setKind('ddl', scope, true, ['table', 'create']);
    a.markWrite(scope);
    a.runsQuery = true;
    const rel = into['rel'] as Fields | undefined;
    if (rel) a.addTable(rel, 'write', scope, true);
  } else {
    a.setKind('select', scope, false);
  }
  const inner = a.withClause(node['withClause'], scope);
  if (asArray(node['lockingClause']).length > 0) {
    // FOR UPDATE / FOR SHARE lock rows against writers and need UPDATE privilege in PostgreSQL: a write.
    a.markWrite(scope);
    walkTablesAs(a, node['fromClause'], 'write', inner);
    a.walkExcept(node, inner, 'withClause', 'intoClause', 'fromClause');
    return;
  }
  a.walkExcept(node, inner, 'withClause', 'intoClause');
};

function dmlHandler(kind: 'insert' | 'update' | 'delete' | 'merge'): NodeHandler {
  return (a, node, scope) => {
    a.setKind(kind, scope);
    const inner = a.withClause(node['withClause'], scope);
    a.markWrite(scope);
    const relation = node['relation'] as Fields | undefined;
    if (relation) a.addTable(relation, 'write', scope, true);
    if (kind === 'update' || kind === 'delete') a.recordWhere(node['whereClause'], scope);
    a.walkExcept(node, inner, 'withClause', 'relation');
  };
}

const funcCallHandler: NodeHandler = (a, node, scope) => {
  a.addFunction(node, scope);
  a.walkExcept(node, scope, 'funcname');
};

/** Handlers for nodes that can appear anywhere in a tree (subqueries, CTEs, COPY's query, EXPLAIN's statement). */
const NESTED_HANDLERS: ReadonlyMap<string, NodeHandler> = new Map([
  ['SelectStmt', selectHandler],
  ['InsertStmt', dmlHandler('insert')],
  ['UpdateStmt', dmlHandler('update')],
  ['DeleteStmt', dmlHandler('delete')],
  ['MergeStmt', dmlHandler('merge')],
  ['FuncCall', funcCallHandler],
]);

/** A DDL statement: its direct RangeVar fields are the objects it changes; what it defines does not run now. */
function ddlHandler(
  describe: (node: Fields) => readonly [DdlObject, DdlAction],
  kind: 'ddl' | 'role' | 'grant' = 'ddl',
): NodeHandler {
  return (a, node, scope) => {
    // GRANT/REVOKE are their own kind; ddlObject/ddlAction describe DDL and role statements only.
    a.setKind(kind, scope, true, kind === 'grant' ? undefined : describe(node));
    a.markWrite(scope);
    for (const key in node) {
      const value = node[key];
      for (const item of Array.isArray(value) ? value : [value]) {
        const rangeVar = rangeVarOf(item);
        if (rangeVar) a.addTable(rangeVar, 'write', scope, true);
      }
    }
    a.walk(node, { ...scope, executes: false });
  };
}

/**
 * Refuses a statement that gives a type (`name`, undefined when it names none) the name of a built-in type dbgate
 * treats casts to as never failing (inference.ts CAST_TARGET_TYPES). One of the same name elsewhere — in the session's
 * temporary schema, searched before pg_catalog, or in a schema put before it on the search_path — would make
 * `email::text` run a domain's CHECK, and whether it fails would show the value.
 */
function refuseShadowingType(a: StatementAnalysis, name: string | undefined): void {
  if (name === undefined || !CAST_TARGET_TYPES.has(name)) return;
  a.addReason('shadowing_type', `the statement names a type ${name}, like the built-in type, which would change what casts to ${name} do`);
}

/** `handler` for a statement that creates the type `nameOf` says. */
function namingType(nameOf: (node: Fields) => string | undefined, handler: NodeHandler): NodeHandler {
  return (a, node, scope) => {
    handler(a, node, scope);
    refuseShadowingType(a, nameOf(node));
  };
}

/** The last name of a name list (`schema.type` → `type`). */
const lastName = (list: unknown): string | undefined => stringParts(list).at(-1);

/**
 * `handler` for a statement that changes what the relation names it writes stand for (StatementInfo.redefinedNames),
 * and a relation's new name when it renames one.
 */
function redefining(handler: NodeHandler): NodeHandler {
  return (a, node, scope) => {
    handler(a, node, scope);
    a.redefinedNames ??= [];
    if (typeof node['newname'] === 'string') {
      a.redefinedNames.push(node['newname']);
      if (node['renameType'] === 'OBJECT_TYPE' || node['renameType'] === 'OBJECT_DOMAIN') refuseShadowingType(a, node['newname']);
    }
  };
}

const fixed = (object: DdlObject, action: DdlAction) => (): readonly [DdlObject, DdlAction] => [object, action];
const byObjectType = (field: string, action: DdlAction) => (node: Fields): readonly [DdlObject, DdlAction] =>
  [ddlObjectOf(node[field]), action];

const dropHandler: NodeHandler = (a, node, scope) => {
  const object = ddlObjectOf(node['removeType']);
  ddlHandler(() => [object, 'drop'])(a, node, scope);
  // DROP TABLE names its tables as name lists, not RangeVars.
  if (RELATION_OBJECTS.has(object)) {
    for (const item of asArray(node['objects'])) {
      const name = qualifiedName((item as Fields)['List']);
      if (name) a.addTableName(name.schema, name.name, scope.executes ? 'write' : 'read');
    }
  }
};

/**
 * CREATE RULE. Its actions run whenever its event happens on its table, from then on: the tables they write count as
 * written by creating it, which opens a standing path to them (a rule on another table that turns its updates into
 * updates of `payments` is held by a rule holding writes to `payments`, like an update of `payments` itself).
 */
const ruleHandler: NodeHandler = (a, node, scope) => {
  redefining(ddlHandler(fixed('rule', 'create')))(a, node, scope);
  for (const action of asArray(node['actions'])) {
    const [type, statement] = singleEntry(action as Fields);
    if (statement === undefined || !(type === 'InsertStmt' || type === 'UpdateStmt' || type === 'DeleteStmt' || type === 'MergeStmt')) continue;
    const relation = statement['relation'] as Fields | undefined;
    if (relation) a.addTable(relation, 'write', { ...scope, executes: true }, true);
  }
};

const createTableAsHandler: NodeHandler = (a, node, scope) => {
  const object = ddlObjectOf(node['objtype']);
  a.setKind('ddl', scope, true, [object, 'create']);
  a.markWrite(scope);
  a.runsQuery = true;
  if (object === 'materialized_view') a.redefinedNames ??= [];
  const rel = (node['into'] as Fields | undefined)?.['rel'] as Fields | undefined;
  if (rel) a.addTable(rel, 'write', scope, true);
  // Unlike a view's query, this one runs now (EXPLAIN ANALYZE CREATE TABLE AS included).
  a.walk(node['query'], scope);
};

const explainHandler: NodeHandler = (a, node, scope) => {
  a.setKind('explain', scope);
  const options = defElems(node['options']);
  // EXPLAIN without ANALYZE plans but does not run the statement; EXPLAIN ANALYZE runs it, writes included.
  const analyze = options.has('analyze') && booleanOption(options.get('analyze'));
  a.analyzeTopLevel(node['query'] as Fields | undefined, { ...scope, executes: scope.executes && analyze });
};

const copyHandler: NodeHandler = (a, node, scope) => {
  a.setKind('copy', scope);
  const isFrom = node['is_from'] === true;
  if (node['is_program'] === true) {
    a.addReason('copy_program', 'COPY … PROGRAM runs a shell command on the database server');
  } else if (typeof node['filename'] === 'string') {
    a.addReason('copy_server_file',
      `COPY ${isFrom ? 'FROM' : 'TO'} a server file ${isFrom ? 'reads' : 'writes'} the database server's file system`);
  }
  const relation = node['relation'] as Fields | undefined;
  if (relation) {
    if (isFrom) a.markWrite(scope);
    a.addTable(relation, isFrom ? 'write' : 'read', scope, true);
  }
  // COPY (query) TO: the query runs, and it may be INSERT/UPDATE/DELETE … RETURNING.
  a.walkExcept(node, scope, 'relation');
};

const variableSetHandler: NodeHandler = (a, node, scope) => {
  const setKind = node['kind'];
  if (setKind === 'VAR_SET_MULTI') {
    // SET TRANSACTION …, SET SESSION CHARACTERISTICS AS TRANSACTION …
    a.setKind('transaction', scope);
    return;
  }
  a.setKind('set', scope);
  if (setKind === 'VAR_RESET_ALL') {
    a.addEffect({ kind: 'reset_all', name: 'all', via: 'reset' }, scope);
    return;
  }
  const name = String(node['name'] ?? '').toLowerCase();
  const reset = setKind === 'VAR_RESET' || setKind === 'VAR_SET_DEFAULT';
  const args = asArray(node['args']);
  const values = args.map(constantText);
  const effect: SessionEffect = { kind: effectKindOf(name), name, via: reset ? 'reset' : 'set' };
  if (!reset && values.length > 0 && values.every((v) => v !== undefined)) {
    const list = values as string[];
    effect.value = list.join(', ');
    if (effect.kind === 'search_path') effect.searchPath = list;
  } else if (!reset) {
    effect.computed = true;
  }
  if (node['is_local'] === true) effect.local = true;
  a.addEffect(effect, scope);
  a.walk(args, scope);
};

const discardHandler: NodeHandler = (a, node, scope) => {
  a.setKind('session', scope);
  const target = String(node['target'] ?? 'DISCARD_ALL').replace(/^DISCARD_/, '').toLowerCase();
  a.addEffect({ kind: 'discard', name: target, via: 'discard' }, scope);
  // DISCARD ALL deallocates every prepared statement and closes every portal.
  if (target === 'all') a.namesChanged.push({ of: 'statement', name: null }, { of: 'portal', name: null });
};

const doHandler: NodeHandler = (a, node, scope) => {
  a.setKind('do', scope);
  a.analyzeDoBlock(node, scope);
};

const callHandler: NodeHandler = (a, node, scope) => {
  a.setKind('call', scope);
  // A procedure can write and even COMMIT; its body is invisible here.
  a.markWrite(scope);
  // CallStmt.funccall is an inline FuncCall, not wrapped in { FuncCall: … }.
  const call = node['funccall'] as Fields | undefined;
  if (call) funcCallHandler(a, call, scope);
};

const prepareHandler: NodeHandler = (a, node, scope) => {
  a.setKind('prepare', scope);
  a.namesChanged.push({ of: 'statement', name: typeof node['name'] === 'string' ? node['name'] : null });
  // Judged as if it ran: the statement is what a later EXECUTE would run.
  a.analyzeTopLevel(node['query'] as Fields | undefined, scope);
};

const executeHandler: NodeHandler = (a, node, scope) => {
  a.setKind('execute', scope);
  a.addReason('prepared_statement',
    `EXECUTE ${String(node['name'] ?? '')} runs a statement prepared earlier with SQL PREPARE, whose text is not in ` +
    'this message');
  a.walk(node['params'], scope);
};

const lockHandler: NodeHandler = (a, node, scope) => {
  a.setKind('utility', scope);
  // Mode 1 is ACCESS SHARE (what a SELECT takes); anything stronger blocks writers and needs write privileges.
  const blocksWriters = Number(node['mode'] ?? 8) > 1;
  if (blocksWriters) a.markWrite(scope);
  walkTablesAs(a, node['relations'], blocksWriters ? 'write' : 'read', scope);
};

/** Maintenance statements that change the relations they name (VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH). */
const maintenanceHandler: NodeHandler = (a, node, scope) => {
  a.setKind('utility', scope);
  a.markWrite(scope);
  walkTablesAs(a, node, 'write', scope);
};

const simple = (kind: StatementKind, writes = false): NodeHandler => (a, node, scope) => {
  a.setKind(kind, scope);
  if (writes) a.markWrite(scope);
  a.walk(node, scope);
};

const HANDLERS: ReadonlyMap<string, NodeHandler> = new Map<string, NodeHandler>([
  ...NESTED_HANDLERS,
  ['CreateTableAsStmt', createTableAsHandler],
  ['ExplainStmt', explainHandler],
  ['CopyStmt', copyHandler],
  ['TruncateStmt', (a, node, scope) => {
    a.setKind('truncate', scope);
    a.markWrite(scope);
    walkTablesAs(a, node['relations'], 'write', scope);
  }],
  ['VariableSetStmt', variableSetHandler],
  ['VariableShowStmt', simple('set')],
  ['DiscardStmt', discardHandler],
  ['TransactionStmt', simple('transaction')],
  ['ConstraintsSetStmt', simple('transaction')],
  ['DoStmt', doHandler],
  ['CallStmt', callHandler],
  ['PrepareStmt', prepareHandler],
  ['DeallocateStmt', (a, node, scope) => {
    a.setKind('prepare', scope);
    a.namesChanged.push({ of: 'statement', name: node['isall'] !== true && typeof node['name'] === 'string' ? node['name'] : null });
  }],
  ['ExecuteStmt', executeHandler],
  ['DeclareCursorStmt', (a, node, scope) => {
    a.setKind('select', scope);
    a.namesChanged.push({ of: 'portal', name: typeof node['portalname'] === 'string' ? node['portalname'] : null });
    a.walk(node['query'], scope);
  }],
  ['FetchStmt', (a, node, scope) => {
    a.setKind('utility', scope);
    // MOVE returns no rows.
    if (node['ismove'] !== true) a.fetchesCursor = true;
  }],
  ['ClosePortalStmt', (a, node, scope) => {
    a.setKind('utility', scope);
    // CLOSE ALL has no name.
    a.namesChanged.push({ of: 'portal', name: typeof node['portalname'] === 'string' ? node['portalname'] : null });
  }],
  ['ListenStmt', simple('listen')],
  ['UnlistenStmt', simple('listen')],
  // NOTIFY reaches every session listening on the channel (applications included): treated as a write.
  ['NotifyStmt', simple('listen', true)],
  ['LockStmt', lockHandler],
  ['VacuumStmt', maintenanceHandler],
  ['ClusterStmt', maintenanceHandler],
  ['ReindexStmt', maintenanceHandler],
  ['RefreshMatViewStmt', maintenanceHandler],
  ['CheckPointStmt', simple('utility', true)],
  ['LoadStmt', (a, _node, scope) => {
    a.setKind('utility', scope);
    a.markWrite(scope);
    a.addReason('load_library', 'LOAD loads a shared library into the database server process');
  }],
  // Object privileges and role membership.
  ['GrantStmt', ddlHandler(byObjectType('objtype', 'alter'), 'grant')],
  ['AlterDefaultPrivilegesStmt', ddlHandler(fixed('other', 'alter'), 'grant')],
  ['GrantRoleStmt', ddlHandler(fixed('role', 'alter'), 'role')],
  ['CreateRoleStmt', ddlHandler(fixed('role', 'create'), 'role')],
  ['AlterRoleStmt', ddlHandler(fixed('role', 'alter'), 'role')],
  ['AlterRoleSetStmt', ddlHandler(fixed('role', 'alter'), 'role')],
  ['DropRoleStmt', ddlHandler(fixed('role', 'drop'), 'role')],
  ['DropOwnedStmt', ddlHandler(fixed('role', 'drop'), 'role')],
  ['ReassignOwnedStmt', ddlHandler(fixed('role', 'alter'), 'role')],
  // DDL.
  ['DropStmt', dropHandler],
  ['CreateStmt', ddlHandler(fixed('table', 'create'))],
  ['CreateForeignTableStmt', redefining(ddlHandler(fixed('foreign_table', 'create')))],
  ['ViewStmt', redefining(ddlHandler(fixed('view', 'create')))],
  ['IndexStmt', ddlHandler(fixed('index', 'create'))],
  ['CreateSchemaStmt', ddlHandler(fixed('schema', 'create'))],
  ['CreateExtensionStmt', ddlHandler(fixed('extension', 'create'))],
  ['AlterExtensionStmt', ddlHandler(fixed('extension', 'alter'))],
  ['AlterExtensionContentsStmt', ddlHandler(fixed('extension', 'alter'))],
  ['CreateFunctionStmt', ddlHandler((node) => [node['is_procedure'] === true ? 'procedure' : 'function', 'create'])],
  ['AlterFunctionStmt', ddlHandler(byObjectType('objtype', 'alter'))],
  ['CreateTrigStmt', ddlHandler(fixed('trigger', 'create'))],
  ['CreateEventTrigStmt', ddlHandler(fixed('event_trigger', 'create'))],
  ['AlterEventTrigStmt', ddlHandler(fixed('event_trigger', 'alter'))],
  ['CreateSeqStmt', ddlHandler(fixed('sequence', 'create'))],
  ['AlterSeqStmt', ddlHandler(fixed('sequence', 'alter'))],
  ['DefineStmt', namingType((node) => (node['kind'] === 'OBJECT_TYPE' ? lastName(node['defnames']) : undefined),
    ddlHandler(byObjectType('kind', 'create')))],
  ['CreateDomainStmt', namingType((node) => lastName(node['domainname']), ddlHandler(fixed('domain', 'create')))],
  ['AlterDomainStmt', ddlHandler(fixed('domain', 'alter'))],
  ['CompositeTypeStmt', namingType((node) => (node['typevar'] as Fields | undefined)?.['relname'] as string | undefined,
    ddlHandler(fixed('type', 'create')))],
  ['CreateEnumStmt', namingType((node) => lastName(node['typeName']), ddlHandler(fixed('type', 'create')))],
  ['CreateRangeStmt', namingType((node) => lastName(node['typeName']), ddlHandler(fixed('type', 'create')))],
  ['AlterEnumStmt', ddlHandler(fixed('type', 'alter'))],
  ['AlterTypeStmt', ddlHandler(fixed('type', 'alter'))],
  ['CreatePolicyStmt', ddlHandler(fixed('policy', 'create'))],
  ['AlterPolicyStmt', ddlHandler(fixed('policy', 'alter'))],
  ['RuleStmt', ruleHandler],
  ['CreatePLangStmt', ddlHandler(fixed('language', 'create'))],
  ['CreateFdwStmt', ddlHandler(fixed('foreign_data_wrapper', 'create'))],
  ['AlterFdwStmt', ddlHandler(fixed('foreign_data_wrapper', 'alter'))],
  ['CreateForeignServerStmt', ddlHandler(fixed('foreign_server', 'create'))],
  ['AlterForeignServerStmt', ddlHandler(fixed('foreign_server', 'alter'))],
  ['CreateUserMappingStmt', ddlHandler(fixed('user_mapping', 'create'))],
  ['AlterUserMappingStmt', ddlHandler(fixed('user_mapping', 'alter'))],
  ['DropUserMappingStmt', ddlHandler(fixed('user_mapping', 'drop'))],
  ['ImportForeignSchemaStmt', redefining(ddlHandler(fixed('foreign_table', 'create')))],
  ['CreateTableSpaceStmt', ddlHandler(fixed('tablespace', 'create'))],
  ['DropTableSpaceStmt', ddlHandler(fixed('tablespace', 'drop'))],
  ['AlterTableSpaceOptionsStmt', ddlHandler(fixed('tablespace', 'alter'))],
  ['AlterTableMoveAllStmt', ddlHandler(fixed('tablespace', 'alter'))],
  ['CreatedbStmt', ddlHandler(fixed('database', 'create'))],
  ['AlterDatabaseStmt', ddlHandler(fixed('database', 'alter'))],
  ['AlterDatabaseSetStmt', ddlHandler(fixed('database', 'alter'))],
  ['AlterDatabaseRefreshCollStmt', ddlHandler(fixed('database', 'alter'))],
  ['DropdbStmt', ddlHandler(fixed('database', 'drop'))],
  ['CreateAmStmt', ddlHandler(fixed('access_method', 'create'))],
  ['CreateOpClassStmt', ddlHandler(fixed('operator_class', 'create'))],
  ['CreateOpFamilyStmt', ddlHandler(fixed('operator_class', 'create'))],
  ['AlterOpFamilyStmt', ddlHandler(fixed('operator_class', 'alter'))],
  ['CreateStatsStmt', ddlHandler(fixed('statistics', 'create'))],
  ['AlterStatsStmt', ddlHandler(fixed('statistics', 'alter'))],
  ['CreateConversionStmt', ddlHandler(fixed('conversion', 'create'))],
  ['CreateCastStmt', ddlHandler(fixed('cast', 'create'))],
  ['CreateTransformStmt', ddlHandler(fixed('transform', 'create'))],
  ['CreatePublicationStmt', ddlHandler(fixed('publication', 'create'))],
  ['AlterPublicationStmt', ddlHandler(fixed('publication', 'alter'))],
  ['CreateSubscriptionStmt', ddlHandler(fixed('subscription', 'create'))],
  ['AlterSubscriptionStmt', ddlHandler(fixed('subscription', 'alter'))],
  ['DropSubscriptionStmt', ddlHandler(fixed('subscription', 'drop'))],
  ['AlterTSDictionaryStmt', ddlHandler(fixed('text_search', 'alter'))],
  ['AlterTSConfigurationStmt', ddlHandler(fixed('text_search', 'alter'))],
  ['AlterCollationStmt', ddlHandler(fixed('collation', 'alter'))],
  ['AlterOperatorStmt', ddlHandler(fixed('operator', 'alter'))],
  ['AlterSystemStmt', ddlHandler(fixed('system', 'alter'))],
  ['AlterTableStmt', ddlHandler(byObjectType('objtype', 'alter'))],
  ['ReplicaIdentityStmt', ddlHandler(fixed('table', 'alter'))],
  ['RenameStmt', redefining(ddlHandler((node) => [renamedObject(node), 'alter']))],
  ['AlterObjectSchemaStmt', redefining(ddlHandler(byObjectType('objectType', 'alter')))],
  ['AlterOwnerStmt', ddlHandler(byObjectType('objectType', 'alter'))],
  ['AlterObjectDependsStmt', ddlHandler(byObjectType('objectType', 'alter'))],
  ['CommentStmt', ddlHandler(byObjectType('objtype', 'alter'))],
  ['SecLabelStmt', ddlHandler(byObjectType('objtype', 'alter'))],
]);

// ---------------------------------------------------------------------------------------------------------------------
// Helpers over the JSON tree
// ---------------------------------------------------------------------------------------------------------------------

/** The relation-like object types DROP names as name lists. */
const RELATION_OBJECTS: ReadonlySet<DdlObject> = new Set([
  'table', 'view', 'materialized_view', 'index', 'sequence', 'foreign_table',
]);

const OBJECT_TYPE_NAMES: Readonly<Record<string, DdlObject>> = {
  MATVIEW: 'materialized_view',
  FOREIGN_SERVER: 'foreign_server',
  FDW: 'foreign_data_wrapper',
  ROUTINE: 'function',
  OPCLASS: 'operator_class',
  OPFAMILY: 'operator_class',
  AMOP: 'operator_class',
  AMPROC: 'operator_class',
  TSCONFIGURATION: 'text_search',
  TSDICTIONARY: 'text_search',
  TSPARSER: 'text_search',
  TSTEMPLATE: 'text_search',
  STATISTIC_EXT: 'statistics',
  LARGEOBJECT: 'large_object',
  TABCONSTRAINT: 'constraint',
  DOMCONSTRAINT: 'constraint',
  ATTRIBUTE: 'type',
  PUBLICATION_NAMESPACE: 'publication',
  PUBLICATION_REL: 'publication',
};

/** `OBJECT_TABLE` → `table`, with PostgreSQL's abbreviations spelled out. */
function ddlObjectOf(objectType: unknown): DdlObject {
  if (typeof objectType !== 'string') return 'other';
  const bare = objectType.replace(/^OBJECT_/, '');
  const named = OBJECT_TYPE_NAMES[bare] ?? bare.toLowerCase();
  return (DDL_OBJECTS as readonly string[]).includes(named) ? (named as DdlObject) : 'other';
}

/** ALTER TABLE … RENAME COLUMN is a change to the table; RENAME of a trigger or policy to those. */
function renamedObject(node: Fields): DdlObject {
  const renamed = ddlObjectOf(node['renameType']);
  if (renamed === 'column' || renamed === 'constraint') return ddlObjectOf(node['relationType']);
  return renamed;
}

function singleEntry(node: Fields | undefined): [string | undefined, Fields | undefined] {
  if (node === undefined) return [undefined, undefined];
  for (const key in node) return [key, node[key] as Fields];
  return [undefined, undefined];
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** The RangeVar of a list item: `{ RangeVar: {...} }`, or inline fields with relname. */
function rangeVarOf(item: unknown): Fields | undefined {
  if (item === null || typeof item !== 'object') return undefined;
  const fields = item as Fields;
  if (typeof fields['relname'] === 'string') return fields;
  const wrapped = fields['RangeVar'];
  return wrapped !== null && typeof wrapped === 'object' ? (wrapped as Fields) : undefined;
}

/** Walks `value` recording every RangeVar below it with `access` (used for the relations a statement changes). */
function walkTablesAs(a: StatementAnalysis, value: unknown, access: 'read' | 'write', scope: Scope): void {
  if (Array.isArray(value)) {
    for (const item of value) walkTablesAs(a, item, access, scope);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const node = value as Fields;
  if (typeof node['relname'] === 'string') {
    a.addTable(node, access, scope);
    return;
  }
  for (const key in node) {
    const child = node[key];
    if (child === null || typeof child !== 'object') continue;
    const handler = NESTED_HANDLERS.get(key);
    if (handler) handler(a, child as Fields, scope);
    else walkTablesAs(a, child, access, scope);
  }
}

/** `{ List: { items: [String, String] } }` → { schema, name }. */
function qualifiedName(list: unknown): { schema: string | null; name: string } | undefined {
  const parts = stringParts((list as Fields | undefined)?.['items']);
  const name = parts[parts.length - 1];
  if (name === undefined) return undefined;
  return { schema: parts.length > 1 ? parts[parts.length - 2]! : null, name };
}

function stringParts(items: unknown): string[] {
  return asArray(items)
    .map((item) => ((item as Fields)['String'] as Fields | undefined)?.['sval'])
    .filter((part): part is string => typeof part === 'string');
}

function functionNameOf(funcname: unknown): FunctionName | undefined {
  const parts = stringParts(funcname);
  const name = parts[parts.length - 1];
  if (name === undefined) return undefined;
  return { schema: parts.length > 1 ? parts[parts.length - 2]! : null, name };
}

/** A literal's text: `'x'`, `42`, `1.5`, `true`; undefined when the node is not a constant. */
function constantText(node: unknown): string | undefined {
  const text = literalText(node);
  if (text !== undefined) noteLiteralRead();
  return text;
}

/**
 * The FuncCall of a SELECT that is nothing but one function call — no FROM, WHERE, LIMIT, set operation or other
 * clause, one output column — so the call runs exactly once when the statement runs; undefined for any other SELECT.
 */
function bareSelectCall(select: Fields): Fields | undefined {
  for (const key in select) {
    if (key === 'targetList' || (key === 'op' && select[key] === 'SETOP_NONE') ||
      (key === 'limitOption' && select[key] === 'LIMIT_OPTION_DEFAULT')) continue;
    return undefined;
  }
  const targets = asArray(select['targetList']);
  if (targets.length !== 1) return undefined;
  const target = (targets[0] as Fields)['ResTarget'] as Fields | undefined;
  return (target?.['val'] as Fields | undefined)?.['FuncCall'] as Fields | undefined;
}

/** A boolean as PostgreSQL reads one (parse_bool: a prefix of true/false/yes/no, on/off, 1/0), or undefined. */
function booleanText(text: string | undefined): boolean | undefined {
  if (text === undefined) return undefined;
  const value = text.trim().toLowerCase();
  if (value === '') return undefined;
  if ('true'.startsWith(value) || 'yes'.startsWith(value) || value === 'on' || value === '1') return true;
  if ('false'.startsWith(value) || 'no'.startsWith(value) || value === 'of' || value === 'off' || value === '0') return false;
  return undefined;
}

function literalText(node: unknown): string | undefined {
  if (node === null || typeof node !== 'object') return undefined;
  const fields = node as Fields;
  const constant = (fields['A_Const'] ?? fields['String'] ?? fields['Integer'] ?? fields['Boolean'] ?? fields['Float']) as
    | Fields
    | undefined;
  if (constant === undefined) {
    // A type cast around a constant ('x'::text) keeps its value.
    const cast = fields['TypeCast'] as Fields | undefined;
    return cast ? literalText(cast['arg']) : undefined;
  }
  if (typeof constant['sval'] === 'string') return constant['sval'];
  const sval = constant['sval'] as Fields | undefined;
  if (sval && typeof sval['sval'] === 'string') return sval['sval'];
  const ival = constant['ival'] as Fields | number | undefined;
  if (typeof ival === 'number') return String(ival);
  if (ival !== undefined) return String(ival['ival'] ?? 0);
  const fval = constant['fval'] as Fields | undefined;
  if (fval && typeof fval['fval'] === 'string') return fval['fval'];
  if (constant['boolval'] !== undefined) {
    const boolval = constant['boolval'];
    return String(typeof boolval === 'boolean' ? boolval : (boolval as Fields)['boolval'] === true);
  }
  return undefined;
}

/** `DefElem` options by name (DO's language/as, EXPLAIN's options). */
function defElems(list: unknown): Map<string, unknown> {
  const options = new Map<string, unknown>();
  for (const item of asArray(list)) {
    const element = (item as Fields)['DefElem'] as Fields | undefined;
    if (element && typeof element['defname'] === 'string') options.set(element['defname'], element['arg']);
  }
  return options;
}

/** An EXPLAIN option's boolean: absent means true (`EXPLAIN (ANALYZE)`); PostgreSQL's spellings otherwise. */
function booleanOption(arg: unknown): boolean {
  if (arg === undefined) return true;
  const text = constantText(arg)?.toLowerCase();
  return text === undefined || !['false', 'off', '0', 'no', 'f', 'n'].includes(text);
}

/** Whether a WHERE clause refers to any column (or WHERE CURRENT OF): one that does not cannot bound a write. */
function referencesColumn(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(referencesColumn);
  if (value === null || typeof value !== 'object') return false;
  for (const key in value as Fields) {
    if (key === 'ColumnRef' || key === 'CurrentOfExpr') return true;
    const child = (value as Fields)[key];
    if (child !== null && typeof child === 'object' && referencesColumn(child)) return true;
  }
  return false;
}

function effectKindOf(setting: string): SessionEffectKind {
  switch (setting) {
    case 'role':
      return 'set_role';
    case 'session_authorization':
      return 'session_authorization';
    case 'search_path':
      return 'search_path';
    case 'standard_conforming_strings':
      return 'standard_conforming_strings';
    case 'client_encoding':
      return 'client_encoding';
    default:
      return 'other_set';
  }
}

/**
 * A search_path value as the server reports or a config sets it ('"$user", public') → schemas. Uses the SQL lexer,
 * so quoted names keep their case and commas inside quotes stay inside.
 */
function splitSearchPath(value: string): string[] {
  try {
    return loadedParser()
      .scanSync(value)
      .tokens.filter((token) => token.text !== ',')
      .map((token) => (token.text.startsWith('"') ? token.text.slice(1, -1).replace(/""/g, '"') : token.text.toLowerCase()));
  } catch {
    return [value];
  }
}

/** Embeds a DO body in a CREATE FUNCTION, which is what the PL/pgSQL parser takes, with a dollar tag it cannot contain. */
function wrapAsFunction(body: string): string {
  let tag = '$dbgate$';
  for (let n = 0; body.includes(tag); n += 1) tag = `$dbgate${n}$`;
  return `CREATE FUNCTION dbgate_do_block() RETURNS void LANGUAGE plpgsql AS ${tag}${body}${tag}`;
}

/**
 * A PL/pgSQL assignment (`target := expression`, `a[i] = f(x)`) as a SELECT of both sides, so the functions in the
 * subscripts and the expression are found. The `:=` (or first top-level `=`) is located with the SQL lexer.
 */
function assignmentAsSelect(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  let depth = 0;
  for (const token of loadedParser().scanSync(text).tokens) {
    if (token.text === '(' || token.text === '[') depth += 1;
    else if (token.text === ')' || token.text === ']') depth -= 1;
    else if (depth === 0 && (token.text === ':=' || token.text === '=')) {
      // Scanner offsets are byte offsets into the UTF-8 text.
      return `SELECT ${bytes.subarray(0, token.start).toString('utf8')}, ${bytes.subarray(token.end).toString('utf8')}`;
    }
  }
  return `SELECT ${text}`;
}

/** Slices statement texts out of the message by the parser's byte offsets. */
class StatementSource {
  private readonly bytes: Buffer | undefined;
  constructor(private readonly sql: string) {
    // Offsets are UTF-8 byte offsets; for pure ASCII (the common case) they equal string indexes.
    this.bytes = Buffer.byteLength(sql, 'utf8') === sql.length ? undefined : Buffer.from(sql, 'utf8');
  }

  slice(start: number, length: number): string {
    if (this.bytes === undefined) return (length > 0 ? this.sql.slice(start, start + length) : this.sql.slice(start)).trim();
    const end = length > 0 ? start + length : this.bytes.length;
    return this.bytes.subarray(start, end).toString('utf8').trim();
  }
}

function unanalyzableStatement(text: string, message: string): StatementInfo {
  return {
    kind: 'unknown',
    kinds: ['unknown'],
    writes: true,
    tables: [],
    functions: [],
    unknownFunctions: [],
    dangerousFunctions: [],
    hasWhere: null,
    unanalyzable: message,
    unanalyzableReasons: [{ cause: 'analysis_failed', message }],
    sessionEffects: [],
    inferenceColumns: [],
    outputs: null,
    text,
  };
}
