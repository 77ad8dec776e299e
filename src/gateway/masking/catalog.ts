/**
 * Resolves the policy's masked columns ("schema.table.column") to what RowDescription carries: table OID and
 * attribute number. Looked up on the target with the service credentials, together with every view's definition
 * (view-lineage.ts: which view columns carry masked values), and cached per target.
 *
 * ## Freshness
 *
 * A resolution is a snapshot of the target's catalog; it goes stale when tables or views change. It is read again:
 * - after DDL that ran through the gateway, once its transaction ended (the session that ran it invalidates it, and
 *   the gateway announces it to the other gateways sharing its state store, which invalidate theirs);
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
import type { Logger } from '../log.js';
import { catalogColumnName, NO_CATALOG, policyCatalog, type PolicyCatalog, type RenamedColumn } from '../policy/target-catalog.js';
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
  /** What the policy knows of the catalog: views, renamed and missing masked columns (policy/target-catalog.ts). */
  readonly policyCatalog: PolicyCatalog;
  /**
   * The name of every relation of the snapshot, in any schema; null when the catalog was not read (nothing on the
   * target needs it). A statement naming another relation may name a view made after the snapshot (client-session.ts
   * has the catalog read again before judging it).
   */
  readonly relationNames: ReadonlySet<string> | null;
  /** When the read started (`now()` of the catalog): the snapshot is at least this old. */
  readonly readAt: number;
  /**
   * False when views were locked exclusively during the read (an open transaction is changing them): their
   * definitions are unknown and treated as unanalysable, and the snapshot is read again after INCOMPLETE_MAX_AGE_MS.
   */
  readonly complete: boolean;
}

export const NO_MASKED_COLUMNS: MaskedColumnKeys = {
  masked: new Map(),
  derived: new Map(),
  plainTables: new Set(),
  viewColumns: new Map(),
  relations: new Set(),
  unknownRelationStyle: null,
  policyCatalog: NO_CATALOG,
  relationNames: null,
  readAt: 0,
  complete: true,
};

export function columnKey(tableOid: number, attnum: number): string {
  return `${tableOid}:${attnum}`;
}

/** Reads of a target's catalog tried in a row before a lookup fails (a view dropped during a read fails it). */
const READ_ATTEMPTS = 3;

/** How long a resolution is used before it is read again, when nothing showed it stale earlier. */
export const CATALOG_MAX_AGE_MS = 60_000;

/** How long a resolution that found views locked is used (MaskedColumnKeys.complete). */
const INCOMPLETE_MAX_AGE_MS = 2_000;

/** How long a catalog read waits for a lock on a view (one taken after the read looked for locked views). */
const LOCK_TIMEOUT_MS = 2_000;

interface CacheEntry {
  keys: Promise<MaskedColumnKeys>;
  /** Set once `keys` resolved. */
  resolved: MaskedColumnKeys | undefined;
  /** When the read started: the snapshot is at least this old. */
  readAt: number;
}

/** Where a masked column was found: its table's OID and its attribute number, which a rename does not change. */
export interface ColumnLocation {
  tableOid: number;
  attnum: number;
}

/**
 * Where the policy's masked columns were last found, per target, by their policy names (`schema.table.column`):
 * kept in the state store, so that a column renamed while no gateway was running is still found.
 */
export interface MaskedColumnLocations {
  load(target: string): Promise<ReadonlyMap<string, ColumnLocation>>;
  save(target: string, locations: ReadonlyMap<string, ColumnLocation>): Promise<void>;
}

export interface MaskedColumnCatalogOptions {
  /** Where masked columns were found before (default: this process's memory only). */
  locations?: MaskedColumnLocations;
  /** Renamed and missing masked columns are reported here. */
  log?: Logger;
  /**
   * Read the target's views even when no column is masked: the policy has rules that name tables, which must see
   * through views (policy/target-catalog.ts). Default false: with neither, there is nothing to read.
   */
  policyReadsViews?: boolean;
  /** See CATALOG_MAX_AGE_MS. */
  maxAgeMs?: number;
  /** Tells the other gateways sharing the state store of a committed schema change (`schemaChanged`). */
  announceSchemaChange?: (targetName: string) => void;
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
  private readonly locations: MaskedColumnLocations | undefined;
  private readonly log: Logger | undefined;
  private readonly announceSchemaChange: ((targetName: string) => void) | undefined;
  /** Per target, where each masked column was found last (loaded from `locations` at the first read). */
  private readonly found = new Map<string, Map<string, ColumnLocation>>();
  /** Per target, the renamed and missing columns its last read reported: each is logged when it appears. */
  private readonly reported = new Map<string, ReadonlySet<string>>();

