/**
 * Resolves the policy's masked columns ("schema.table.column") to what RowDescription carries: table OID and
 * attribute number. Looked up on the target with the service credentials, cached per target, refreshed after DDL.
 */
import pg from 'pg';
import type { TargetConfig } from '../config/load.js';
import type { MaskStyle } from './mask.js';

/** What result masking needs to know about a target's catalog. */
export interface MaskedColumnKeys {
  /** "oid:attnum" of every masked column, with how its values are masked. */
  readonly masked: ReadonlyMap<string, MaskStyle>;
  /**
   * OIDs of plain tables: a column of one that is not a masked column holds its own stored values, so it is clean.
   * A view, materialized view or foreign table reports its own OID in RowDescription, and its columns may come from
   * masked ones: those are scanned.
   */
  readonly plainTables: ReadonlySet<number>;
}

export const NO_MASKED_COLUMNS: MaskedColumnKeys = { masked: new Map(), plainTables: new Set() };

export function columnKey(tableOid: number, attnum: number): string {
  return `${tableOid}:${attnum}`;
}

export class MaskedColumnCatalog {
  private readonly cache = new Map<string, Promise<MaskedColumnKeys>>();

  constructor(
    /**
     * schema.table.column names to resolve, as the policy lists them (unqualified tables mean schema public), with
     * the style their rule masks them in.
     */
    private readonly columns: ReadonlyMap<string, MaskStyle>,
  ) {}

  /** The masked columns of `target`, resolved once and then served from cache until `invalidate`. */
  resolve(target: TargetConfig): Promise<MaskedColumnKeys> {
    let entry = this.cache.get(target.name);
    if (!entry) {
      entry = this.lookup(target);
      // A failed lookup must not stay cached: the next connection retries.
      entry.catch(() => this.cache.delete(target.name));
      this.cache.set(target.name, entry);
    }
    return entry;
  }

  /** Forget a target's resolution, e.g. after DDL ran there (a column may have moved). */
  invalidate(targetName: string): void {
    this.cache.delete(targetName);
  }

  private async lookup(target: TargetConfig): Promise<MaskedColumnKeys> {
    if (this.columns.size === 0) return NO_MASKED_COLUMNS;
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
      const { rows } = await client.query<{ oid: number; attnum: number; position: string }>(
        `select c.oid::int8 as oid, a.attnum, m.position
           from unnest($1::text[], $2::text[], $3::text[]) with ordinality as m(schema_name, table_name, column_name, position)
           join pg_namespace n on n.nspname = m.schema_name
           join pg_class c on c.relnamespace = n.oid and c.relname = m.table_name
           join pg_attribute a on a.attrelid = c.oid and a.attname = m.column_name and not a.attisdropped`,
        [triples.map((t) => t[0]), triples.map((t) => t[1]), triples.map((t) => t[2])],
      );
      const masked = new Map(rows.map((row) => [
        columnKey(Number(row.oid), row.attnum),
        this.columns.get(names[Number(row.position) - 1]!) ?? 'partial',
      ] as const));
      const tables = await client.query<{ oid: string }>(
        "select oid::int8 as oid from pg_class where relkind in ('r', 'p') and relnamespace <> 'pg_catalog'::regnamespace");
      return { masked, plainTables: new Set(tables.rows.map((row) => Number(row.oid))) };
    } finally {
      await client.end().catch(() => {});
    }
  }
}
