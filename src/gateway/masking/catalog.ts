/**
 * Resolves the policy's masked columns ("schema.table.column") to what RowDescription carries: table OID and
 * attribute number. Looked up on the target with the service credentials, together with every view's definition
 * (view-lineage.ts: which view columns carry masked values), and cached per target.
 *
 * ## Freshness
 *
 * A resolution is a snapshot of the target's catalog; it goes stale when tables or views change. It is read again:
 * - after DDL that ran through the gateway (the session that ran it invalidates it);
 * - when a masked result names a relation the snapshot does not know — a table or view created directly on the
 *   database, say by a migration. The columns of that relation are masked whole in that result (nothing is known
 *   about them yet: fail closed), and the next statement waits for the catalog to be read again;
 * - when it is older than `maxAgeMs` (default one minute): changes that keep a relation's OID, made directly on the
 *   database (CREATE OR REPLACE VIEW, a masked column dropped and added again), are seen within that time.
 * Sessions do not send a statement while their target's resolution is stale: they wait for the new one (client-
 * session.ts), and end the connection if it cannot be read, as at login.
 */
import pg from 'pg';
import type { TargetConfig } from '../config/load.js';
import { classifyStatements, loadStatementParser, type Classification } from '../policy/classify.js';
import { strictestStyle, type MaskStyle } from './mask.js';
import { NO_VIEWS, type PolicyViews } from '../policy/views.js';
import {
  maskedViewColumnsByName, maskViewColumns, policyViews, relationName, type MaskedViewColumns, type ViewDefinition,
} from './view-lineage.js';

/** What result masking needs to know about a target's catalog. */
export interface MaskedColumnKeys {
  /** "oid:attnum" of every masked column, with how its values are masked. Includes view columns that pass one. */
  readonly masked: ReadonlyMap<string, MaskStyle>;
  /**
   * "oid:attnum" of view columns whose values are computed from masked columns (`reverse(ssn)`), or draw on several
   * or on a whole row, and whole rows (attribute 0) of relations with masked columns: masked whole, in this style.
   */
  readonly derived: ReadonlyMap<string, MaskStyle>;
  /**
   * OIDs of plain tables: a column of one that is not a masked column holds its own stored values, so it is clean.
   * A view, materialized view or foreign table reports its own OID in RowDescription, and its columns may come from
   * masked ones: those not in `masked` or `derived` are scanned.
   */
  readonly plainTables: ReadonlySet<number>;
  /**
   * The masked and derived view columns by view and column name, for the lineage of statements that compute from
   * them (view-lineage.ts `derivedThroughViews`).
   */
  readonly viewColumns: MaskedViewColumns;
  /** OIDs of every relation the snapshot saw. A result naming another one was made from a stale snapshot. */
  readonly relations: ReadonlySet<number>;
  /**
   * How columns of relations the snapshot does not know are masked (whole): the strictest style of the policy. Null
   * when nothing is masked on the target (nothing to protect; they are scanned).
   */
  readonly unknownRelationStyle: MaskStyle | null;
  /** The target's views as the policy sees them: the tables and table columns behind them (policy/views.ts). */
  readonly views: PolicyViews;
}

export const NO_MASKED_COLUMNS: MaskedColumnKeys = {
  masked: new Map(),
  derived: new Map(),
  plainTables: new Set(),
  viewColumns: new Map(),
  relations: new Set(),
  unknownRelationStyle: null,
  views: NO_VIEWS,
};

export function columnKey(tableOid: number, attnum: number): string {
  return `${tableOid}:${attnum}`;
}

/** Reads of a target's catalog tried in a row before a lookup fails (a view dropped during a read fails it). */
const READ_ATTEMPTS = 3;

/** How long a resolution is used before it is read again, when nothing showed it stale earlier. */
export const CATALOG_MAX_AGE_MS = 60_000;

interface CacheEntry {
  keys: Promise<MaskedColumnKeys>;
  /** Set once `keys` resolved. */
  resolved: MaskedColumnKeys | undefined;
  /** When the read started: the snapshot is at least this old. */
  readAt: number;
}

export interface MaskedColumnCatalogOptions {
  /**
   * Read the target's views even when no column is masked: the policy has rules that name tables, which must see
   * through views (policy/views.ts). Default false: with neither, there is nothing to read.
   */
  policyReadsViews?: boolean;
  /** See CATALOG_MAX_AGE_MS. */
  maxAgeMs?: number;
  /** The clock (tests). */
  now?: () => number;
}

