/**
 * Which columns of views and materialized views carry masked values. PostgreSQL reports a view's column in
 * RowDescription with the view's OID and the view column's attribute number, never the table column behind it, so the
 * catalog resolves each view's definition (`pg_get_viewdef`) once, with the same lineage the policy uses for a
 * statement's select list (inference.ts), and records per view column:
 *
 * - a masked table column passed through (`SELECT email FROM customers`): masked like that column, in its style;
 * - a value computed from masked columns (`reverse(ssn)`, `length(email)`, `row_to_json(c)`), or a column that draws
 *   on several: masked whole, in the strictest style involved — a computed value need not look like its source, so no
 *   detector would recognise it;
 * - anything else: not recorded (the result masker scans it with the content detectors).
 *
 * Views over views resolve through the inner view's columns. A definition that dbgate cannot analyse (it does not
 * parse, calls a function whose body dbgate cannot see, has an unexpected shape) masks every column of the view
 * whole: fail closed.
 *
 * A statement that computes from a view column (`SELECT reverse(email) FROM v`) gets values PostgreSQL attributes to
 * no table; `derivedThroughViews` marks them from the statement's lineage, like policy.ts does for table columns.
 */
import {
  classifyStatements, type Classification, type OutputColumn, type StatementInfo, type StatementOutputs, type TableColumn,
} from '../policy/classify.js';
import type { PolicyCatalog, PolicyView } from '../policy/target-catalog.js';
import type { DerivedOutputs } from '../policy/policy.js';
import { strictestStyle, type MaskStyle } from './mask.js';

/** A view or materialized view, as the catalog lists it. */
export interface ViewDefinition {
  oid: number;
  schema: string;
  name: string;
  /** Its columns in definition order, with their attribute numbers. */
  columns: ReadonlyArray<{ name: string; attnum: number }>;
  /**
   * `pg_get_viewdef(oid)`: the view's query, with names printed relative to the catalog connection's search_path.
   * Null when the view is gone (dropped while the catalog was read).
   */
  definition: string | null;
}

/** How a column's values are masked: in place in a style, or `whole` (nothing of the value is kept). */
export interface ColumnMask {
  style: MaskStyle;
  whole: boolean;
}

export interface ViewLineageInput {
  views: readonly ViewDefinition[];
  /** The policy's masked columns by relation OID and column name (tables, and views the policy names itself). */
  maskedColumns: ReadonlyMap<number, ReadonlyMap<string, MaskStyle>>;
  /** Every relation's OID, by `relationName(schema, name)`. */
  relations: ReadonlyMap<string, number>;
  /** The schemas an unqualified name in a definition resolves through, in order (`current_schemas(true)`). */
  searchPath: readonly string[];
  /** The style of what cannot be analysed: the strictest style of the policy. */
  failClosedStyle: MaskStyle;
  /** Classifies a definition; default `classifyStatements`. The catalog passes one that remembers earlier reads. */
  classify?: (sql: string) => Classification;
}

/** The masked columns of views, by view OID and attribute number. Attribute 0 (the whole row) included. */
export type ViewColumnMasks = Map<number, Map<number, ColumnMask>>;

/** The key of a relation in `ViewLineageInput.relations`. */
export function relationName(schema: string, name: string): string {
  return `${schema}\u0000${name}`;
}

/** The OID of the relation a definition's reference names, resolved through the catalog connection's search_path. */
function relationOfName(input: Pick<ViewLineageInput, 'relations' | 'searchPath'>, source: Pick<TableColumn, 'schema' | 'table'>):
  number | undefined {
  if (source.schema !== null) return input.relations.get(relationName(source.schema, source.table));
  for (const schema of input.searchPath) {
    const oid = input.relations.get(relationName(schema, source.table));
    if (oid !== undefined) return oid;
  }
  return undefined;
}

