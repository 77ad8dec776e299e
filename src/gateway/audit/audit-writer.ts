/**
 * Writes audit records to the state store in batches (group commit): one multi-row INSERT per flush instead of one
 * round trip per statement, so auditing does not cost the statement path a state-store round trip.
 *
 * Fail closed: when the store stops accepting records, `healthy` turns false and the gateway refuses new
 * statements until a flush succeeds again, rather than letting unaudited statements through.
 */
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
   * One INSERT with one array parameter per column (unnest), so the parameter count stays at 16 whatever the batch
   * size — the protocol's Bind counts parameters in an Int16.
   */
  private async insert(records: AuditRecord[]): Promise<void> {
    const column = <T>(pick: (record: AuditRecord) => T): T[] => records.map(pick);
    await this.store.pool.query(
      `insert into dbgate_audit_events (occurred_at, gateway, event, subject, actors, session_id, connection_id,
         client_addr, target, statement, protocol_step, outcome, sqlstate, rows, duration_ms, detail)
       select t.occurred_at, $2, t.event, t.subject, array(select jsonb_array_elements_text(t.actors)), t.session_id,
              t.connection_id, t.client_addr, t.target, t.statement, t.protocol_step, t.outcome, t.sqlstate, t.rows,
              t.duration_ms, t.detail
         from unnest($1::timestamptz[], $3::text[], $4::text[], $5::jsonb[], $6::uuid[], $7::text[], $8::text[],
                     $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::float8[],
                     $16::jsonb[])
              with ordinality as t(occurred_at, event, subject, actors, session_id, connection_id, client_addr, target,
                                   statement, protocol_step, outcome, sqlstate, rows, duration_ms, detail, position)
        order by t.position`,
      [
        column((r) => r.occurredAt.toISOString()),
        this.options.gateway,
        column((r) => r.event),
        column((r) => r.subject ?? null),
        column((r) => JSON.stringify(r.actors ?? [])),
        column((r) => r.sessionId ?? null),
        column((r) => r.connectionId ?? null),
        column((r) => r.clientAddress ?? null),
        column((r) => r.target ?? null),
        column((r) => r.statement ?? null),
        column((r) => r.protocolStep ?? null),
        column((r) => r.outcome),
        column((r) => r.sqlState ?? null),
        column((r) => r.rows ?? null),
        column((r) => r.durationMs ?? null),
        column((r) => JSON.stringify(r.detail ?? {})),
      ],
    );
  }
}
