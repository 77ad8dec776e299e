/**
 * `dbgate query <target> "<sql>"`: runs one SQL string through the gateway and prints the result — a table for people,
 * `--json` or `--csv` for programs. It opens the same in-process tunnel as `dbgate connect` and sends the SQL with
 * the simple query protocol, so the statement is checked, masked and audited exactly as a psql session's would be.
 */
import { Option, type Command } from 'commander';
import pg from 'pg';
import { ExitWith, writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { DbgateError } from '../../shared/errors.js';
import { gatewayRefusal } from '../../shared/refusals.js';
import { openCredentialSource } from '../credential-source.js';
import { toCsv } from '../output/csv.js';
import { renderTable, type ColumnAlignment } from '../output/table.js';
import { terminalStyle } from '../output/terminal-style.js';
import { LocalTunnel } from '../tunnel/local-tunnel.js';
import { resolveGatewayEndpoint } from '../tunnel/gateway-endpoint.js';

export interface QueryOptions {
  target: string;
  sql: string;
  json?: boolean | undefined;
  csv?: boolean | undefined;
  profile?: string | undefined;
  gateway?: string | undefined;
  /** Trust this CA for the gateway certificate instead of the pinned fingerprint from discovery. */
  gatewayCa?: string | undefined;
}

/** A JSON value of one cell: see `jsonCell`. */
export type QueryCell = string | number | boolean | null;

/** `dbgate query --json`: this object and nothing else on stdout. */
export interface QueryJsonOutput {
  columns: string[];
  rows: QueryCell[][];
  /** Rows returned; for a statement without a result set (UPDATE, INSERT…), the rows it affected. */
  row_count: number;
  duration_ms: number;
}

/** What came back, with every value as PostgreSQL's text (masked values as the gateway masked them). */
export interface QueryOutcome {
  columns: Array<{ name: string; typeId: number }>;
  rows: Array<Array<string | null>>;
  /** The command tag's verb (SELECT, UPDATE…). */
  command: string;
  /** Affected or returned rows, when the command tag says. */
  rowCount: number | null;
  durationMs: number;
}

/** Type OIDs from pg_type.dat. */
const enum TypeOid {
  bool = 16,
  int8 = 20,
  int2 = 21,
  int4 = 23,
  oid = 26,
  float4 = 700,
  float8 = 701,
  numeric = 1700,
}

/** Right-aligned in tables, as psql does. */
const NUMERIC_TYPES: ReadonlySet<number> = new Set([TypeOid.int2, TypeOid.int4, TypeOid.int8, TypeOid.oid, TypeOid.float4, TypeOid.float8, TypeOid.numeric]);
/** Written as JSON numbers: every value of these types fits a double exactly (int8 and numeric do not: strings). */
const JSON_NUMBER_TYPES: ReadonlySet<number> = new Set([TypeOid.int2, TypeOid.int4, TypeOid.oid, TypeOid.float4, TypeOid.float8]);

/** node-postgres would turn timestamps into Dates and so on; the CLI prints what the server sent. */
const TEXT_AS_SENT = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

export async function queryRun(options: QueryOptions, context: CommandContext): Promise<void> {
  const outcome = await runQuery(options, context);
  if (options.json) {
    writeLine(context.stdout, JSON.stringify(jsonOutput(outcome)));
  } else if (options.csv) {
    if (outcome.columns.length > 0) context.stdout.write(toCsv(outcome.columns.map((column) => column.name), outcome.rows));
    else writeLine(context.stderr, commandSummary(outcome));
  } else if (outcome.columns.length > 0) {
    writeLine(context.stdout, renderTable({
      head: outcome.columns.map((column) => column.name),
      rows: outcome.rows.map((row) => row.map((value) => value ?? '')),
      align: outcome.columns.map((column): ColumnAlignment => (NUMERIC_TYPES.has(column.typeId) ? 'right' : 'left')),
    }, terminalStyle(context)));
    writeLine(context.stdout, `${outcome.rows.length} ${outcome.rows.length === 1 ? 'row' : 'rows'} (${outcome.durationMs} ms)`);
  } else {
    writeLine(context.stdout, commandSummary(outcome));
  }
}

/** Opens a tunnel to the target, runs the SQL through it, and closes both. */
export async function runQuery(options: QueryOptions, context: CommandContext): Promise<QueryOutcome> {
  const source = await openCredentialSource(context, { profile: options.profile, gateway: options.gateway });
  const credential = await source.credential();
  const gateway = await resolveGatewayEndpoint(source.gateway, options.gatewayCa, context);
  const tunnel = new LocalTunnel({
    target: options.target,
    user: credential.subject,
    gateway,
    credential: async () => (await source.credential()).token,
  });
  const address = await tunnel.listen();
  const client = new pg.Client({
    host: address.host,
    port: address.port,
    user: credential.subject,
    password: tunnel.password,
    database: options.target,
    // Loopback to our own tunnel; TLS runs between the tunnel and the gateway.
    ssl: false,
    application_name: 'dbgate query',
    types: TEXT_AS_SENT,
  });
  // Losing the connection also rejects the running query; the event must not crash the process on its own.
  client.on('error', () => {});
  // Ctrl-C ends the connection; the gateway then ends the statement's upstream session.
  const interrupt = (): void => void tunnel.close();
  context.signal.addEventListener('abort', interrupt, { once: true });
  try {
    await client.connect();
    const started = context.now();
    const results = (await client.query({ text: options.sql, rowMode: 'array' })) as unknown as pg.QueryArrayResult | pg.QueryArrayResult[];
    const durationMs = Math.max(0, Math.round(context.now() - started));
    // Several statements in one string: like psql -c, show the last one's result.
    const result = Array.isArray(results) ? results[results.length - 1] : results;
    if (!result) return { columns: [], rows: [], command: '', rowCount: null, durationMs };
    return {
      columns: result.fields.map((field) => ({ name: field.name, typeId: field.dataTypeID })),
      rows: result.rows as Array<Array<string | null>>,
      command: result.command ?? '',
      rowCount: result.rowCount,
      durationMs,
    };
  } catch (error) {
    if (context.signal.aborted) throw new ExitWith(context.signal.reason === 'SIGTERM' ? 143 : 130);
    throw queryError(error, options.target);
  } finally {
    context.signal.removeEventListener('abort', interrupt);
    await client.end().catch(() => {});
    await tunnel.close();
  }
}

/**
 * The server's refusal as a DbgateError with the exit code the automation contract promises: a policy denial is 5,
 * a statement held for approval 6, a refused credential 4, anything else the database or gateway said 1. The gateway's
 * messages already begin with "dbgate: ", which the entry point adds again.
 */
export function queryError(error: unknown, target: string): unknown {
  if (!(error instanceof pg.DatabaseError)) {
    if (error instanceof Error && !(error instanceof DbgateError)) {
      return new DbgateError('GATEWAY_UNREACHABLE', `the connection to ${target} through the gateway failed: ${error.message}`, { cause: error });
    }
    return error;
  }
  const message = error.message.replace(/^dbgate: /, '');
  const hint = error.hint ? { hint: error.hint } : {};
  const sqlstate = error.code ?? '';
  // Only the gateway's refusals exit 5 / 6; the database's own "permission denied" is an ordinary SQL error.
  const refusal = gatewayRefusal(error.code, error.message);
  if (refusal) return new DbgateError(refusal === 'held' ? 'PENDING_APPROVAL' : 'DENIED', message, { ...hint, cause: error });
  if (sqlstate.startsWith('28')) {
    return new DbgateError('CREDENTIAL_EXPIRED', message, { hint: error.hint ?? 'run: dbgate login', cause: error });
  }
  if (sqlstate === '3D000') {
    return new DbgateError('QUERY_FAILED', message, { hint: error.hint ?? 'run: dbgate targets   (the targets you can reach)', cause: error });
  }
  // The database's own answer to the SQL (syntax error, missing table…): exit 1 with its words.
  return new DbgateError('QUERY_FAILED', message, { ...hint, cause: error });
}

/**
 * One cell as JSON: NULL → null, booleans → true/false, int2/int4/oid/float4/float8 → numbers (NaN and Infinity stay
 * strings), everything else — int8 and numeric included, whose values a JSON number cannot always hold exactly — the
 * text PostgreSQL sent.
 */
export function jsonCell(value: string | null, typeId: number): QueryCell {
  if (value === null) return null;
  if (typeId === TypeOid.bool && (value === 't' || value === 'f')) return value === 't';
  if (JSON_NUMBER_TYPES.has(typeId)) {
    const number = Number(value);
    if (value.trim() !== '' && Number.isFinite(number)) return number;
  }
  return value;
}

export function jsonOutput(outcome: QueryOutcome): QueryJsonOutput {
  return {
    columns: outcome.columns.map((column) => column.name),
    rows: outcome.rows.map((row) => row.map((value, index) => jsonCell(value, outcome.columns[index]?.typeId ?? 0))),
    row_count: outcome.columns.length > 0 ? outcome.rows.length : (outcome.rowCount ?? 0),
    duration_ms: outcome.durationMs,
  };
}

/** "UPDATE 3 (4 ms)", "SET (1 ms)": what a statement without a result set did. */
function commandSummary(outcome: QueryOutcome): string {
  const count = outcome.rowCount !== null && outcome.command !== '' ? ` ${outcome.rowCount}` : '';
  return `${outcome.command || 'OK'}${count} (${outcome.durationMs} ms)`;
}

export function registerQuery(program: Command, context: CommandContext): void {
  program
    .command('query')
    .description('run SQL on a target through the gateway and print the result (policy, masking and audit apply)')
    .argument('<target>', 'target name, e.g. prod-orders (see dbgate targets)')
    .argument('<sql>', 'the SQL to run; several statements print the last one\'s result')
    .addOption(new Option('--json', 'print {"columns", "rows", "row_count", "duration_ms"} on stdout').conflicts('csv'))
    .addOption(new Option('--csv', 'print RFC 4180 CSV with a header line on stdout').conflicts('json'))
    .option('--profile <name>', 'the login to use (default: DBGATE_PROFILE or "default")')
    .option('--gateway <url>', 'gateway API URL (default: DBGATE_GATEWAY or the stored login)')
    .option('--gateway-ca <file>', "verify the gateway's certificate with this CA instead of the pinned fingerprint")
    .addHelpText('after', [
      '',
      'Examples:',
      '  dbgate query prod-orders "select id, name, email from customers limit 5"',
      '  dbgate query prod-orders "select * from orders" --csv > orders.csv',
      "  dbgate query prod-orders \"select count(*) from orders\" --json | jq '.rows[0][0]'",
      '',
      'Exit codes: 5 when the policy denies the statement, 6 when it is held for approval.',
      '',
    ].join('\n'))
    .action((target: string, sql: string, flags: Omit<QueryOptions, 'target' | 'sql'>) => queryRun({ ...flags, target, sql }, context));
}