/** Resolves every view's columns against the masked columns (and against the views they read). */
export function maskViewColumns(input: ViewLineageInput): ViewColumnMasks {
  const views = new Map(input.views.map((view) => [view.oid, view]));
  /** Per view: column name → mask (only masked columns). */
  const byName = new Map<number, Map<string, ColumnMask>>();
  const resolving = new Set<number>();

  /** The masked columns of a relation by name: a table's from the policy, a view's from its definition. */
  const columnsOf = (oid: number): ReadonlyMap<string, ColumnMask> => {
    const view = views.get(oid);
    if (view === undefined) {
      const masked = input.maskedColumns.get(oid);
      return new Map([...(masked ?? [])].map(([name, style]) => [name, { style, whole: false }]));
    }
    let columns = byName.get(oid);
    if (columns !== undefined) return columns;
    if (resolving.has(oid)) {
      // A view that reaches itself: PostgreSQL forbids that, so the catalog changed under the read. Fail closed.
      return new Map(view.columns.map((column) => [column.name, { style: input.failClosedStyle, whole: true }]));
    }
    resolving.add(oid);
    columns = resolveView(view);
    resolving.delete(oid);
    byName.set(oid, columns);
    return columns;
  };

  /** What a source of a view column carries: a masked column's mask, a whole row's strictest, or nothing. */
  const sourceMask = (source: TableColumn): ColumnMask | undefined => {
    const oid = relationOfName(input, source);
    // A name no relation has: not a table or view of this database (the lineage resolves CTEs and subqueries).
    if (oid === undefined) return undefined;
    const columns = columnsOf(oid);
    if (source.column !== '*') return columns.get(source.column);
    if (columns.size === 0) return undefined;
    return { style: strictestStyle([...columns.values()].map((mask) => mask.style)), whole: true };
  };

  const resolveView = (view: ViewDefinition): Map<string, ColumnMask> => {
    const columns = new Map<string, ColumnMask>();
    const lineage = definitionLineage(view, input.classify ?? classifyStatements);
    const named = input.maskedColumns.get(view.oid);
    view.columns.forEach((column, index) => {
      const derived = lineage === undefined
        ? { style: input.failClosedStyle, whole: true }
        : columnMask(lineage[index]!, sourceMask);
      const policyStyle = named?.get(column.name);
      // The policy may name a view's column itself: its style applies, and masking whole still wins.
      const mask = policyStyle === undefined
        ? derived
        : { style: strictestStyle([policyStyle, ...(derived ? [derived.style] : [])]), whole: derived?.whole ?? false };
      if (mask !== undefined) columns.set(column.name, mask);
    });
    return columns;
  };

  const result: ViewColumnMasks = new Map();
  for (const view of input.views) {
    const columns = columnsOf(view.oid);
    if (columns.size === 0) continue;
    const byAttnum = new Map<number, ColumnMask>();
    for (const column of view.columns) {
      const mask = columns.get(column.name);
      if (mask !== undefined) byAttnum.set(column.attnum, mask);
    }
    // Attribute 0: the view's whole row (`SELECT v FROM v`, `row_to_json(v)`), which holds every column.
    byAttnum.set(0, { style: strictestStyle([...columns.values()].map((mask) => mask.style)), whole: true });
    result.set(view.oid, byAttnum);
  }
  return result;
}

/**
 * A view column's mask from its lineage: a single masked column passed through keeps that column's mask; a computed
 * value, or one drawing on several columns or a whole row, is masked whole in the strictest style involved.
 */
function columnMask(output: OutputColumn, sourceMask: (source: TableColumn) => ColumnMask | undefined): ColumnMask | undefined {
  const masks: ColumnMask[] = [];
  for (const source of output.sources) {
    const mask = sourceMask(source);
    if (mask !== undefined) masks.push(mask);
  }
  if (masks.length === 0) return undefined;
  const passedThrough = !output.computed && output.sources.length === 1 && output.sources[0]!.column !== '*';
  if (passedThrough) return masks[0]!;
  return { style: strictestStyle(masks.map((mask) => mask.style)), whole: true };
}

/**
 * The lineage of each column of a view, in definition order; undefined when the definition cannot be analysed
 * (the caller then masks every column whole).
 */
function definitionLineage(view: ViewDefinition, classify: (sql: string) => Classification): OutputColumn[] | undefined {
  return analysedDefinition(view, classify)?.outputs.columns;
}

/** The view's definition, classified; undefined when it cannot be analysed (see `definitionLineage`). */
function analysedDefinition(view: ViewDefinition, classify: (sql: string) => Classification):
  (StatementInfo & { outputs: StatementOutputs }) | undefined {
  if (view.definition === null) return undefined;
  const classification = classify(view.definition);
  if (classification.parseError !== null || classification.statements.length !== 1) return undefined;
  const statement = classification.statements[0]!;
  // A function dbgate cannot see into (user-defined, an extension's) may read masked tables whatever its arguments
  // are; dangerous and dynamic-SQL functions likewise. None of the view's columns can be proven clean.
  if (statement.unanalyzable !== null || statement.unknownFunctions.length > 0 || statement.dangerousFunctions.length > 0) {
    return undefined;
  }
  const { outputs } = statement;
  const columns = outputs?.columns;
  // pg_get_viewdef expands `*` into the columns it stood for when the view was created: a star, or a column count
  // that does not match the view's, means the text is not what dbgate expects.
  if (outputs === null || columns === undefined || columns.length !== view.columns.length || columns.some((column) => column.star)) {
    return undefined;
  }
  return { ...statement, outputs };
}