export class MaskedColumnCatalog {
  private readonly cache = new Map<string, CacheEntry>();
  /**
   * Per target, classifications of view definitions from its previous read, by text: definitions rarely change, and
   * parsing every view of a large schema at every read would hold up the event loop each time.
   */
  private readonly definitions = new Map<string, Map<string, Classification>>();
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly policyReadsViews: boolean;

  constructor(
    /**
     * schema.table.column names to resolve, as the policy lists them (unqualified tables mean schema public), with
     * the style their rule masks them in.
     */
    private readonly columns: ReadonlyMap<string, MaskStyle>,
    options: MaskedColumnCatalogOptions = {},
  ) {
    this.policyReadsViews = options.policyReadsViews ?? false;
    this.maxAgeMs = options.maxAgeMs ?? CATALOG_MAX_AGE_MS;
    this.now = options.now ?? Date.now;
  }

  /** The masked columns of `target`: the cached resolution while it is current, else a new read (shared). */
  resolve(target: TargetConfig): Promise<MaskedColumnKeys> {
    const entry = this.cache.get(target.name);
    if (entry && (entry.resolved === undefined || this.isFresh(entry))) return entry.keys;
    const read: CacheEntry = { keys: this.lookup(target), resolved: undefined, readAt: this.now() };
    read.keys.then(
      (keys) => {
        read.resolved = keys;
      },
      // A failed lookup must not stay cached: the next statement or connection retries.
      () => {
        if (this.cache.get(target.name) === read) this.cache.delete(target.name);
      },
    );
    this.cache.set(target.name, read);
    return read.keys;
  }

  /** The current resolution of a target, or undefined when it must be read again first (`resolve`). */
  current(targetName: string): MaskedColumnKeys | undefined {
    const entry = this.cache.get(targetName);
    return entry?.resolved !== undefined && this.isFresh(entry) ? entry.resolved : undefined;
  }

  /**
   * Forget a target's resolution, e.g. after DDL ran there (a column may have moved). With `stale`: only if that is
   * still the current resolution — many sessions may notice the same stale snapshot, one new read is enough.
   */
  invalidate(targetName: string, stale?: MaskedColumnKeys): void {
    const entry = this.cache.get(targetName);
    if (entry === undefined || (stale !== undefined && entry.resolved !== stale)) return;
    this.cache.delete(targetName);
  }

  private isFresh(entry: CacheEntry): boolean {
    return this.now() - entry.readAt < this.maxAgeMs;
  }

