/**
 * Inference columns: the columns whose values a statement uses to choose, order, group, deduplicate or join rows.
 * A masked column used that way leaks what masking hides — `WHERE email = 'a@b.c'` tells whether that address
 * exists, `ORDER BY ssn` sorts by the hidden value, `count(DISTINCT email)` counts them, a join on it matches them —
 * so the policy denies it (`inference_protection`, policy.ts). This module only finds them, from the parse tree.
 *
 * What counts (the clause each is reported under):
 * - `where`: WHERE of SELECT/UPDATE/DELETE (subqueries' too), aggregate FILTER (WHERE …), MERGE's WHEN … AND, and the
 *   output of a subquery compared in any of these (`'a@b.c' IN (SELECT email …)`).
 * - `join`: JOIN … ON, USING, NATURAL (every column of both sides), MERGE … ON.
 * - `order_by`: ORDER BY (by expression, output name or position), an aggregate's own ORDER BY.
 * - `group_by`: GROUP BY, grouping sets, by expression, name or position.
 * - `distinct`: DISTINCT (every output column), DISTINCT ON, `count(DISTINCT …)`.
 * - `having`: HAVING.
 * - `window`: PARTITION BY and ORDER BY of window definitions, inline (`OVER (…)`) or named (`WINDOW w AS (…)`).
 * - `set_operation`: the output columns of UNION (without ALL — it deduplicates), INTERSECT and EXCEPT (they compare
 *   rows).
 * - `limit`: LIMIT / OFFSET / FETCH FIRST (their subqueries): the number of rows returned shows the value.
 * - `write`: the values a statement writes — INSERT's rows (VALUES or query), UPDATE's and ON CONFLICT's SET, MERGE's
 *   UPDATE SET and INSERT VALUES, the query of SELECT … INTO and CREATE TABLE … AS. A masked value written elsewhere
 *   could be read there in clear.
 * - `side_effect`: the arguments of functions whose effect is seen outside the masked values: an advisory lock's key
 *   (in pg_locks), a sleep's length, a notification's payload, a sequence's value, a setting's value, and the number
 *   of rows a set-returning function yields (`generate_series(1, ascii(ssn))`) (functions.ts, `argumentsShow`).
 * - `error`: the inputs of computations that can fail — a function outside functions.ts `NEVER_FAIL`, an operator
 *   other than comparisons, `||` and JSON access, a cast to anything but text, a pattern computed from columns — and
 *   of COALESCE whose arguments hold one; and what CASE and AND/OR decide on, which chooses what else runs: whether
 *   the statement fails, or how long it takes, shows the value (`SELECT 1 / (ascii(email) - 107)` fails exactly when
 *   the email starts with `k`; so does `CASE WHEN email LIKE 'k%' THEN 1 / 0 END`, and `CASE WHEN email LIKE 'k%'
 *   THEN <something slow> END` takes longer).
 *
 * References are resolved through the FROM lists in scope, without the catalog:
 * - `c.email` through the alias (or table name) it names, in the nearest query level that has it.
 * - an unqualified `email` against every relation of every enclosing query level — dbgate cannot know which table
 *   has the column, so it reports it for each (over-reporting a restriction is the safe direction).
 * - CTEs and subqueries in FROM by lineage: each output column maps to the table columns of its expression (a plain
 *   reference, or every reference inside a function, cast, operator, CASE, subquery…), through column aliases,
 *   nested CTEs, set operations and RETURNING.
 * - what cannot be named is reported as column `*` of its table — "some column of customers": a whole-row reference
 *   (`WHERE c::text LIKE …`), `c.*`, `SELECT DISTINCT *`, NATURAL JOIN, a position that falls on a `*`, columns renamed
 *   by an alias list on a table (`customers c(a, b, e)`). The policy treats `*` as every masked column of that table.
 * Functions in FROM (`unnest(…)`, `jsonb_to_recordset(…)`) pass every reference in their arguments to every column.
 */

import { argumentsShow, callNeverFails } from './functions.js';
import { noteLiteralRead } from './literal-reads.js';

export const INFERENCE_CLAUSES = [
  'where', 'join', 'order_by', 'group_by', 'distinct', 'having', 'window', 'set_operation', 'limit', 'write',
  'side_effect', 'error',
] as const;
export type InferenceClause = (typeof INFERENCE_CLAUSES)[number];

/** A table column a statement uses in a clause. `column` is `*` when dbgate cannot tell which column of the table. */
export interface InferenceColumn {
  /** null when the statement did not qualify the table (it resolves through the search_path). */
  schema: string | null;
  table: string;
  column: string;
  clause: InferenceClause;
  /**
   * Set by the policy (target-catalog.ts) on a column the statement reaches through a view or under a new name: how
   * the statement named it, for messages (`contacts.email (public.customers.email behind the view)`).
   */
  via?: string;
}

type Fields = Record<string, unknown>;

/** A table column, or `*` = any column of the table. */
interface Source {
  schema: string | null;
  table: string;
  column: string;
  /** The value reaches the output through an expression (not as the column itself). Only output lineage uses it. */
  computed?: boolean;
  /**
   * The value reaches the output unchanged but through a set operation or a scalar subquery, which PostgreSQL does
   * not attribute to the table column in RowDescription. Only output lineage uses it.
   */
  detached?: boolean;
}

/** What a FROM item is, for resolving column names. */
type Relation =
  | { kind: 'table'; schema: string | null; name: string }
  | {
      kind: 'derived';
      /** Output column name → the table columns it derives from. */
      columns: Map<string, Source[]>;
      /** Relations whose columns pass through under their own names (`SELECT *`, `SELECT c.*`). */
      stars: Relation[];
      /** Sources every column name may derive from (functions in FROM, recursive CTEs). */
      any: Source[];
    };

interface FromItem {
  /** The name the query refers to it by (alias, else the table or function name); null for an unaliased subquery. */
  refname: string | null;
  relation: Relation;
}