/**
 * Every view as the policy sees it (policy/target-catalog.ts): the tables it reads and the table columns behind each of its
 * columns, schema-qualified, through views of views. A view whose definition cannot be analysed — or that reads one
 * that cannot — has neither (the policy fails closed on it). Names in a definition that are no relation of the
 * snapshot (functions in FROM, say) are not tables and are left out.
 */
export function policyViews(input: Pick<ViewLineageInput, 'views' | 'relations' | 'searchPath' | 'classify'>): PolicyCatalog['views'] {
  const classify = input.classify ?? classifyStatements;
  const views = new Map(input.views.map((view) => [view.oid, view]));
  const names = new Map<number, { schema: string; name: string }>();
  for (const [key, oid] of input.relations) {
    const [schema, name] = key.split('\u0000') as [string, string];
    names.set(oid, { schema, name });
  }
  const resolved = new Map<number, PolicyView>();
  const resolving = new Set<number>();

  const resolve = (view: ViewDefinition): PolicyView => {
    const known = resolved.get(view.oid);
    if (known !== undefined) return known;
    const opaque: PolicyView = { schema: view.schema, name: view.name, tables: null, columns: null };
    // A view that reaches itself: PostgreSQL forbids that, so the catalog changed under the read. Fail closed.
    if (resolving.has(view.oid)) return opaque;
    resolving.add(view.oid);
    const result = resolveDefinition(view) ?? opaque;
    resolving.delete(view.oid);
    resolved.set(view.oid, result);
    return result;
  };

  /** The tables and table columns behind one relation's reference; null when a view on the way is opaque. */
  const behind = (reference: { schema: string | null; table: string; column: string }):
    { tables: Array<{ schema: string; name: string }>; columns: TableColumn[] } | null => {
    const oid = relationOfName(input, reference);
    if (oid === undefined) return { tables: [], columns: [] };
    const view = views.get(oid);
    const name = names.get(oid)!;
    if (view === undefined) {
      return { tables: [name], columns: [{ schema: name.schema, table: name.name, column: reference.column }] };
    }
    const inner = resolve(view);
    if (inner.tables === null || inner.columns === null) return null;
    const columns = reference.column === '*' ? [...inner.columns.values()].flat() : [...(inner.columns.get(reference.column) ?? [])];
    return { tables: [...inner.tables], columns };
  };

  const resolveDefinition = (view: ViewDefinition): PolicyView | undefined => {
    const statement = analysedDefinition(view, classify);
    if (statement === undefined) return undefined;
    const tables = new Map<string, { schema: string; name: string }>();
    for (const table of statement.tables) {
      const found = behind({ schema: table.schema, table: table.name, column: '*' });
      if (found === null) return undefined;
      for (const base of found.tables) tables.set(relationName(base.schema, base.name), base);
    }
    const columns = new Map<string, TableColumn[]>();
    for (const [index, column] of view.columns.entries()) {
      const sources = new Map<string, TableColumn>();
      for (const source of statement.outputs.columns[index]!.sources) {
        const found = behind(source);
        if (found === null) return undefined;
        for (const base of found.columns) sources.set(`${relationName(base.schema!, base.table)}\u0000${base.column}`, base);
      }
      columns.set(column.name, [...sources.values()]);
    }
    return { schema: view.schema, name: view.name, tables: [...tables.values()], columns };
  };

  const byName = new Map<string, PolicyView[]>();
  for (const view of input.views) {
    let named = byName.get(view.name);
    if (named === undefined) byName.set(view.name, (named = []));
    named.push(resolve(view));
  }
  return byName;
}

/**
 * Masked view columns by view name, for statement lineage: column name → mask, `*` for the whole row. A statement
 * that computes a value from a view column (`SELECT reverse(email) FROM v`) gets it back without a table, so only the
 * statement's lineage names the view column; the lineage does not know schemas (it resolves no search_path), so a
 * name stands for the views of that name in every schema.
 */
export type MaskedViewColumns = ReadonlyMap<string, ReadonlyArray<{ schema: string; columns: ReadonlyMap<string, ColumnMask> }>>;

