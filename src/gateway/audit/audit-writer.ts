/**
 * Writes audit records to the state store in batches (group commit): one COPY per flush instead of one round trip
 * per statement, so auditing does not cost the statement path a state-store round trip.
 *
 * Fail closed: when the store stops accepting records, `healthy` turns false and the gateway refuses new
 * statements until a flush succeeds again, rather than letting unaudited statements through. A backlog that is only
 * full (the store is slow, not failing) holds statements first (`holding`, `waitForRoom`): a short stall slows
 * clients down instead of failing their statements.
 */
import type { Writable } from 'node:stream';
import { from as copyFrom } from 'pg-copy-streams';
import type { StateStore } from '../store/state-store.js';

/** Who a record is about: the fields every record of one connection shares. */
export interface AuditParty {
  subject?: string | undefined;
  /** RFC 8693 actor chain: who acted on behalf of `subject`. */
  actors?: string[] | undefined;
  sessionId?: string | undefined;
  connectionId?: string | undefined;
  clientAddress?: string | undefined;
  /** The `dbgate connect` tunnel a connection came through (a UUID; see TUNNEL_ID_PARAMETER). */
  tunnelId?: string | undefined;
  target?: string | undefined;
}

/** What happened. */
export interface AuditEvent {
  /** A Date, or milliseconds since the epoch. */
  occurredAt: Date | number;
  event:
    | 'statement'
    | 'connection.open'
    | 'connection.refused'
    | 'connection.close'
    | 'connection.terminated'
    | 'credential.issue'
    | 'credential.revoke';
  outcome: 'ok' | 'error' | 'denied' | 'cancelled' | 'skipped';
  statement?: string | undefined;
  protocolStep?: string | undefined;
  sqlState?: string | undefined;
  rows?: number | undefined;
  durationMs?: number | undefined;
  /** JSON details. A frozen object is encoded once however many records share it (a decision's rule, say). */
  detail?: Readonly<Record<string, unknown>> | undefined;
}

export type AuditRecord = AuditParty & AuditEvent;

/** A party's fields, encoded for COPY once (`AuditWriter.party`): statement records of a connection repeat them. */
export class EncodedParty {
  /** @internal The party's columns of a COPY line, each followed by a tab, in UTF-8. */
  constructor(readonly columns: Buffer) {}
}

export interface AuditWriterOptions {
  gateway: string;
  /** Flush at least this often while records wait. */
  flushIntervalMs?: number;
  /** Flush as soon as this many records wait. */
  batchSize?: number;
  /** Hold new statements once this many records wait unwritten (`holding`), refuse them after `maxHoldMs`. */
  maxPending?: number;
  /** How long statements are held while the backlog is full and the store is still writing, before being refused. */
  maxHoldMs?: number;
  /** Told when a flush fails, without the records (they may hold statement text). */
  onError?: (error: Error) => void;
  /** Told when the backlog reaches `maxPending` (statements are held, then refused, until it shrinks). */
  onBacklogFull?: (records: number) => void;
}

/** Encoded records, whole COPY lines, in order. */
interface Chunk {
  bytes: Buffer;
  records: number;
}

/**
 * Records are encoded as they are appended, into chunks of this size outside the JavaScript heap: a record waiting
 * for its flush is then a few hundred bytes of a buffer, not an object graph the garbage collector copies and
 * promotes (at thousands of statements per second, tens of milliseconds of waiting outlive a young-generation cycle).
 */
const CHUNK_BYTES = 64 * 1024;
/** Bytes per COPY: large enough to amortise the round trip, small enough to keep one statement short. */
const BYTES_PER_STATEMENT = 1024 * 1024;
const RETRY_MS = 1_000;
/**
 * Bytes a line takes besides its party, statement and detail, at most: a timestamp (24), the event (≤ 21), the
 * protocol step (≤ 13), the outcome (≤ 9), a SQLSTATE (5), rows and duration (a number prints in ≤ 24 characters)
 * and 10 delimiters: 130.
 */
const FIXED_LINE_BYTES = 160;

/** The table's columns in the order of an encoded line: the party's first, so they can be encoded once. */
const COPY_STATEMENT = `copy dbgate_audit_events (gateway, subject, actors, session_id, connection_id, client_addr, tunnel_id, target,
  occurred_at, event, statement, protocol_step, outcome, sqlstate, rows, duration_ms, detail) from stdin`;

export class AuditWriter {
  /** Sealed chunks waiting for a flush, then the one being filled (`filling`, `filled` bytes, `fillingRecords`). */
  private pending: Chunk[] = [];
  private filling: Buffer | null = null;
  private filled = 0;
  private fillingRecords = 0;
  /** Records appended since the last flush began. */
  private queuedRecords = 0;
  /** Records not yet written: queued, or in a flush under way or failed. */
  private unwrittenRecords = 0;
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private closed = false;
  /** When the backlog last reached `maxPending` (NaN: it is below). */
  private fullSince = Number.NaN;
  /** `waitForRoom` callers, released together (`releaseHeld`), and the timer ending their hold. */
  private held: Array<() => void> = [];
  private holdTimer: NodeJS.Timeout | null = null;
  private readonly flushIntervalMs: number;
  private readonly batchSize: number;
  private readonly maxPending: number;
  private readonly maxHoldMs: number;
  private readonly gateway: string;
  /** The last timestamp encoded: statements finishing in the same millisecond share it. */
  private lastTime = Number.NaN;
  private lastTimeText = '';
  private readonly encodedDetails = new WeakMap<object, string>();