/** One query level: its FROM items and its WITH clause. */
interface Level {
  parent: Level | undefined;
  items: FromItem[];
  ctes: Map<string, Relation> | undefined;
}

/** A select-list entry: a named column with its lineage, or a `*` over relations. */
interface Output {
  name: string | null;
  sources: Source[];
  star?: Relation[];
}

/**
 * `sources` of an output entry: as they are for a plain column reference; detached for a scalar subquery (its value
 * is the subquery's output, unchanged, but not attributed); computed for any other expression.
 */
function computedSources(value: Fields | undefined, sources: Source[]): Source[] {
  if (value?.['ColumnRef'] !== undefined) return sources;
  const sublink = value?.['SubLink'] as Fields | undefined;
  if (sublink !== undefined && sublink['subLinkType'] === 'EXPR_SUBLINK') return detachedSources(sources);
  return sources.map((source) => (source.computed ? source : { ...source, computed: true }));
}

function detachedSources(sources: readonly Source[]): Source[] {
  return sources.map((source) => (source.detached ? source : { ...source, detached: true }));
}

const NO_SOURCES: readonly Source[] = [];

/** A table column; `column` is `*` when dbgate cannot tell which column of the table. */
export type TableColumn = Pick<Source, 'schema' | 'table' | 'column'>;

/**
 * One column of the rows a statement sends back (its select list, its RETURNING), with the table columns its value
 * is computed from. PostgreSQL itself names the table and column of an output that is a plain column reference
 * (through subqueries and CTEs too) in RowDescription; for every other output it reports none, and this lineage is
 * what tells the gateway whether that value comes from a masked column (`length(email)`, `reverse(ssn)`, a UNION of
 * emails…).
 */
export interface OutputColumn {
  /** The table columns the value derives from (any reference inside any expression); empty when none. */
  sources: TableColumn[];
  /**
   * The value is computed (an expression, or a subquery's or set operation's computed column, or a whole row), not
   * a table column's value passed through.
   */
  computed: boolean;
  /** PostgreSQL names the table column in RowDescription: a column passed through plain references only. */
  attributed: boolean;
  /**
   * A `*` entry: it stands for as many result columns as its relations have, so the positions of the entries after it
   * are not known. Its sources are those of the derived relations it expands (subqueries, CTEs, functions); columns
   * of tables are reported with their table by PostgreSQL.
   */
  star: boolean;
}

/** What a statement returns to the client, when it returns rows of its own. */
export interface StatementOutputs {
  columns: OutputColumn[];
  /** DECLARE … CURSOR: the rows come later, through FETCH statements that do not show the query. */
  viaCursor: boolean;
}

/** Collects the inference columns of one statement (and any statements nested in it, as in DO blocks). */
export class InferenceCollector {
  private readonly found = new Map<string, InferenceColumn>();
  private outputs: StatementOutputs | null = null;

  /**
   * Walks a top-level statement node (`{ SelectStmt: {...} }`, `{ ExplainStmt: {...} }`, …). `returnsRows`: this is
   * the statement of a client message (not one nested in a DO block), so the lineage of its result columns is kept.
   */
  collect(statement: unknown, returnsRows = false): void {
    const node = statement as Fields | null | undefined;
    const select = node?.['SelectStmt'] as Fields | undefined;
    const cursor = (node?.['DeclareCursorStmt'] as Fields | undefined)?.['query'] as Fields | undefined;
    const cursorSelect = cursor?.['SelectStmt'] as Fields | undefined;
    const dml = ['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt'].find((key) => node?.[key] !== undefined);
    const createAs = node?.['CreateTableAsStmt'] as Fields | undefined;
    let outputs: Output[] | undefined;
    // SELECT … INTO and CREATE TABLE … AS write what they select into a new table.
    if (select !== undefined) outputs = this.select(select, undefined, select['intoClause'] !== undefined ? 'write' : null);
    else if (createAs !== undefined) this.expr(createAs['query'], undefined, 'write', null);
    else if (cursorSelect !== undefined) outputs = this.select(cursorSelect, undefined, null);
    else if (dml !== undefined) outputs = this.dml(dml, node![dml] as Fields, undefined);
    else this.expr(statement, undefined, null, null);
    if (returnsRows && outputs !== undefined) {
      this.outputs = { columns: outputs.map(outputColumn), viaCursor: cursorSelect !== undefined };
    }
  }

  result(): InferenceColumn[] {
    return [...this.found.values()];
  }

  /** The lineage of the top-level statement's result columns; null when it returns no rows of its own. */
  outputColumns(): StatementOutputs | null {
    return this.outputs;
  }

  // --- reporting --------------------------------------------------------------------------------------------------

  private report(sources: readonly Source[], clause: InferenceClause): void {
    for (const source of sources) {
      const key = `${clause}\u0000${source.schema ?? ''}\u0000${source.table}\u0000${source.column}`;
      if (!this.found.has(key)) {
        this.found.set(key, { schema: source.schema, table: source.table, column: source.column, clause });
      }
    }
  }

  private reportOutputs(outputs: readonly Output[], clause: InferenceClause): void {
    for (const output of outputs) {
      this.report(output.sources, clause);
      if (output.star) for (const relation of output.star) this.report(allSources(relation), clause);
    }
  }

  // --- expressions ------------------------------------------------------------------------------------------------

