/**
 * What the policy knows of a target's catalog: its views, and masked columns renamed or missing there. The target's
 * catalog (masking/catalog.ts) reads it with the masked columns' positions, and `withCatalog` extends a statement's
 * classification with it before the policy judges the statement.
 *
 * ## Views
 *
 * A statement names a view the way it names a table, but rules speak of the tables and columns behind it: `hold
 * writes to public.payments` must hold `UPDATE payments_view …`, a mask rule matching `tables: [customers]` must
 * match `SELECT … FROM customer_contacts`, and `WHERE email = '…'` on a view column that carries customers.email
 * tests the masked value as surely as on the table (inference protection). Every view definition is resolved once,
 * through views of views, into the tables it reads and the table columns behind each view column (masking/
 * view-lineage.ts `policyViews`). Then:
 * - every table reference that names a view adds the view's tables, with the reference's access (an UPDATE through
 *   an updatable view writes its table), marked with the view;
 * - every inference column of a view adds the table columns behind it, in the same clause; a whole-row use (`*`)
 *   adds every column behind the view;
 * - a view whose definition dbgate cannot analyse (it calls a function dbgate cannot see into, does not parse…) is
 *   listed as opaque: restriction rules that name tables match it, and using its columns in a revealing clause is
 *   denied to identities with masked columns (policy.ts) — what cannot be traced is not proven clean.
 *
 * ## Renamed and missing masked columns
 *
 * The policy names masked columns (`public.customers.email`); the catalog remembers where each one was found (table
 * OID and attribute number, kept in the state store). When the column is renamed on the database, the catalog still
 * masks it there, and reports it here under its new name: a statement using `customers.mail` is judged as using
 * `customers.email` (inference protection, lineage of computed values). A masked column whose table exists but
 * which the catalog cannot find at all (renamed while no gateway was watching, or dropped) is missing: masked
 * reads of its table are refused until the policy names it as it is now — masking cannot find its values.
 *
 * Names resolve like the policy's table names: a qualified reference names the relation in that schema; an
 * unqualified one counts every relation of that name in a schema of the session's search_path, and every temporary
 * view of that name (over-matching a restriction is the safe direction; permission rules never match tables reached
 * through a view).
 */
import { createHash } from 'node:crypto';
import type { InferenceColumn, OutputColumn, StatementInfo, TableColumn, TableRef } from './classify.js';

/** A view or materialized view with what stands behind it, schema-qualified, through views of views. */
export interface PolicyView {
  schema: string;
  name: string;
  /** The tables the view reads (never views); null when its definition cannot be analysed. */
  tables: ReadonlyArray<{ schema: string; name: string }> | null;
  /** Per view column, the table columns its values come from; null when the definition cannot be analysed. */
  columns: ReadonlyMap<string, readonly TableColumn[]> | null;
}

/** A masked column found under another name than the policy's (see the module comment). */
export interface RenamedColumn {
  /** Where the column is now. */
  schema: string;
  table: string;
  column: string;
  /** The policy's name of it, `schema.table.column`. */
  policyName: string;
}

/** What the policy knows of a target's catalog. `version` changes exactly when any of it does. */
export interface PolicyCatalog {
  version: string;
  /** Views and materialized views by name. */
  views: ReadonlyMap<string, readonly PolicyView[]>;
  renamedColumns: readonly RenamedColumn[];
  /** Masked columns (`schema.table.column`, as resolved from the policy) whose table exists without them. */
  missingColumns: ReadonlySet<string>;
}

/**
 * The masked column a policy's column name stands for in the target's catalog, `schema.table.column`: a name without
 * a schema (`customers.email`) is the table in schema public. The catalog resolves names this way, and reports
 * renamed and missing columns under it.
 */
export function catalogColumnName(policyColumn: string): string {
  return policyColumn.split('.').length === 3 ? policyColumn : `public.${policyColumn}`;
}

export const NO_CATALOG: PolicyCatalog = { version: '', views: new Map(), renamedColumns: [], missingColumns: new Set() };

/** A PolicyCatalog with its version: a digest of the content, so that a catalog read that changes nothing keeps it. */
export function policyCatalog(parts: Omit<PolicyCatalog, 'version'>): PolicyCatalog {
  const hash = createHash('sha256');
  for (const name of [...parts.views.keys()].sort()) {
    for (const view of parts.views.get(name)!) {
      hash.update(JSON.stringify([view.schema, view.name, view.tables, view.columns === null ? null : [...view.columns]]));
      hash.update('\u0000');
    }
  }
  hash.update(JSON.stringify(parts.renamedColumns));
  hash.update(JSON.stringify([...parts.missingColumns].sort()));
  return { ...parts, version: hash.digest('hex').slice(0, 16) };
}

