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

const COLUMNS = 16;

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
    this.flushing = this.write(batch).finally(() => {
      this.flushing = null;
    });
    await this.flushing;
  }

  /** Flushes and stops the timer. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private async write(batch: AuditRecord[]): Promise<void> {
    const values: unknown[] = [];
    const rows: string[] = [];
    for (const record of batch) {
      const base = values.length;
      rows.push(`(${Array.from({ length: COLUMNS }, (_, i) => `$${base + i + 1}`).join(', ')})`);
      values.push(
        record.occurredAt,
        this.options.gateway,
        record.event,
        record.subject ?? null,
        record.actors ?? [],
        record.sessionId ?? null,
        record.connectionId ?? null,
        record.clientAddress ?? null,
        record.target ?? null,
        record.statement ?? null,
        record.protocolStep ?? null,
        record.outcome,
        record.sqlState ?? null,
        record.rows ?? null,
        record.durationMs ?? null,
        JSON.stringify(record.detail ?? {}),
      );
    }
    try {
      await this.store.pool.query(
        `insert into dbgate_audit_events (occurred_at, gateway, event, subject, actors, session_id, connection_id,
           client_addr, target, statement, protocol_step, outcome, sqlstate, rows, duration_ms, detail)
         values ${rows.join(', ')}`,
        values,
      );
      this.failing = false;
    } catch (error) {
      this.failing = true;
      // Keep the records: they go out with the next successful flush.
      this.pending = batch.concat(this.pending);
      this.options.onError?.(error as Error);
      if (!this.closed) this.timer ??= setTimeout(() => void this.flush(), 1_000);
      else throw error;
    }
  }
}