  constructor(
    /**
     * schema.table.column names to resolve, as the policy lists them (unqualified tables mean schema public), with
     * the style their rule masks them in.
     */
    private readonly columns: ReadonlyMap<string, MaskStyle>,
    options: MaskedColumnCatalogOptions = {},
  ) {
    this.policyReadsViews = options.policyReadsViews ?? false;
    this.locations = options.locations;
    this.log = options.log;
    this.maxAgeMs = options.maxAgeMs ?? CATALOG_MAX_AGE_MS;
    this.now = options.now ?? Date.now;
    this.announceSchemaChange = options.announceSchemaChange;
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

  /** Forget every target's resolution (schema changes may have been missed: catalog.ts module comment). */
  invalidateAll(): void {
    this.cache.clear();
  }

  /**
   * A schema change on `targetName` committed through this gateway: forget the resolution here, and have the other
   * gateways sharing the state store forget theirs.
   */
  schemaChanged(targetName: string): void {
    this.invalidate(targetName);
    this.announceSchemaChange?.(targetName);
  }

  private isFresh(entry: CacheEntry): boolean {
    const maxAge = entry.resolved?.complete === false ? Math.min(INCOMPLETE_MAX_AGE_MS, this.maxAgeMs) : this.maxAgeMs;
    return this.now() - entry.readAt < maxAge;
  }

  private async lookup(target: TargetConfig): Promise<MaskedColumnKeys> {
    if (this.columns.size === 0 && !this.policyReadsViews) return NO_MASKED_COLUMNS;
    // View definitions are read with the statement grammar (loaded before the gateway serves; a no-op then).
    await loadStatementParser();
    const names = [...this.columns.keys()];
    const triples = names.map((name) => catalogColumnName(name).split('.'));
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
    const readAt = this.now();
    // One snapshot for every query below, so relations, columns and views agree with each other.
    await client.query('begin isolation level repeatable read read only');
    // pg_get_viewdef locks the view: a session that holds or awaits an exclusive lock on it (ALTER VIEW, CREATE OR
    // REPLACE VIEW, DROP in an open transaction) would block the read, and with it every session of the target, the
    // lock holder's next statement included. Locked views are left out below; this ends a wait on one locked since.
    await client.query(`set local lock_timeout = '${LOCK_TIMEOUT_MS}ms'`);
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
    const locations = new Map<string, ColumnLocation>();
    const addMasked = (name: string, oid: number, attnum: number, attname: string): void => {
      const style = this.columns.get(name) ?? 'partial';
      masked.set(columnKey(oid, attnum), style);
      let columns = maskedColumns.get(oid);
      if (columns === undefined) maskedColumns.set(oid, (columns = new Map()));
      columns.set(attname, style);
      locations.set(name, { tableOid: oid, attnum });
    };
    for (const row of rows) addMasked(names[Number(row.position) - 1]!, Number(row.oid), row.attnum, row.attname);

    // A masked column the policy's name no longer finds may have been renamed: it is still where it was found last
    // (the same table OID and attribute number), under its new name. Mask it there.
    const lastFound = await this.previousLocations(targetName);
    const lost = names.filter((name) => !locations.has(name) && lastFound.has(name));
    const renamedColumns: RenamedColumn[] = [];
    if (lost.length > 0) {
      const moved = await client.query<{ oid: string; attnum: number; schema: string; table: string; column: string; position: string }>(
        `select c.oid::int8 as oid, a.attnum, n.nspname as schema, c.relname as table, a.attname as column, m.position
           from unnest($1::int8[], $2::int4[]) with ordinality as m(table_oid, attnum, position)
           join pg_class c on c.oid = m.table_oid
           join pg_namespace n on n.oid = c.relnamespace
           join pg_attribute a on a.attrelid = c.oid and a.attnum = m.attnum and not a.attisdropped`,
        [lost.map((name) => lastFound.get(name)!.tableOid), lost.map((name) => lastFound.get(name)!.attnum)],
      );
      for (const row of moved.rows) {
        const name = lost[Number(row.position) - 1]!;
        addMasked(name, Number(row.oid), row.attnum, row.column);
        renamedColumns.push({ schema: row.schema, table: row.table, column: row.column, policyName: catalogColumnName(name) });
      }
    }

    const relations = await client.query<{ oid: string; schema: string; name: string; kind: string }>(
      `select c.oid::int8 as oid, n.nspname as schema, c.relname as name, c.relkind as kind
         from pg_class c join pg_namespace n on n.oid = c.relnamespace`);
    const plainTables = new Set<number>();
    const relationOids = new Map<string, number>();
    const relationNames = new Set(relations.rows.map((row) => row.name));
    for (const row of relations.rows) {
      const oid = Number(row.oid);
      relationOids.set(relationName(row.schema, row.name), oid);
      if ((row.kind === 'r' || row.kind === 'p') && row.schema !== 'pg_catalog') plainTables.add(oid);
    }
    // Found nowhere, though its table is there: renamed while no gateway read this catalog, or dropped. The policy
    // refuses masked reads of that table (policy/target-catalog.ts): its values could be in any column now.
    const missingColumns = new Set<string>();
    names.forEach((name, index) => {
      if (!locations.has(name) && relationOids.has(relationName(triples[index]![0]!, triples[index]![1]!))) {
        missingColumns.add(catalogColumnName(name));
      }
    });

    // pg_get_viewdef prints a name unqualified when this connection's search_path finds it: resolve them the same way.
    const searchPath = await client.query<{ schemas: string[] }>('select current_schemas(true)::text[] as schemas');
    type ViewRow = {
      oid: string; schema: string; name: string; definition: string | null; locked: boolean; names: string[]; attnums: number[];
    };
    const views = await client.query<ViewRow>(
      `with locked as (
         select distinct relation from pg_locks
          where locktype = 'relation' and mode = 'AccessExclusiveLock'
            and database = (select oid from pg_database where datname = current_database()))
       select c.oid::int8 as oid, n.nspname as schema, c.relname as name, l.relation is not null as locked,
              case when l.relation is null then pg_get_viewdef(c.oid) end as definition,
              a.names, a.attnums
         from pg_class c
         left join locked l on l.relation = c.oid
         join pg_namespace n on n.oid = c.relnamespace
         cross join lateral (
           -- coalesce: a view may have no columns at all (CREATE VIEW v AS SELECT).
           select coalesce(array_agg(attname::text order by attnum), '{}') as names,
                  coalesce(array_agg(attnum::int order by attnum), '{}') as attnums
             from pg_attribute where attrelid = c.oid and attnum > 0 and not attisdropped) a
        where c.relkind in ('v', 'm') and n.nspname not in ('pg_catalog', 'information_schema')`);
    await client.query('commit');
    // A locked view's definition is unknown (the policy fails closed on it) until a read that finds it unlocked.
    const complete = views.rows.every((row) => !row.locked);

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
    const forPolicy = policyCatalog({ views: policyViews(lineageInput), renamedColumns, missingColumns });
    // Only what this read saw is kept: dropped views' definitions go.
    this.definitions.set(targetName, definitions);
    await this.remember(targetName, locations, forPolicy);
    if (this.columns.size === 0) {
      // Nothing is masked on this target: only the policy's view of the views matters.
      return { ...NO_MASKED_COLUMNS, policyCatalog: forPolicy, relationNames, readAt, complete };
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
      policyCatalog: forPolicy,
      relationNames,
      readAt,
      complete,
    };
  }

  /** Where the masked columns of a target were found last: this process's memory, else the state store. */
  private async previousLocations(targetName: string): Promise<ReadonlyMap<string, ColumnLocation>> {
    let known = this.found.get(targetName);
    if (known === undefined) {
      known = new Map(this.locations ? await this.locations.load(targetName) : []);
      this.found.set(targetName, known);
    }
    return known;
  }

  /** Keeps where the masked columns were found (saved when it changed), and reports renamed and missing ones. */
  private async remember(targetName: string, locations: ReadonlyMap<string, ColumnLocation>, catalog: PolicyCatalog): Promise<void> {
    const known = this.found.get(targetName) ?? new Map<string, ColumnLocation>();
    const changed = [...locations].some(([name, at]) => known.get(name)?.tableOid !== at.tableOid || known.get(name)?.attnum !== at.attnum);
    for (const [name, at] of locations) known.set(name, at);
    this.found.set(targetName, known);
    if (changed && this.locations) {
      // Not saving costs only the memory of a rename across a restart: masking goes on with this read.
      await this.locations.save(targetName, known).catch((error: unknown) => {
        this.log?.log('warn', 'masking.locations_not_saved', { target: targetName, reason: (error as Error).message });
      });
    }
    // Once per change, not at every read: a column renamed for good would otherwise be logged for as long as it is.
    const before = this.reported.get(targetName);
    const now = new Set<string>();
    for (const renamed of catalog.renamedColumns) {
      const name = `${renamed.schema}.${renamed.table}.${renamed.column}`;
      now.add(`renamed ${renamed.policyName} ${name}`);
      if (before?.has(`renamed ${renamed.policyName} ${name}`)) continue;
      this.log?.log('warn', 'masking.column_renamed', { target: targetName, column: renamed.policyName, now: name });
    }
    for (const missing of catalog.missingColumns) {
      now.add(`missing ${missing}`);
      if (!before?.has(`missing ${missing}`)) this.log?.log('warn', 'masking.column_missing', { target: targetName, column: missing });
    }
    this.reported.set(targetName, now);
  }
}