/** `masks` (by OID and attribute number) by view name and column name. */
export function maskedViewColumnsByName(views: readonly ViewDefinition[], masks: ViewColumnMasks): MaskedViewColumns {
  const byName = new Map<string, Array<{ schema: string; columns: Map<string, ColumnMask> }>>();
  for (const view of views) {
    const byAttnum = masks.get(view.oid);
    if (byAttnum === undefined) continue;
    const columns = new Map<string, ColumnMask>();
    for (const column of view.columns) {
      const mask = byAttnum.get(column.attnum);
      if (mask !== undefined) columns.set(column.name, mask);
    }
    const row = byAttnum.get(0);
    if (row !== undefined) columns.set('*', row);
    let schemas = byName.get(view.name);
    if (schemas === undefined) byName.set(view.name, (schemas = []));
    schemas.push({ schema: view.schema, columns });
  }
  return byName;
}

/** The mask of the view column `source` names, if it names a masked one (over views of that name: the strictest). */
function maskedViewColumn(source: TableColumn, viewColumns: MaskedViewColumns): ColumnMask | undefined {
  const masks: ColumnMask[] = [];
  for (const view of viewColumns.get(source.table) ?? []) {
    if (source.schema !== null && source.schema !== view.schema) continue;
    const mask = view.columns.get(source.column);
    if (mask !== undefined) masks.push(mask);
  }
  if (masks.length === 0) return undefined;
  return { style: strictestStyle(masks.map((mask) => mask.style)), whole: masks.some((mask) => mask.whole) };
}

/**
 * Which of a statement's result columns derive from masked view columns; undefined when none does. A view column's
 * own value passed on (through a scalar subquery or UNION, which PostgreSQL does not attribute) is masked like the
 * view column; a computed one, or one from a view column that is itself masked whole, is masked whole.
 */
function viewDerivedOutputs(outputs: StatementOutputs, viewColumns: MaskedViewColumns): DerivedOutputs | undefined {
  const styles: MaskStyle[] = [];
  const columns = outputs.columns.map((output) => {
    let masked = false;
    let computed = output.computed;
    for (const source of output.sources) {
      const mask = maskedViewColumn(source, viewColumns);
      if (mask === undefined) continue;
      masked = true;
      computed ||= mask.whole;
      styles.push(mask.style);
    }
    return { masked, star: output.star, computed };
  });
  return styles.length === 0 ? undefined : { columns, style: strictestStyle(styles) };
}

/**
 * The policy's derived outputs of a message (from masked table columns, policy.ts) extended by what its statements
 * derive from masked view columns, which only the catalog knows. One statement returning rows: column by column.
 * Several: their results cannot be told apart here, so every unattributed column is masked whole (as policy.ts does
 * for several statements with derived outputs).
 */
export function derivedThroughViews(
  derived: DerivedOutputs | undefined,
  statements: ReadonlyArray<StatementOutputs | null> | undefined,
  viewColumns: MaskedViewColumns,
): DerivedOutputs | undefined {
  if (statements === undefined || viewColumns.size === 0) return derived;
  const returningRows = statements.filter((outputs): outputs is StatementOutputs => outputs !== null);
  const throughViews = returningRows
    .map((outputs) => viewDerivedOutputs(outputs, viewColumns))
    .filter((found): found is DerivedOutputs => found !== undefined);
  if (throughViews.length === 0) return derived;
  const style = strictestStyle([...throughViews.map((found) => found.style), ...(derived ? [derived.style] : [])]);
  if (returningRows.length > 1) return { columns: [{ masked: true, star: true, computed: true }], style };
  const [found] = throughViews as [DerivedOutputs];
  // The policy's derived outputs, when there are any, describe the same statement: the only one returning rows.
  return {
    columns: found.columns.map((column, index) => {
      const policy = derived?.columns[index];
      const computed = (column.masked && column.computed) || (policy?.masked === true && policy.computed);
      return { masked: column.masked || policy?.masked === true, star: column.star, computed };
    }),
    style,
  };
}

/**
 * Whether a statement declares a cursor whose result columns carry masked view columns' values without PostgreSQL
 * attributing them to the view (computed, or through a set operation or subquery): FETCH shows nothing of the
 * cursor's query, so they could not be told apart from clean values (policy.ts denies the same for masked table
 * columns, `builtin:masked-cursor`).
 */
export function cursorOverMaskedViewColumns(
  statements: ReadonlyArray<StatementOutputs | null> | undefined,
  viewColumns: MaskedViewColumns,
): boolean {
  if (statements === undefined || viewColumns.size === 0) return false;
  return statements.some((outputs) => outputs?.viaCursor === true && outputs.columns.some((output) =>
    !output.attributed && output.sources.some((source) => maskedViewColumn(source, viewColumns) !== undefined)));
}