  constructor(
    private readonly store: StateStore,
    private readonly options: AuditWriterOptions,
  ) {
    this.flushIntervalMs = options.flushIntervalMs ?? 50;
    this.batchSize = options.batchSize ?? 500;
    this.maxPending = options.maxPending ?? 50_000;
    this.maxHoldMs = options.maxHoldMs ?? 5_000;
    this.gateway = copyText(options.gateway);
  }

  /** False while the store is refusing writes or the backlog is too long: the gateway must not run statements. */
  get healthy(): boolean {
    return !this.failing && this.unwrittenRecords < this.maxPending;
  }

  /**
   * True while the backlog is full but the store is writing, for at most `maxHoldMs`: statements should wait
   * (`waitForRoom`) rather than be refused. Once the hold is over, or when a write fails, they are refused.
   */
  get holding(): boolean {
    return this.unwrittenRecords >= this.maxPending && !this.failing && Date.now() - this.fullSince < this.maxHoldMs;
  }

  /** Resolves once `holding` is over: the backlog shrank, a write failed, or the hold time ran out. */
  waitForRoom(): Promise<void> {
    if (!this.holding) return Promise.resolve();
    return new Promise((resolve) => {
      this.held.push(resolve);
      this.holdTimer ??= setTimeout(() => this.releaseHeld(), this.fullSince + this.maxHoldMs - Date.now());
    });
  }

  /** Encodes `party` for `appendFor`. */
  party(party: AuditParty): EncodedParty {
    return new EncodedParty(Buffer.from(`${this.gateway}\t${copyField(party.subject)}\t${copyText(arrayLiteral(party.actors ?? []))}\t` +
      `${copyField(party.sessionId)}\t${copyField(party.connectionId)}\t${copyField(party.clientAddress)}\t` +
      `${copyField(party.tunnelId)}\t${copyField(party.target)}\t`, 'utf8'));
  }

  append(record: AuditRecord): void {
    this.appendFor(this.party(record), record);
  }

  /** Appends a record about an encoded party (the statements of one connection). */
  appendFor(party: EncodedParty, event: AuditEvent): void {
    // The party's bytes are copied as they are: encoded once per connection, not again into a string per statement.
    const statement = copyField(event.statement);
    const detail = this.detailText(event.detail);
    const texts = statement.length + detail.length;
    // A UTF-16 code unit takes at most 3 bytes in UTF-8; long texts (a huge statement) are measured instead.
    const room = party.columns.length + FIXED_LINE_BYTES +
      (texts <= CHUNK_BYTES / 3 ? texts * 3 : Buffer.byteLength(statement, 'utf8') + Buffer.byteLength(detail, 'utf8'));
    const chunk = this.chunkWithRoom(room);
    const at = this.filled + party.columns.copy(chunk, this.filled);
    // Then the rest of the line as one string: one write costs less than a write per field.
    this.filled = at + chunk.write(`${this.timeText(event.occurredAt)}\t${event.event}\t${statement}\t` +
      `${copyField(event.protocolStep)}\t${event.outcome}\t${copyField(event.sqlState)}\t${event.rows ?? '\\N'}\t` +
      `${event.durationMs ?? '\\N'}\t${detail}\n`, at, 'utf8');
    this.fillingRecords += 1;
    this.queuedRecords += 1;
    this.unwrittenRecords += 1;
    if (this.unwrittenRecords === this.maxPending) {
      this.fullSince = Date.now();
      this.options.onBacklogFull?.(this.unwrittenRecords);
    }
    // Once per batch: while an earlier flush is still writing, this one waits for it and then takes all queued.
    if (this.queuedRecords === this.batchSize) this.flushInBackground();
    else this.timer ??= setTimeout(() => this.flushInBackground(), this.flushIntervalMs);
  }

  /** Writes everything pending; resolves when the records appended before the call are stored (or failed). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.flushing) await this.flushing;
    this.seal();
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.queuedRecords = 0;
    this.flushing = this.writeAll(batch).finally(() => {
      this.flushing = null;
    });
    await this.flushing;
  }

  /**
   * A flush nobody awaits (a batch filled up, the timer ran). Its failure was reported (`onError`) and its records
   * kept for the next try; after `close` (a session that ended late appended a record) it has nowhere to go.
   */
  private flushInBackground(): void {
    this.flush().catch(() => {});
  }

