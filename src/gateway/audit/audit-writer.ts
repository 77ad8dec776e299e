/**
 * Writes audit records to the state store in batches (group commit): one COPY per flush instead of one round trip
 * per statement, so auditing does not cost the statement path a state-store round trip.
 *
 * Fail closed: when the store stops accepting records, `healthy` turns false and the gateway refuses new
 * statements until a flush succeeds again, rather than letting unaudited statements through.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { StateStore } from '../store/state-store.js';

export interface AuditRecord {
  occurredAt: Date;
  event:
    | 'statement'
    | 'connection.open'
    | 'connection.refused'
    | 'connection.close'
    | 'connection.terminated'
    | 'credential.issue'
    | 'credential.revoke';
  outcome: 'ok' | 'error' | 'denied' | 'cancelled' | 'skipped';
  subject?: string | undefined;
  /** RFC 8693 actor chain: who acted on behalf of `subject`. */
  actors?: string[] | undefined;
  sessionId?: string | undefined;
  connectionId?: string | undefined;
  clientAddress?: string | undefined;
  /** The `dbgate connect` tunnel a connection came through (a UUID; see TUNNEL_ID_PARAMETER). */
  tunnelId?: string | undefined;
  target?: string | undefined;
  statement?: string | undefined;
  protocolStep?: string | undefined;
  sqlState?: string | undefined;
  rows?: number | undefined;
  durationMs?: number | undefined;
  detail?: Record<string, unknown> | undefined;
}

export interface AuditWriterOptions {
  gateway: string;
  /** Flush at least this often while records wait. */
  flushIntervalMs?: number;
  /** Flush as soon as this many records wait. */
  batchSize?: number;
  /** Refuse new statements once this many records wait unwritten. */
  maxPending?: number;
  /** Told when a flush fails, without the records (they may hold statement text). */
  onError?: (error: Error) => void;
}

/** Rows per INSERT: large enough to amortise the round trip, small enough to keep one statement short. */
const ROWS_PER_STATEMENT = 2_000;
const RETRY_MS = 1_000;

export class AuditWriter {
  private pending: AuditRecord[] = [];
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private closed = false;
  private readonly flushIntervalMs: number;
  private readonly batchSize: number;
  private readonly maxPending: number;

  constructor(
    private readonly store: StateStore,
    private readonly options: AuditWriterOptions,
  ) {
    this.flushIntervalMs = options.flushIntervalMs ?? 50;
    this.batchSize = options.batchSize ?? 500;
    this.maxPending = options.maxPending ?? 50_000;
  }

  /** False while the store is refusing writes or the backlog is too long: the gateway must not run statements. */
  get healthy(): boolean {
    return !this.failing && this.pending.length < this.maxPending;
  }

  append(record: AuditRecord): void {
    this.pending.push(record);
    if (this.pending.length >= this.batchSize) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.flushIntervalMs);
  }

  /** Writes everything pending; resolves when the records appended before the call are stored (or failed). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.flushing) await this.flushing;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.flushing = this.writeAll(batch).finally(() => {
      this.flushing = null;
    });
    await this.flushing;
  }

  /** Flushes and stops the timer. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  /** Writes a backlog in bounded statements; on failure keeps what was not written, in order, for the next try. */
  private async writeAll(batch: AuditRecord[]): Promise<void> {
    for (let offset = 0; offset < batch.length; offset += ROWS_PER_STATEMENT) {
      try {
        await this.insert(batch.slice(offset, offset + ROWS_PER_STATEMENT));
      } catch (error) {
        this.failing = true;
        this.pending = batch.slice(offset).concat(this.pending);
        this.options.onError?.(error as Error);
        if (this.closed) throw error;
        this.timer ??= setTimeout(() => void this.flush(), RETRY_MS);
        return;
      }
    }
    this.failing = false;
  }

  /**
   * One COPY FROM STDIN in text format: the cheapest way into PostgreSQL for both sides (no parameter parsing, no
   * per-row planning), and no limit on rows per statement.
   * @see https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2 (text format)
   */
  private async insert(records: AuditRecord[]): Promise<void> {
    const gateway = copyText(this.options.gateway);
    let text = '';
    for (const r of records) {
      text += `${r.occurredAt.toISOString()}\t${gateway}\t${r.event}\t${copyField(r.subject)}\t${copyText(arrayLiteral(r.actors ?? []))}\t${copyField(r.sessionId)}\t${copyField(r.connectionId)}\t${copyField(r.clientAddress)}\t${copyField(r.tunnelId)}\t${copyField(r.target)}\t${copyField(r.statement)}\t${copyField(r.protocolStep)}\t${r.outcome}\t${copyField(r.sqlState)}\t${r.rows ?? '\\N'}\t${r.durationMs ?? '\\N'}\t${copyText(JSON.stringify(r.detail ?? {}))}\n`;
    }
    const client = await this.store.pool.connect();
    try {
      const stream = client.query(copyFrom(
        `copy dbgate_audit_events (occurred_at, gateway, event, subject, actors, session_id, connection_id, client_addr,
           tunnel_id, target, statement, protocol_step, outcome, sqlstate, rows, duration_ms, detail) from stdin`));
      await pipeline(Readable.from([Buffer.from(text, 'utf8')]), stream);
      client.release();
    } catch (error) {
      // A connection whose COPY failed midway is not trusted again.
      client.release(true);
      throw error;
    }
  }
}

/** COPY text format escaping: backslash, and the row/column delimiters. */
function copyText(value: string): string {
  return value.replace(/[\\\n\r\t]/g, (char) => (char === '\\' ? '\\\\' : char === '\n' ? '\\n' : char === '\r' ? '\\r' : '\\t'));
}

function copyField(value: string | undefined): string {
  return value === undefined ? '\\N' : copyText(value);
}

/** A text[] literal: every element double-quoted with " and \\ escaped. */
function arrayLiteral(values: string[]): string {
  return `{${values.map((value) => `"${value.replace(/[\\"]/g, (char) => `\\${char}`)}"`).join(',')}}`;
}
