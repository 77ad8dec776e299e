/**
 * Views, as the policy sees them. A statement names a view the way it names a table, but rules speak of the tables
 * and columns behind it: `hold writes to public.payments` must hold `UPDATE payments_view …`, a mask rule matching
 * `tables: [customers]` must match `SELECT … FROM customer_contacts`, and `WHERE email = '…'` on a view column that
 * carries customers.email tests the masked value as surely as on the table (inference protection).
 *
 * The target's catalog (masking/catalog.ts) resolves every view definition once, through views of views, into the
 * tables it reads and the table columns behind each view column (masking/view-lineage.ts `policyViews`).
 * `throughViews` then extends a statement's classification with them before the policy judges it:
 * - every table reference that names a view adds the view's tables, with the reference's access (an UPDATE through
 *   an updatable view writes its table), marked with the view;
 * - every inference column of a view adds the table columns behind it, in the same clause; a whole-row use (`*`)
 *   adds every column behind the view;
 * - a view whose definition dbgate cannot analyse (it calls a function dbgate cannot see into, does not parse…) is
 *   listed as opaque: restriction rules that name tables match it, and using its columns in a revealing clause is
 *   denied to identities with masked columns (policy.ts) — what cannot be traced is not proven clean.
 *
 * Names resolve like the policy's table names: a qualified reference names the view in that schema; an unqualified
 * one counts every view of that name in a schema of the session's search_path (over-matching a restriction is the
 * safe direction; permission rules never match tables reached through a view).
 */
import type { InferenceColumn, StatementInfo, TableColumn, TableRef } from './classify.js';

/** A view or materialized view with what stands behind it, schema-qualified, through views of views. */
export interface PolicyView {
  schema: string;
  name: string;
  /** The tables the view reads (never views); null when its definition cannot be analysed. */
  tables: ReadonlyArray<{ schema: string; name: string }> | null;
  /** Per view column, the table columns its values come from; null when the definition cannot be analysed. */
  columns: ReadonlyMap<string, readonly TableColumn[]> | null;
}

/** A target's views by name. `version` changes exactly when what the policy can read from them does. */
export interface PolicyViews {
  version: string;
  byName: ReadonlyMap<string, readonly PolicyView[]>;
}

export const NO_VIEWS: PolicyViews = { version: '', byName: new Map() };

/** A view reference of a statement that dbgate cannot see through. */
export interface OpaqueView {
  /** `schema.name` of the view. */
  view: string;
  access: TableRef['access'];
  /** Its columns the statement uses in revealing clauses (inference columns), as the statement named them. */
  inferenceColumns: InferenceColumn[];
}

/** A statement with the tables and columns behind its views (see the module comment). */
export interface StatementThroughViews extends StatementInfo {
  /** Views among `tables` whose definitions cannot be analysed. */
  opaqueViews: OpaqueView[];
}

/**
 * `statement` with the tables and inference columns behind the views it names added (tables marked `view`), and its
 * opaque views listed. `schemas`: the schemas an unqualified name resolves through (the session's search_path,
 * without `$user` and `pg_temp`). Returns the statement itself, with no opaque views, when it names none.
 */
export function throughViews(statement: StatementInfo, views: PolicyViews, schemas: readonly string[]): StatementThroughViews {
  if (views.byName.size === 0 || !statement.tables.some((table) => views.byName.has(table.name))) {
    return { ...statement, opaqueViews: [] };
  }
  const tables = [...statement.tables];
  const seenTables = new Set(tables.map((table) => tableKey(table.schema, table.name, table.access)));
  const inferenceColumns = [...statement.inferenceColumns];
  const opaque = new Map<string, OpaqueView>();

  for (const reference of statement.tables) {
    for (const view of viewsNamed(views, reference.schema, reference.name, schemas)) {
      const label = `${view.schema}.${view.name}`;
      if (view.tables === null) {
        const known = opaque.get(label);
        // A view both read and written is opaque for writing.
        if (known === undefined) opaque.set(label, { view: label, access: reference.access, inferenceColumns: [] });
        else if (reference.access === 'write') known.access = 'write';
        continue;
      }
      for (const table of view.tables) {
        const key = tableKey(table.schema, table.name, reference.access);
        if (seenTables.has(key)) continue;
        seenTables.add(key);
        tables.push({ schema: table.schema, name: table.name, access: reference.access, view: label });
      }
    }
  }

  for (const used of statement.inferenceColumns) {
    for (const view of viewsNamed(views, used.schema, used.table, schemas)) {
      if (view.columns === null) {
        opaque.get(`${view.schema}.${view.name}`)?.inferenceColumns.push(used);
        continue;
      }
      const behind = used.column === '*' ? [...view.columns.values()].flat() : view.columns.get(used.column) ?? [];
      const via = `${used.schema === null ? used.table : `${used.schema}.${used.table}`}.${used.column}`;
      for (const column of behind) inferenceColumns.push({ ...column, clause: used.clause, via });
    }
  }
  return { ...statement, tables, inferenceColumns, opaqueViews: [...opaque.values()] };
}

/** The views a reference can name: in its schema, or (unqualified) in any schema the name resolves through. */
function viewsNamed(views: PolicyViews, schema: string | null, name: string, schemas: readonly string[]): PolicyView[] {
  const named = views.byName.get(name);
  if (named === undefined) return [];
  return named.filter((view) => (schema === null ? schemas.includes(view.schema.toLowerCase()) : view.schema === schema));
}

function tableKey(schema: string | null, name: string, access: TableRef['access']): string {
  return `${schema ?? ''}\u0000${name}\u0000${access}`;
}