  private async lookup(target: TargetConfig): Promise<MaskedColumnKeys> {
    if (this.columns.size === 0 && !this.policyReadsViews) return NO_MASKED_COLUMNS;
    // View definitions are read with the statement grammar (loaded before the gateway serves; a no-op then).
    await loadStatementParser();
    const names = [...this.columns.keys()];
    const triples = names.map((name) => {
      const parts = name.split('.');
      return parts.length === 3 ? parts : ['public', ...parts];
    });
    const client = new pg.Client({
      host: target.host,
      port: target.port,
      user: target.user,
      database: target.database,
      ...(target.password ? { password: target.password.reveal() } : {}),
      ...(target.tls === 'disable' ? {} : { ssl: { rejectUnauthorized: target.tls === 'verify-full', ...(target.ca ? { ca: target.ca } : {}) } }),
      application_name: 'dbgate-gateway catalog',
      connectionTimeoutMillis: 10_000,
    });
    await client.connect();
    try {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await this.read(target.name, client, names, triples);
        } catch (error) {
          // pg_get_viewdef fails on a view dropped after the transaction's snapshot ("could not open relation"): the
          // next transaction's snapshot no longer lists it. Errors without a SQLSTATE (a lost connection) are final.
          if (attempt >= READ_ATTEMPTS || typeof (error as { code?: unknown }).code !== 'string') throw error;
          await client.query('rollback');
        }
      }
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** One consistent read of the masked columns, relations and views, resolved to MaskedColumnKeys. */
  private async read(
    targetName: string,
    client: pg.Client,
    names: readonly string[],
    triples: ReadonlyArray<readonly string[]>,
  ): Promise<MaskedColumnKeys> {
    // One snapshot for every query below, so relations, columns and views agree with each other.
    await client.query('begin isolation level repeatable read read only');
    const { rows } = await client.query<{ oid: string; attnum: number; attname: string; position: string }>(
      `select c.oid::int8 as oid, a.attnum, a.attname, m.position
         from unnest($1::text[], $2::text[], $3::text[]) with ordinality as m(schema_name, table_name, column_name, position)
         join pg_namespace n on n.nspname = m.schema_name
         join pg_class c on c.relnamespace = n.oid and c.relname = m.table_name
         join pg_attribute a on a.attrelid = c.oid and a.attname = m.column_name and not a.attisdropped`,
      [triples.map((t) => t[0]), triples.map((t) => t[1]), triples.map((t) => t[2])],
    );
    const masked = new Map<string, MaskStyle>();
    const maskedColumns = new Map<number, Map<string, MaskStyle>>();
    for (const row of rows) {
      const oid = Number(row.oid);
      const style = this.columns.get(names[Number(row.position) - 1]!) ?? 'partial';
      masked.set(columnKey(oid, row.attnum), style);
      let columns = maskedColumns.get(oid);
      if (columns === undefined) maskedColumns.set(oid, (columns = new Map()));
      columns.set(row.attname, style);
    }

    const relations = await client.query<{ oid: string; schema: string; name: string; kind: string }>(
      `select c.oid::int8 as oid, n.nspname as schema, c.relname as name, c.relkind as kind
         from pg_class c join pg_namespace n on n.oid = c.relnamespace`);
    const plainTables = new Set<number>();
    const relationOids = new Map<string, number>();
    for (const row of relations.rows) {
      const oid = Number(row.oid);
      relationOids.set(relationName(row.schema, row.name), oid);
      if ((row.kind === 'r' || row.kind === 'p') && row.schema !== 'pg_catalog') plainTables.add(oid);
    }

    // pg_get_viewdef prints a name unqualified when this connection's search_path finds it: resolve them the same way.
    const searchPath = await client.query<{ schemas: string[] }>('select current_schemas(true)::text[] as schemas');
    type ViewRow = { oid: string; schema: string; name: string; definition: string | null; names: string[]; attnums: number[] };
    const views = await client.query<ViewRow>(
      `select c.oid::int8 as oid, n.nspname as schema, c.relname as name, pg_get_viewdef(c.oid) as definition,
              a.names, a.attnums
         from pg_class c
         join pg_namespace n on n.oid = c.relnamespace
         cross join lateral (
           -- coalesce: a view may have no columns at all (CREATE VIEW v AS SELECT).
           select coalesce(array_agg(attname::text order by attnum), '{}') as names,
                  coalesce(array_agg(attnum::int order by attnum), '{}') as attnums
             from pg_attribute where attrelid = c.oid and attnum > 0 and not attisdropped) a
        where c.relkind in ('v', 'm') and n.nspname not in ('pg_catalog', 'information_schema')`);
    await client.query('commit');

    const failClosedStyle = strictestStyle(this.columns.values());
    const viewDefinitions = views.rows.map((row): ViewDefinition => ({
      oid: Number(row.oid),
      schema: row.schema,
      name: row.name,
      columns: row.names.map((name, index) => ({ name, attnum: row.attnums[index]! })),
      definition: row.definition,
    }));
    const previous = this.definitions.get(targetName) ?? new Map<string, Classification>();
    const definitions = new Map<string, Classification>();
    const lineageInput = {
      views: viewDefinitions,
      relations: relationOids,
      searchPath: searchPath.rows[0]?.schemas ?? [],
      classify: (sql: string): Classification => {
        const classification = previous.get(sql) ?? definitions.get(sql) ?? classifyStatements(sql);
        definitions.set(sql, classification);
        return classification;
      },
    };
    const forPolicy = policyViews(lineageInput);
    // Only what this read saw is kept: dropped views' definitions go.
    this.definitions.set(targetName, definitions);
    if (this.columns.size === 0) {
      // Nothing is masked on this target: only the policy's view of the views matters.
      return { ...NO_MASKED_COLUMNS, views: forPolicy };
    }
    const viewMasks = maskViewColumns({ ...lineageInput, maskedColumns, failClosedStyle });
    const derived = new Map<string, MaskStyle>();
    for (const [oid, columns] of viewMasks) {
      for (const [attnum, mask] of columns) {
        const key = columnKey(oid, attnum);
        if (mask.whole) {
          derived.set(key, mask.style);
          masked.delete(key);
        } else {
          masked.set(key, mask.style);
        }
      }
    }
    // The whole row of a table with masked columns (`SELECT c FROM customers c`) holds them all.
    for (const [oid, columns] of maskedColumns) {
      if (!viewMasks.has(oid)) derived.set(columnKey(oid, 0), strictestStyle(columns.values()));
    }
    return {
      masked,
      derived,
      plainTables,
      viewColumns: maskedViewColumnsByName(viewDefinitions, viewMasks),
      relations: new Set(relationOids.values()),
      unknownRelationStyle: failClosedStyle,
      views: forPolicy,
    };
  }
}