  /**
   * Walks an expression (or any subtree): resolves column references in `level`, reports them under `clause` when it
   * is not null, and appends them to `out` (the expression's lineage) when given. Statements found below (subqueries,
   * EXPLAIN's statement, COPY's query…) are analysed as query levels of their own.
   */
  private expr(value: unknown, level: Level | undefined, clause: InferenceClause | null, out: Source[] | null): void {
    if (Array.isArray(value)) {
      for (const item of value) this.expr(item, level, clause, out);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const node = value as Fields;
    for (const key in node) {
      const child = node[key];
      if (child === null || typeof child !== 'object') continue;
      const fields = child as Fields;
      switch (key) {
        case 'ColumnRef': {
          const sources = this.resolveRef(fields, level);
          if (clause !== null) this.report(sources, clause);
          if (out !== null) for (const source of sources) out.push(source);
          break;
        }
        case 'SelectStmt': {
          const outputs = this.select(fields, level, clause);
          if (out !== null) pushOutputs(out, outputs);
          break;
        }
        case 'InsertStmt':
        case 'UpdateStmt':
        case 'DeleteStmt':
        case 'MergeStmt': {
          const outputs = this.dml(key, fields, level);
          if (clause !== null) this.reportOutputs(outputs, clause);
          if (out !== null) pushOutputs(out, outputs);
          break;
        }
        case 'SubLink': {
          this.expr(fields['testexpr'], level, clause, out);
          // EXISTS ignores what its subquery selects; IN / ANY / ALL / scalar subqueries compare or return it.
          const exists = fields['subLinkType'] === 'EXISTS_SUBLINK';
          const subselect = (fields['subselect'] as Fields | undefined)?.['SelectStmt'] as Fields | undefined;
          if (subselect !== undefined) {
            const outputs = this.select(subselect, level, exists ? null : clause);
            if (out !== null && !exists) pushOutputs(out, outputs);
          } else {
            this.expr(fields['subselect'], level, exists ? null : clause, exists ? null : out);
          }
          break;
        }
        case 'FuncCall':
          this.funcCall(fields, level, clause, out);
          break;
        case 'A_Expr':
        case 'TypeCast':
        case 'XmlExpr':
        case 'XmlSerialize':
          if (nodeMayFail(key, fields)) this.fallible(child, level, clause, out);
          else this.expr(child, level, clause, out);
          break;
        case 'CaseExpr':
          this.caseExpr(fields, level, clause, out);
          break;
        case 'BoolExpr':
          // AND/OR evaluate their operands until one decides: how long that takes, and whether a later operand
          // fails, shows the earlier ones. (In a clause that reports its columns anyway, WHERE say, that says it.)
          if (clause === null || mayFail(child)) this.fallible(child, level, clause, out);
          else this.expr(child, level, clause, out);
          break;
        case 'CoalesceExpr':
          // Only NULLs decide which arguments are evaluated (and NULLs stay visible through masking): only an
          // argument that can fail shows anything.
          if (mayFail(child)) this.fallible(child, level, clause, out);
          else this.expr(child, level, clause, out);
          break;
        case 'WindowDef':
          this.windowDef(fields, level);
          break;
        default:
          this.expr(child, level, clause, out);
      }
    }
  }

  private funcCall(node: Fields, level: Level | undefined, clause: InferenceClause | null, out: Source[] | null): void {
    const name = stringList(node['funcname']).at(-1);
    if (name !== undefined && argumentsShow(name)) {
      // `pg_advisory_lock(ssn::bigint)`, then `SELECT objid FROM pg_locks`: the value leaves past masking.
      const args: Source[] = [];
      this.expr(node['args'], level, clause, args);
      this.report(args, 'side_effect');
      if (out !== null) for (const source of args) out.push(source);
    } else if (node['agg_distinct'] === true) {
      // count(DISTINCT email) counts the distinct hidden values.
      const args: Source[] = [];
      this.expr(node['args'], level, clause, args);
      this.report(args, 'distinct');
      if (out !== null) for (const source of args) out.push(source);
    } else if (callMayFail(node)) {
      this.fallible(node['args'], level, clause, out);
    } else if (name?.toLowerCase() === 'count') {
      // count(email) counts the non-NULL values, which masking shows anyway (NULLs stay NULL): not a value of them.
      this.expr(node['args'], level, clause, null);
    } else {
      this.expr(node['args'], level, clause, out);
    }
    if (node['agg_order'] !== undefined) this.expr(node['agg_order'], level, 'order_by', null);
    if (node['agg_filter'] !== undefined) this.expr(node['agg_filter'], level, 'where', null);
    if (node['over'] !== undefined) this.windowDef(node['over'] as Fields, level);
  }

  /**
   * CASE: the values it decides on choose which branch runs, so how long it takes — and whether the branch fails —
   * shows them; they are reported under `error`. The branches' values are its lineage, reported too when a branch
   * can fail.
   */
  private caseExpr(node: Fields, level: Level | undefined, clause: InferenceClause | null, out: Source[] | null): void {
    const decided: Source[] = [];
    const results: Source[] = [];
    this.expr(node['arg'], level, clause, decided);
    for (const branch of asArray(node['args'])) {
      const when = (branch as Fields)['CaseWhen'] as Fields | undefined;
      this.expr(when?.['expr'], level, clause, decided);
      this.expr(when?.['result'], level, clause, results);
    }
    this.expr(node['defresult'], level, clause, results);
    if (clause === null) this.report(decided, 'error');
    if (mayFail(node)) this.report([...decided, ...results], 'error');
    if (out !== null) for (const source of [...decided, ...results]) out.push(source);
  }

  /** Walks a computation that can fail (see `error` in the module comment): the columns it reads are reported so. */
  private fallible(value: unknown, level: Level | undefined, clause: InferenceClause | null, out: Source[] | null): void {
    const inputs: Source[] = [];
    this.expr(value, level, clause, inputs);
    this.report(inputs, 'error');
    if (out !== null) for (const source of inputs) out.push(source);
  }

  private windowDef(node: Fields, level: Level | undefined): void {
    this.expr(node['partitionClause'], level, 'window', null);
    this.expr(node['orderClause'], level, 'window', null);
    // Frame offsets (ROWS BETWEEN n PRECEDING …) can hold subqueries.
    this.expr(node['startOffset'], level, null, null);
    this.expr(node['endOffset'], level, null, null);
  }

  // --- column references ------------------------------------------------------------------------------------------

  private resolveRef(ref: Fields, level: Level | undefined): readonly Source[] {
    const fields = ref['fields'];
    if (!Array.isArray(fields) || fields.length === 0) return NO_SOURCES;
    const names: string[] = [];
    let star = false;
    for (const field of fields as Fields[]) {
      const name = (field['String'] as Fields | undefined)?.['sval'];
      if (typeof name === 'string') names.push(name);
      else if (field['A_Star'] !== undefined) star = true;
    }
    const sources: Source[] = [];
    if (star) {
      if (names.length === 0) {
        // A bare `*` in an expression context (`count(*)` is agg_star, not a ColumnRef): every relation of the level.
        for (const item of level?.items ?? []) sources.push(...allSources(item.relation));
      } else {
        const item = findItem(level, names);
        if (item) sources.push(...allSources(item.relation));
      }
      return sources;
    }
    if (names.length === 1) {
      // Unqualified: a column of any relation in scope, or a whole-row reference to a relation of that name.
      const name = names[0]!;
      for (let l = level; l !== undefined; l = l.parent) {
        for (const item of l.items) {
          resolveColumn(item.relation, name, sources);
          if (item.refname === name) sources.push(...allSources(item.relation));
        }
      }
      return sources;
    }
    const column = names[names.length - 1]!;
    const item = findItem(level, names.slice(0, -1));
    if (item) resolveColumn(item.relation, column, sources);
    // a.b.c is schema.table.column or, for a composite column, table.column.field: both, to be safe.
    if (names.length >= 3) {
      const composite = findItem(level, names.slice(0, 1));
      if (composite) resolveColumn(composite.relation, names[1]!, sources);
    }
    return sources;
  }

  // --- queries ----------------------------------------------------------------------------------------------------

  /**
   * Analyses a SELECT (fields of a SelectStmt) as a query level below `parent`. `outputClause`: the clause its output
   * is used in (a subquery compared in a WHERE…), or null. Returns its output columns with their lineage.
   */
  private select(node: Fields, parent: Level | undefined, outputClause: InferenceClause | null): Output[] {
    const level: Level = { parent, items: [], ctes: undefined };
    if (node['withClause'] !== undefined) this.withClause(node['withClause'] as Fields, level);

    const op = node['op'];
    if (op !== undefined && op !== 'SETOP_NONE') {
      const left = this.select(node['larg'] as Fields, level, outputClause);
      const right = this.select(node['rarg'] as Fields, level, outputClause);
      const outputs = mergePositional(left, right);
      if (op !== 'SETOP_UNION' || node['all'] !== true) this.reportOutputs(outputs, 'set_operation');
      // ORDER BY of a set operation names its output columns.
      const result: Level = { parent: level, items: [{ refname: null, relation: derivedOf(outputs) }], ctes: undefined };
      for (const sort of asArray(node['sortClause'])) this.outputReference(sortNode(sort), outputs, result, 'order_by', true);
      this.expr(node['limitCount'], level, 'limit', null);
      this.expr(node['limitOffset'], level, 'limit', null);
      return outputs;
    }

    if (node['valuesLists'] !== undefined) {
      const outputs: Output[] = [];
      for (const row of asArray(node['valuesLists'])) {
        const items = asArray(((row as Fields)['List'] as Fields | undefined)?.['items']);
        items.forEach((item, index) => {
          const output = (outputs[index] ??= { name: `column${index + 1}`, sources: [] });
          this.expr(item, level, outputClause, output.sources);
        });
      }
      return outputs;
    }

    for (const item of asArray(node['fromClause'])) this.fromItem(item, level);
    this.expr(node['whereClause'], level, 'where', null);

    const outputs: Output[] = [];
    for (const entry of asArray(node['targetList'])) {
      const target = (entry as Fields)['ResTarget'] as Fields | undefined;
      if (target === undefined) continue;
      const value = target['val'] as Fields | undefined;
      const starOf = starRelations(value, level);
      if (starOf !== undefined) {
        const output: Output = { name: null, sources: [], star: starOf };
        if (outputClause !== null) this.reportOutputs([output], outputClause);
        outputs.push(output);
        continue;
      }
      const name = typeof target['name'] === 'string' ? target['name'] : columnNameOf(value);
      const output: Output = { name, sources: [] };
      this.expr(value, level, outputClause, output.sources);
      output.sources = computedSources(value, output.sources);
      outputs.push(output);
    }

    const distinct = asArray(node['distinctClause']);
    if (distinct.length === 1 && isEmptyNode(distinct[0])) this.reportOutputs(outputs, 'distinct');
    else for (const item of distinct) this.outputReference(item, outputs, level, 'distinct', true);

    for (const item of asArray(node['groupClause'])) this.groupItem(item, outputs, level);
    this.expr(node['havingClause'], level, 'having', null);
    for (const item of asArray(node['windowClause'])) this.expr(item, level, null, null);
    for (const sort of asArray(node['sortClause'])) this.outputReference(sortNode(sort), outputs, level, 'order_by', true);
    this.expr(node['limitCount'], level, 'limit', null);
    this.expr(node['limitOffset'], level, 'limit', null);
    this.expr(node['lockingClause'], level, null, null);
    return outputs;
  }

  /** GROUP BY items, including GROUPING SETS / ROLLUP / CUBE. Input columns first, then output names (PostgreSQL). */
  private groupItem(item: unknown, outputs: readonly Output[], level: Level): void {
    const set = (item as Fields | undefined)?.['GroupingSet'] as Fields | undefined;
    if (set !== undefined) {
      for (const inner of asArray(set['content'])) this.groupItem(inner, outputs, level);
      return;
    }
    this.outputReference(item, outputs, level, 'group_by', false);
  }

  /**
   * An ORDER BY / DISTINCT ON / GROUP BY item: a position (`ORDER BY 2`), an output column name, or an expression over
   * the input columns. `preferOutput`: a name that matches an output column means that column (ORDER BY, DISTINCT ON);
   * otherwise (GROUP BY) the input column comes first, so both are reported.
   */
  private outputReference(
    item: unknown,
    outputs: readonly Output[],
    level: Level,
    clause: InferenceClause,
    preferOutput: boolean,
  ): void {
    const position = integerConstant(item);
    if (position !== undefined) {
      const starBefore = outputs.slice(0, position).some((output) => output.star !== undefined);
      if (starBefore) this.reportOutputs(outputs, clause);
      else if (outputs[position - 1] !== undefined) this.reportOutputs([outputs[position - 1]!], clause);
      return;
    }
    const name = bareName(item);
    if (name !== undefined) {
      const named = outputs.filter((output) => output.name === name);
      if (named.length > 0) {
        this.reportOutputs(named, clause);
        if (preferOutput) return;
      }
    }
    this.expr(item, level, clause, null);
  }

  /** A WITH clause: each CTE's output lineage becomes a relation of `level`, visible to the CTEs after it. */
  private withClause(clause: Fields, level: Level): void {
    const ctes = new Map<string, Relation>();
    level.ctes = ctes;
    const recursive = clause['recursive'] === true;
    for (const item of asArray(clause['ctes'])) {
      const cte = (item as Fields)['CommonTableExpr'] as Fields | undefined;
      if (cte === undefined || typeof cte['ctename'] !== 'string') continue;
      const name = cte['ctename'];
      const aliases = stringList(cte['aliascolnames']);
      const query = cte['ctequery'] as Fields | undefined;
      const select = query?.['SelectStmt'] as Fields | undefined;
      if (recursive && select !== undefined && select['op'] !== undefined && select['op'] !== 'SETOP_NONE') {
        // The recursive term refers to the CTE itself: first its non-recursive term, then the whole; every column
        // then derives from every source (positions can rotate through the recursion).
        const anchor = this.select(select['larg'] as Fields, level, null);
        ctes.set(name, withAliases(anchor, aliases));
        const whole = this.select(select, level, null);
        const collected: Source[] = [];
        pushOutputs(collected, anchor);
        pushOutputs(collected, whole);
        ctes.set(name, { kind: 'derived', columns: new Map(), stars: [], any: computedSources(undefined, collected) });
        continue;
      }
      const outputs: Output[] = [];
      this.statementOutputs(query, level, outputs);
      ctes.set(name, withAliases(outputs, aliases));
    }
  }

  /** The output of a statement used as a relation (CTE body): a SELECT's columns, a DML statement's RETURNING. */
  private statementOutputs(statement: Fields | undefined, level: Level, outputs: Output[]): void {
    if (statement === undefined) return;
    for (const key in statement) {
      const node = statement[key] as Fields;
      if (key === 'SelectStmt') outputs.push(...this.select(node, level, null));
      else if (key === 'InsertStmt' || key === 'UpdateStmt' || key === 'DeleteStmt' || key === 'MergeStmt') {
        outputs.push(...this.dml(key, node, level));
      } else this.expr(statement, level, null, null);
      return;
    }
  }

  /** INSERT / UPDATE / DELETE / MERGE: their WHERE (and MERGE's ON, WHEN … AND) count; returns RETURNING's columns. */
  private dml(kind: string, node: Fields, parent: Level | undefined): Output[] {
    const level: Level = { parent, items: [], ctes: undefined };
    if (node['withClause'] !== undefined) this.withClause(node['withClause'] as Fields, level);
    const relation = node['relation'] as Fields | undefined;
    if (kind === 'InsertStmt') {
      // The inserted rows' query does not see the target table.
      this.expr(node['selectStmt'], level, 'write', null);
      if (relation) this.fromItem({ RangeVar: relation }, level);
      const conflict = node['onConflictClause'] as Fields | undefined;
      if (conflict !== undefined) {
        this.expr(conflict['whereClause'], level, 'where', null);
        this.expr(conflict['targetList'], level, 'write', null);
        this.expr(conflict['infer'], level, null, null);
      }
    } else {
      if (relation) this.fromItem({ RangeVar: relation }, level);
      for (const item of asArray(node['fromClause'])) this.fromItem(item, level);
      for (const item of asArray(node['usingClause'])) this.fromItem(item, level);
      if (node['sourceRelation'] !== undefined) this.fromItem(node['sourceRelation'], level);
      this.expr(node['whereClause'], level, 'where', null);
      this.expr(node['joinCondition'], level, 'join', null);
      this.expr(node['targetList'], level, 'write', null);
      for (const item of asArray(node['mergeWhenClauses'])) {
        const when = (item as Fields)['MergeWhenClause'] as Fields | undefined;
        if (when === undefined) continue;
        this.expr(when['condition'], level, 'where', null);
        this.expr(when['targetList'], level, 'write', null);
        this.expr(when['values'], level, 'write', null);
      }
    }
    const outputs: Output[] = [];
    // PostgreSQL 18 parse trees: returningClause.exprs (RETURNING OLD/NEW); earlier ones: returningList.
    const returning = (node['returningClause'] as Fields | undefined)?.['exprs'] ?? node['returningList'];
    const target = level.items[0];
    if (returning !== undefined && target !== undefined) {
      // RETURNING old.email / new.email (PostgreSQL 18) name the target's row before and after.
      level.items.push({ refname: 'old', relation: target.relation }, { refname: 'new', relation: target.relation });
    }
    for (const entry of asArray(returning)) {
      const target = (entry as Fields)['ResTarget'] as Fields | undefined;
      if (target === undefined) continue;
      const value = target['val'] as Fields | undefined;
      const starOf = starRelations(value, level);
      if (starOf !== undefined) {
        outputs.push({ name: null, sources: [], star: starOf });
        continue;
      }
      const output: Output = { name: typeof target['name'] === 'string' ? target['name'] : columnNameOf(value), sources: [] };
      this.expr(value, level, null, output.sources);
      output.sources = computedSources(value, output.sources);
      outputs.push(output);
    }
    return outputs;
  }

  // --- FROM -------------------------------------------------------------------------------------------------------

  /** Adds a FROM item (and, for joins, both sides) to `level`; returns the items it added. */
  private fromItem(item: unknown, level: Level): FromItem[] {
    if (item === null || typeof item !== 'object') return [];
    const wrapper = item as Fields;
    const rangeVar = wrapper['RangeVar'] as Fields | undefined;
    if (rangeVar !== undefined) return [this.add(level, rangeVarItem(rangeVar, level))];

    const subselect = wrapper['RangeSubselect'] as Fields | undefined;
    if (subselect !== undefined) {
      const alias = subselect['alias'] as Fields | undefined;
      const outputs: Output[] = [];
      this.statementOutputs(subselect['subquery'] as Fields | undefined, level, outputs);
      return [this.add(level, { refname: aliasName(alias), relation: withAliases(outputs, stringList(alias?.['colnames'])) })];
    }

    const join = wrapper['JoinExpr'] as Fields | undefined;
    if (join !== undefined) {
      const left = this.fromItem(join['larg'], level);
      const right = this.fromItem(join['rarg'], level);
      const sides = [...left, ...right];
      this.expr(join['quals'], level, 'join', null);
      const using = stringList(join['usingClause']);
      for (const column of using) {
        const sources: Source[] = [];
        for (const side of sides) resolveColumn(side.relation, column, sources);
        this.report(sources, 'join');
      }
      if (join['isNatural'] === true) for (const side of sides) this.report(allSources(side.relation), 'join');
      const added = [...sides];
      const usingAlias = aliasName(join['join_using_alias'] as Fields | undefined);
      if (usingAlias !== null) {
        const columns = new Map<string, Source[]>();
        for (const column of using) {
          const sources: Source[] = [];
          for (const side of sides) resolveColumn(side.relation, column, sources);
          columns.set(column, sources);
        }
        added.push(this.add(level, { refname: usingAlias, relation: { kind: 'derived', columns, stars: [], any: [] } }));
      }
      const alias = join['alias'] as Fields | undefined;
      if (alias !== undefined) {
        const joined: Relation = { kind: 'derived', columns: new Map(), stars: sides.map((side) => side.relation), any: [] };
        const relation = renamed(joined, stringList(alias['colnames']));
        added.push(this.add(level, { refname: aliasName(alias), relation }));
      }
      return added;
    }

    const sample = wrapper['RangeTableSample'] as Fields | undefined;
    if (sample !== undefined) {
      this.expr(sample['args'], level, null, null);
      this.expr(sample['repeatable'], level, null, null);
      return this.fromItem(sample['relation'], level);
    }

    // Functions in FROM, XMLTABLE, JSON_TABLE…: every column may derive from every reference in their arguments.
    for (const key in wrapper) {
      const node = wrapper[key] as Fields;
      const collected: Source[] = [];
      this.expr(node, level, null, collected);
      const any = computedSources(undefined, collected);
      const alias = node['alias'] as Fields | undefined;
      let refname = aliasName(alias);
      if (refname === null && key === 'RangeFunction') refname = firstFunctionName(node);
      return [this.add(level, { refname, relation: { kind: 'derived', columns: new Map(), stars: [], any } })];
    }
    return [];
  }

  private add(level: Level, item: FromItem): FromItem {
    level.items.push(item);
    return item;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Lineage helpers
// ---------------------------------------------------------------------------------------------------------------------

/** The table columns a column `name` of `relation` derives from, appended to `out`. */
function resolveColumn(relation: Relation, name: string, out: Source[]): void {
  if (relation.kind === 'table') {
    out.push({ schema: relation.schema, table: relation.name, column: name });
    return;
  }
  const sources = relation.columns.get(name);
  if (sources !== undefined) for (const source of sources) out.push(source);
  for (const star of relation.stars) resolveColumn(star, name, out);
  for (const source of relation.any) out.push(source);
}

/** Every table column `relation` can expose: `*` of its tables, and the lineage of its named columns. */
function allSources(relation: Relation): Source[] {
  if (relation.kind === 'table') return [{ schema: relation.schema, table: relation.name, column: '*' }];
  const out: Source[] = [];
  for (const sources of relation.columns.values()) for (const source of sources) out.push(source);
  for (const star of relation.stars) out.push(...allSources(star));
  for (const source of relation.any) out.push(source);
  return out;
}

/** An output's lineage for the result masker: a star keeps only what PostgreSQL will not report itself. */
function outputColumn(output: Output): OutputColumn {
  const sources: Source[] = [];
  if (output.star === undefined) sources.push(...output.sources);
  else for (const relation of output.star) if (relation.kind === 'derived') sources.push(...allSources(relation));
  // A whole-row reference (`SELECT c FROM customers c`: source column `*`) is not a table column either.
  const computed = sources.some((source) => source.computed === true || source.column === '*');
  const attributed = !computed && !sources.some((source) => source.detached === true);
  return { sources: dedupe(sources), computed, attributed, star: output.star !== undefined };
}

/** Distinct table columns, without the `computed` mark (OutputColumn.computed keeps it for the whole output). */
function dedupe(sources: readonly Source[]): TableColumn[] {
  const seen = new Map<string, TableColumn>();
  for (const { schema, table, column } of sources) seen.set(`${schema ?? ''}\u0000${table}\u0000${column}`, { schema, table, column });
  return [...seen.values()];
}

function pushOutputs(out: Source[], outputs: readonly Output[]): void {
  for (const output of outputs) {
    for (const source of output.sources) out.push(source);
    if (output.star) for (const relation of output.star) out.push(...allSources(relation));
  }
}

/** A relation whose columns are `outputs`, by name. */
function derivedOf(outputs: readonly Output[]): Relation {
  const columns = new Map<string, Source[]>();
  const stars: Relation[] = [];
  for (const output of outputs) {
    if (output.star) stars.push(...output.star);
    else if (output.name !== null) {
      const existing = columns.get(output.name);
      if (existing) existing.push(...output.sources);
      else columns.set(output.name, [...output.sources]);
    }
  }
  return { kind: 'derived', columns, stars, any: [] };
}

/** `outputs` renamed by a column alias list (`AS s(a, b)`, `WITH x(a, b)`): positionally when no `*` blurs positions. */
function withAliases(outputs: readonly Output[], aliases: readonly string[]): Relation {
  if (aliases.length === 0) return derivedOf(outputs);
  if (outputs.some((output) => output.star !== undefined)) return renamed(derivedOf(outputs), aliases);
  const renamedOutputs = outputs.map((output, index) =>
    index < aliases.length ? { name: aliases[index]!, sources: output.sources } : output,
  );
  return derivedOf(renamedOutputs);
}

/** A relation whose first columns are renamed, where dbgate cannot tell which column each alias was. */
function renamed(relation: Relation, aliases: readonly string[]): Relation {
  if (aliases.length === 0) return relation;
  const every = allSources(relation);
  const columns = new Map<string, Source[]>();
  for (const alias of aliases) columns.set(alias, every);
  return { kind: 'derived', columns, stars: [relation], any: [] };
}

/** UNION / INTERSECT / EXCEPT: column names from the left, lineage from both sides. */
function mergePositional(left: readonly Output[], right: readonly Output[]): Output[] {
  const blurred = left.some((output) => output.star) || right.some((output) => output.star);
  if (blurred) {
    // Positions are unknown: every output derives from everything either side selects.
    const collected: Source[] = [];
    pushOutputs(collected, left);
    pushOutputs(collected, right);
    const every = detachedSources(collected);
    return left.map((output) =>
      output.star ? { name: null, sources: every, star: output.star } : { name: output.name, sources: every },
    );
  }
  return left.map((output, index) => ({
    name: output.name,
    // PostgreSQL attributes no column of a set operation to a table.
    sources: detachedSources([...output.sources, ...(right[index]?.sources ?? [])]),
  }));
}

function rangeVarItem(rangeVar: Fields, level: Level): FromItem {
  const name = String(rangeVar['relname']);
  const schema = typeof rangeVar['schemaname'] === 'string' ? rangeVar['schemaname'] : null;
  const alias = rangeVar['alias'] as Fields | undefined;
  const refname = aliasName(alias) ?? name;
  let relation: Relation | undefined = schema === null ? findCte(level, name) : undefined;
  relation ??= { kind: 'table', schema, name };
  // `customers c(a, b, c)` renames the table's columns in catalog order, which dbgate does not know.
  return { refname, relation: renamed(relation, stringList(alias?.['colnames'])) };
}

function findCte(level: Level | undefined, name: string): Relation | undefined {
  for (let l = level; l !== undefined; l = l.parent) {
    const cte = l.ctes?.get(name);
    if (cte !== undefined) return cte;
  }
  return undefined;
}

/** The FROM item a qualifier names (`c`, `customers`, `public.customers`), in the nearest level that has one. */
function findItem(level: Level | undefined, qualifier: readonly string[]): FromItem | undefined {
  const name = qualifier[qualifier.length - 1]!;
  const schema = qualifier.length >= 2 ? qualifier[qualifier.length - 2]! : null;
  for (let l = level; l !== undefined; l = l.parent) {
    for (const item of l.items) {
      if (schema === null) {
        if (item.refname === name) return item;
      } else if (item.relation.kind === 'table' && item.relation.name === name && item.refname === name &&
        (item.relation.schema === null || item.relation.schema === schema)) {
        return item;
      }
    }
  }
  return undefined;
}

/** For `*` / `c.*` in a select list: the relations it expands; undefined when the entry is not a star. */
function starRelations(value: Fields | undefined, level: Level): Relation[] | undefined {
  const ref = value?.['ColumnRef'] as Fields | undefined;
  if (ref === undefined) return undefined;
  const fields = asArray(ref['fields']) as Fields[];
  if (fields.length === 0 || fields[fields.length - 1]!['A_Star'] === undefined) return undefined;
  if (fields.length === 1) return level.items.map((item) => item.relation);
  const item = findItem(level, stringList(fields.slice(0, -1)));
  return item ? [item.relation] : [];
}

/** PostgreSQL's name for an unnamed select-list entry (FigureColname, in part). */
function columnNameOf(value: Fields | undefined): string | null {
  if (value === undefined) return null;
  for (const key in value) {
    const node = value[key] as Fields;
    switch (key) {
      case 'ColumnRef': {
        const names = stringList(node['fields']);
        return names[names.length - 1] ?? null;
      }
      case 'TypeCast':
        return columnNameOf(node['arg'] as Fields | undefined) ??
          stringList((node['typeName'] as Fields | undefined)?.['names']).pop() ?? null;
      case 'FuncCall':
        return stringList(node['funcname']).pop() ?? null;
      case 'A_Indirection': {
        const indirection = asArray(node['indirection']);
        const last = indirection[indirection.length - 1] as Fields | undefined;
        const field = (last?.['String'] as Fields | undefined)?.['sval'];
        return typeof field === 'string' ? field : columnNameOf(node['arg'] as Fields | undefined);
      }
      case 'CaseExpr':
        return 'case';
      case 'SubLink': {
        const type = node['subLinkType'];
        if (type === 'EXISTS_SUBLINK') return 'exists';
        if (type === 'ARRAY_SUBLINK') return 'array';
        return '?column?';
      }
      default:
        return '?column?';
    }
  }
  return null;
}

function sortNode(sort: unknown): unknown {
  return ((sort as Fields | undefined)?.['SortBy'] as Fields | undefined)?.['node'] ?? sort;
}

/** `ORDER BY 2`: the position, 1-based. */
function integerConstant(item: unknown): number | undefined {
  const constant = (item as Fields | undefined)?.['A_Const'] as Fields | undefined;
  const ival = constant?.['ival'];
  if (ival === undefined) return undefined;
  const value = typeof ival === 'number' ? ival : (ival as Fields)['ival'];
  noteLiteralRead();
  // An A_Const of 0 carries no ival field at all: { ival: {} }.
  return typeof value === 'number' ? value : 0;
}

/** `ORDER BY name`: a single unqualified name. */
function bareName(item: unknown): string | undefined {
  const ref = (item as Fields | undefined)?.['ColumnRef'] as Fields | undefined;
  if (ref === undefined) return undefined;
  const fields = asArray(ref['fields']);
  if (fields.length !== 1) return undefined;
  const name = ((fields[0] as Fields)['String'] as Fields | undefined)?.['sval'];
  return typeof name === 'string' ? name : undefined;
}

function firstFunctionName(rangeFunction: Fields): string | null {
  const list = (asArray(rangeFunction['functions'])[0] as Fields | undefined)?.['List'] as Fields | undefined;
  const call = (asArray(list?.['items'])[0] as Fields | undefined)?.['FuncCall'] as Fields | undefined;
  return stringList(call?.['funcname']).pop() ?? null;
}

function aliasName(alias: Fields | undefined): string | null {
  return typeof alias?.['aliasname'] === 'string' ? alias['aliasname'] : null;
}

function isEmptyNode(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  for (const _key in value as Fields) return false;
  return true;
}

/** Operators that never fail on their operands: comparisons, `||`, JSON and containment access. */
const NEVER_FAILING_OPERATORS: ReadonlySet<string> = new Set([
  '=', '<>', '!=', '<', '>', '<=', '>=', '||', '->', '->>', '#>', '#>>', '?', '?|', '?&', '@>', '<@', '&&',
]);
/** Pattern-matching operators: they fail on a malformed pattern. */
const PATTERN_OPERATORS: ReadonlySet<string> = new Set(['~', '~*', '!~', '!~*', '~~', '~~*', '!~~', '!~~*']);

/**
 * Whether an operator expression (A_Expr) can fail on its operands' values: arithmetic can overflow or divide by zero,
 * a pattern computed from columns can be malformed; comparisons, IN, BETWEEN, IS DISTINCT FROM and NULLIF cannot.
 */
function operatorMayFail(node: Fields): boolean {
  const name = stringList(node['name']).at(-1);
  switch (node['kind']) {
    case 'AEXPR_OP':
      if (name !== undefined && PATTERN_OPERATORS.has(name)) return !isConstant(node['rexpr']);
      return name === undefined || !NEVER_FAILING_OPERATORS.has(name);
    case 'AEXPR_OP_ANY':
    case 'AEXPR_OP_ALL':
      return name === undefined || !NEVER_FAILING_OPERATORS.has(name);
    case 'AEXPR_LIKE':
    case 'AEXPR_ILIKE':
    case 'AEXPR_SIMILAR':
      return !isConstant(node['rexpr']);
    case 'AEXPR_DISTINCT':
    case 'AEXPR_NOT_DISTINCT':
    case 'AEXPR_NULLIF':
    case 'AEXPR_IN':
    case 'AEXPR_BETWEEN':
    case 'AEXPR_NOT_BETWEEN':
    case 'AEXPR_BETWEEN_SYM':
    case 'AEXPR_NOT_BETWEEN_SYM':
      return false;
    default:
      return true;
  }
}

/**
 * The built-in types a cast to never fails: text, varchar, char, name. A type of another schema with one of those names
 * could be a domain with a CHECK; creating one is refused (classify.ts `refuseShadowingType`), so an unqualified name
 * is the built-in.
 */
export const CAST_TARGET_TYPES: ReadonlySet<string> = new Set(['text', 'varchar', 'bpchar', 'name']);

/** Whether a cast (TypeCast) can fail: any cast but to a CAST_TARGET_TYPES type (and not to an array of one). */
function castMayFail(node: Fields): boolean {
  const typeName = node['typeName'] as Fields | undefined;
  const names = stringList(typeName?.['names']);
  if (asArray(typeName?.['arrayBounds']).length > 0) return true;
  if (names.length === 2 && names[0] !== 'pg_catalog') return true;
  return names.length === 0 || names.length > 2 || !CAST_TARGET_TYPES.has(names.at(-1)!);
}

/** Whether a function call (FuncCall) can fail on its arguments' values (functions.ts `callNeverFails`). */
function callMayFail(node: Fields): boolean {
  const name = stringList(node['funcname']).at(-1);
  return name === undefined || !callNeverFails(name, asArray(node['args']).map(isConstant));
}

/** A literal or a parameter (or one cast): a value the client chose, which cannot depend on the data. */
function isConstant(value: unknown): boolean {
  const node = value as Fields | undefined;
  if (node?.['A_Const'] !== undefined || node?.['ParamRef'] !== undefined) return true;
  const cast = node?.['TypeCast'] as Fields | undefined;
  return cast !== undefined && isConstant(cast['arg']);
}

/** Whether the node `{ [key]: fields }` itself can fail on the values it computes on (see `error` in the module comment). */
function nodeMayFail(key: string, fields: Fields): boolean {
  switch (key) {
    case 'FuncCall':
      return callMayFail(fields);
    case 'A_Expr':
      return operatorMayFail(fields);
    case 'TypeCast':
      return castMayFail(fields);
    case 'XmlExpr':
    case 'XmlSerialize':
      return true;
    case 'SubLink':
      // A scalar subquery fails when it returns more than one row.
      return fields['subLinkType'] === 'EXPR_SUBLINK';
    default:
      return false;
  }
}

/** Whether any computation in a subtree can fail (`nodeMayFail`). */
function mayFail(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(mayFail);
  if (value === null || typeof value !== 'object') return false;
  const node = value as Fields;
  for (const key in node) {
    const child = node[key];
    if (child === null || typeof child !== 'object') continue;
    if (nodeMayFail(key, child as Fields) || mayFail(child)) return true;
  }
  return false;
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function stringList(items: unknown): string[] {
  const names: string[] = [];
  for (const item of asArray(items)) {
    const name = ((item as Fields)['String'] as Fields | undefined)?.['sval'];
    if (typeof name === 'string') names.push(name);
  }
  return names;
}