/** A view reference of a statement that dbgate cannot see through. */
export interface OpaqueView {
  /** `schema.name` of the view. */
  view: string;
  access: TableRef['access'];
  /** Its columns the statement uses in revealing clauses (inference columns), as the statement named them. */
  inferenceColumns: InferenceColumn[];
}

/** A statement with the tables and columns behind its views, and renamed masked columns (see the module comment). */
export interface StatementInCatalog extends StatementInfo {
  /** Views among `tables` whose definitions cannot be analysed. */
  opaqueViews: OpaqueView[];
}

/**
 * `statement` as the policy judges it on this catalog: with the tables and inference columns behind the views it
 * names (tables marked `view`), its opaque views listed, and renamed masked columns also under their policy names
 * (inference columns and output lineage). `schemas`: the schemas an unqualified name resolves through (the session's
 * search_path, without `$user` and `pg_temp`).
 */
export function withCatalog(statement: StatementInfo, catalog: PolicyCatalog, schemas: readonly string[]): StatementInCatalog {
  const namesView = catalog.views.size > 0 && statement.tables.some((table) => catalog.views.has(table.name));
  if (!namesView && catalog.renamedColumns.length === 0) return { ...statement, opaqueViews: [] };
  const tables = [...statement.tables];
  const seenTables = new Set(tables.map((table) => tableKey(table.schema, table.name, table.access)));
  const inferenceColumns = [...statement.inferenceColumns];
  const opaque = new Map<string, OpaqueView>();

  for (const reference of namesView ? statement.tables : []) {
    for (const view of relationsNamed(catalog.views, reference.schema, reference.name, schemas)) {
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

  for (const used of namesView ? statement.inferenceColumns : []) {
    for (const view of relationsNamed(catalog.views, used.schema, used.table, schemas)) {
      if (view.columns === null) {
        opaque.get(`${view.schema}.${view.name}`)?.inferenceColumns.push(used);
        continue;
      }
      const behind = used.column === '*' ? [...view.columns.values()].flat() : view.columns.get(used.column) ?? [];
      for (const column of behind) {
        inferenceColumns.push({ ...column, clause: used.clause, via: `${columnLabel(used)} (${columnLabel(column)} behind the view)` });
      }
    }
  }

  let { outputs } = statement;
  if (catalog.renamedColumns.length > 0) {
    // After the views: what stands behind a view is named as the catalog has it now.
    for (const used of [...inferenceColumns]) {
      for (const renamed of renamedAs(catalog.renamedColumns, used, schemas)) {
        const via = `${used.via ?? columnLabel(used)} (masked as ${renamed.policyName}, which was renamed)`;
        inferenceColumns.push({ ...policyColumn(renamed), clause: used.clause, via });
      }
    }
    if (outputs !== null) {
      outputs = {
        ...outputs,
        columns: outputs.columns.map((output): OutputColumn => {
          const renamed = output.sources.flatMap((source) => renamedAs(catalog.renamedColumns, source, schemas).map(policyColumn));
          return renamed.length === 0 ? output : { ...output, sources: [...output.sources, ...renamed] };
        }),
      };
    }
  }
  return { ...statement, tables, inferenceColumns, outputs, opaqueViews: [...opaque.values()] };
}

/** The renamed masked columns a statement's column reference can be (`*`: any column of the table). */
function renamedAs(renamed: readonly RenamedColumn[], used: TableColumn, schemas: readonly string[]): RenamedColumn[] {
  return renamed.filter((column) => column.table === used.table && (used.column === '*' || used.column === column.column) &&
    (used.schema === null ? schemas.includes(column.schema.toLowerCase()) : used.schema === column.schema));
}

function policyColumn(renamed: RenamedColumn): TableColumn {
  const [schema, table, column] = renamed.policyName.split('.') as [string, string, string];
  return { schema, table, column };
}

function columnLabel(used: TableColumn): string {
  return `${used.schema === null ? used.table : `${used.schema}.${used.table}`}.${used.column}`;
}

/**
 * The views a reference can name: in its schema, or (unqualified) in any schema the name resolves through. A session's
 * temporary views live in a schema `pg_temp_N` of its own, which its unqualified names search first and `pg_temp`
 * names; the catalog is read on another connection and cannot tell whose each one is, so every session's count.
 */
function relationsNamed(views: PolicyCatalog['views'], schema: string | null, name: string, schemas: readonly string[]): PolicyView[] {
  const named = views.get(name);
  if (named === undefined) return [];
  return named.filter((view) => {
    if (schema === null) return schemas.includes(view.schema.toLowerCase()) || isTemporarySchema(view.schema);
    return view.schema === schema || (schema === 'pg_temp' && isTemporarySchema(view.schema));
  });
}

function isTemporarySchema(schema: string): boolean {
  return /^pg_temp_\d+$/.test(schema);
}

function tableKey(schema: string | null, name: string, access: TableRef['access']): string {
  return `${schema ?? ''}\u0000${name}\u0000${access}`;
}