  /** Flushes and stops the timer. */
  async close(): Promise<void> {
    this.closed = true;
    try {
      await this.flush();
    } finally {
      this.releaseHeld();
    }
  }

  /** The chunk being filled when `room` more bytes fit in it, or a new one. */
  private chunkWithRoom(room: number): Buffer {
    if (this.filling === null || this.filling.length - this.filled < room) {
      this.seal();
      this.filling = Buffer.allocUnsafeSlow(Math.max(CHUNK_BYTES, room));
    }
    return this.filling;
  }

  /** Queues the chunk being filled. */
  private seal(): void {
    if (this.filling === null || this.fillingRecords === 0) return;
    this.pending.push({ bytes: this.filling.subarray(0, this.filled), records: this.fillingRecords });
    this.filling = null;
    this.filled = 0;
    this.fillingRecords = 0;
  }

  /** Writes a backlog in bounded statements; on failure keeps what was not written, in order, for the next try. */
  private async writeAll(batch: Chunk[]): Promise<void> {
    let start = 0;
    while (start < batch.length) {
      // At least one chunk, and more while the statement stays within BYTES_PER_STATEMENT.
      let end = start + 1;
      let bytes = batch[start]!.bytes.length;
      while (end < batch.length && bytes + batch[end]!.bytes.length <= BYTES_PER_STATEMENT) bytes += batch[end++]!.bytes.length;
      const statement = batch.slice(start, end);
      try {
        await this.insert(statement);
      } catch (error) {
        this.failing = true;
        this.pending = batch.slice(start).concat(this.pending);
        this.options.onError?.(error as Error);
        // Held statements are refused now: the store is failing, not slow.
        this.releaseHeld();
        if (this.closed) throw error;
        this.timer ??= setTimeout(() => this.flushInBackground(), RETRY_MS);
        return;
      }
      for (const chunk of statement) this.unwrittenRecords -= chunk.records;
      if (this.unwrittenRecords < this.maxPending && !Number.isNaN(this.fullSince)) {
        this.fullSince = Number.NaN;
        this.releaseHeld();
      }
      start = end;
    }
    this.failing = false;
  }

  private releaseHeld(): void {
    if (this.holdTimer) {
      clearTimeout(this.holdTimer);
      this.holdTimer = null;
    }
    const held = this.held;
    this.held = [];
    for (const resolve of held) resolve();
  }

  /**
   * One COPY FROM STDIN in text format: the cheapest way into PostgreSQL for both sides (no parameter parsing, no
   * per-row planning), and no limit on rows per statement.
   * @see https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2 (text format)
   */
  private async insert(chunks: Chunk[]): Promise<void> {
    const client = await this.store.pool.connect();
    try {
      await copyInto(client.query(copyFrom(COPY_STATEMENT)), chunks);
      client.release();
    } catch (error) {
      // A connection whose COPY failed midway is not trusted again.
      client.release(true);
      throw error;
    }
  }

  private timeText(occurredAt: Date | number): string {
    const time = typeof occurredAt === 'number' ? occurredAt : occurredAt.getTime();
    if (time !== this.lastTime) {
      this.lastTime = time;
      this.lastTimeText = new Date(time).toISOString();
    }
    return this.lastTimeText;
  }

  private detailText(detail: Readonly<Record<string, unknown>> | undefined): string {
    if (detail === undefined) return '{}';
    const known = this.encodedDetails.get(detail);
    if (known !== undefined) return known;
    const text = copyText(JSON.stringify(detail));
    if (Object.isFrozen(detail)) this.encodedDetails.set(detail, text);
    return text;
  }
}

/**
 * Writes `chunks` into a COPY FROM STDIN stream, minding its backpressure, and ends it; resolves once the server
 * has committed them. By hand rather than `pipeline(Readable.from(…))`, whose machinery made a one-record flush cost
 * the gateway ~600 µs of CPU instead of ~160 µs (measured): a flush runs on the event loop every statement waits on.
 */
function copyInto(stream: Writable, chunks: readonly Chunk[]): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.once('error', reject);
    stream.once('finish', resolve);
    let next = 0;
    const writeMore = (): void => {
      while (next < chunks.length) {
        if (!stream.write(chunks[next++]!.bytes)) {
          stream.once('drain', writeMore);
          return;
        }
      }
      stream.end();
    };
    writeMore();
  });
}

const NEEDS_ESCAPE = /[\\\n\r\t]/;

/** COPY text format escaping: backslash, and the row/column delimiters. */
function copyText(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/[\\\n\r\t]/g, (char) => (char === '\\' ? '\\\\' : char === '\n' ? '\\n' : char === '\r' ? '\\r' : '\\t'));
}

function copyField(value: string | undefined): string {
  return value === undefined ? '\\N' : copyText(value);
}

/** A text[] literal: every element double-quoted with " and \\ escaped. */
function arrayLiteral(values: string[]): string {
  return `{${values.map((value) => `"${value.replace(/[\\"]/g, (char) => `\\${char}`)}"`).join(',')}}`;
}
