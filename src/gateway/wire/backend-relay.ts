/**
 * Relays the server's byte stream to the client while following its message boundaries.
 *
 * The common case costs nothing: bytes are forwarded as views of the chunks they arrived in, in the same runs.
 * Along the way every message except the bulk ones (DataRow, CopyData) is handed to `inspect` whole, which may let
 * it pass, replace it (a denial's ErrorResponse in place of the server's) or insert messages after it. Bulk bodies
 * are streamed through untouched and never buffered, so memory does not grow with result size. A non-bulk message
 * whose tail has not arrived yet is held back (it is small) until it is complete.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { BackendCode, MESSAGE_HEADER_BYTES } from './protocol.js';

/** What to do with one inspected message: forward it as is, or send these bytes instead (may be empty). */
export type RelayAction = 'forward' | { replaceWith: Buffer[] };

export type BackendMessageInspector = (type: number, body: Buffer) => RelayAction;


export class BackendRelay {
  /** Bytes of the message in progress that were received in earlier chunks and not yet forwarded. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Body bytes still expected for the message in progress; -1 while between messages. */
  private remaining = -1;
  private type = 0;
  private bulk = false;
  /** Total header + body bytes of a non-bulk message in progress, to validate against a hostile server. */
  private readonly maxMessageBytes: number;

  private readonly onDataRow: (() => void) | undefined;
  /**
   * When true, DataRows are collected and inspected like other messages (a result being masked). Switched by the
   * inspector on RowDescription; it takes effect from the next message, which is exactly the result's first row.
   */
  inspectDataRows = false;
  /**
   * While set (and `inspectDataRows` is on), DataRows that arrive whole in one chunk go here instead of to `inspect`:
   * the body is `chunk[start, end)`; a returned Buffer (a whole message) replaces the row, null forwards it as is.
   */
  rewriteRow: ((chunk: Buffer, start: number, end: number) => Buffer | null) | null = null;

  constructor(
    private readonly inspect: BackendMessageInspector,
    options: { maxMessageBytes?: number; /** Counts rows without reading them. */ onDataRow?: () => void } = {},
  ) {
    this.maxMessageBytes = options.maxMessageBytes ?? 0x3fffffff;
    this.onDataRow = options.onDataRow;
  }

  /** True when the relay sits exactly between two messages (safe to inject a message of our own). */
  get atMessageBoundary(): boolean {
    return this.remaining === -1 && this.heldBytes === 0;
  }

  /** Consumes one chunk and returns the buffers to write to the client, in order. */
  relay(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let runStart = 0; // start of the current run of bytes to forward as one view
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining === -1) {
        // At a message boundary (possibly with a partial header held from the previous chunk).
        const have = this.heldBytes + (chunk.length - offset);
        if (have < MESSAGE_HEADER_BYTES) {
          this.hold(out, chunk, runStart, offset, chunk.length);
          return out;
        }
        let length: number;
        if (this.heldBytes === 0) {
          this.type = chunk[offset]!;
          length = chunk.readInt32BE(offset + 1);
        } else {
          const header = this.heldHeader(chunk, offset);
          this.type = header.type;
          length = header.length;
        }
        if (length < 4 || length > this.maxMessageBytes) {
          throw new Error(`server sent an invalid message length ${length}`);
        }
        // DataRow and CopyData carry the results: streamed, never collected, unless a result is being masked.
        this.bulk = this.type === BackendCode.CopyData || (this.type === BackendCode.DataRow && !this.inspectDataRows);
        const headerInChunk = MESSAGE_HEADER_BYTES - this.heldBytes;
        const messageStart = offset;
        offset += headerInChunk;
        this.remaining = length - 4;
        if (this.bulk) {
          if (this.type === BackendCode.DataRow) this.onDataRow?.();
          // Bulk: flush whatever was held (header pieces) in order, then stream the body as part of the run.
          if (this.heldBytes > 0) {
            this.flushRun(out, chunk, runStart, messageStart);
            out.push(...this.held);
            this.clearHeld();
            runStart = messageStart;
          }
          const n = Math.min(this.remaining, chunk.length - offset);
          offset += n;
          this.remaining -= n;
          if (this.remaining === 0) this.remaining = -1;
          continue;
        }
        // Non-bulk: needs to be seen whole.
        const n = Math.min(this.remaining, chunk.length - offset);
        offset += n;
        this.remaining -= n;
        if (this.remaining > 0) {
          this.hold(out, chunk, runStart, messageStart, chunk.length);
          return out;
        }
        this.remaining = -1;
        runStart = this.complete(out, chunk, runStart, messageStart, offset);
        continue;
      }
      // Continuing a message that began in an earlier chunk.
      const n = Math.min(this.remaining, chunk.length - offset);
      offset += n;
      this.remaining -= n;
      if (this.bulk) {
        if (this.remaining === 0) this.remaining = -1;
        continue;
      }
      if (this.remaining > 0) {
        this.hold(out, chunk, runStart, 0, chunk.length);
        return out;
      }
      this.remaining = -1;
      runStart = this.complete(out, chunk, runStart, 0, offset);
    }
    this.flushRun(out, chunk, runStart, chunk.length);
    return out;
  }

  /** A non-bulk message ends at `end` in this chunk (it began at `start`, or earlier when bytes are held). */
  private complete(out: Buffer[], chunk: Buffer, runStart: number, start: number, end: number): number {
    if (this.type === BackendCode.DataRow) {
      this.onDataRow?.();
      if (this.rewriteRow && this.heldBytes === 0) {
        // The common case of a masked result: the row lies whole in this chunk; no views, no dispatch.
        const replacement = this.rewriteRow(chunk, start + MESSAGE_HEADER_BYTES, end);
        if (replacement === null) return runStart;
        this.flushRun(out, chunk, runStart, start);
        out.push(replacement);
        return end;
      }
    }
    if (this.heldBytes === 0) {
      // The whole message lies in this chunk: one view of its body, and when it passes, it stays part of the run.
      const action = this.inspect(this.type, chunk.subarray(start + MESSAGE_HEADER_BYTES, end));
      if (action === 'forward') return runStart;
      this.flushRun(out, chunk, runStart, start);
      out.push(...action.replaceWith);
      return end;
    }
    const whole = Buffer.concat([...this.held, chunk.subarray(start, end)], this.heldBytes + end - start);
    const action = this.inspect(this.type, whole.subarray(MESSAGE_HEADER_BYTES));
    if (action === 'forward') {
      this.flushRun(out, chunk, runStart, start);
      out.push(whole);
      this.clearHeld();
      return end;
    }
    this.flushRun(out, chunk, runStart, start);
    out.push(...action.replaceWith);
    this.clearHeld();
    return end;
  }

  private hold(out: Buffer[], chunk: Buffer, runStart: number, from: number, to: number): void {
    this.flushRun(out, chunk, runStart, from);
    if (to > from) {
      // A copy: the chunk's memory may be reused for the next read (upstream.ts ReusedReads). Held bytes are the start
      // of one small message at the end of a chunk.
      this.held.push(Buffer.from(chunk.subarray(from, to)));
      this.heldBytes += to - from;
    }
  }

  private flushRun(out: Buffer[], chunk: Buffer, runStart: number, end: number): void {
    if (end > runStart) out.push(runStart === 0 && end === chunk.length ? chunk : chunk.subarray(runStart, end));
  }

  private clearHeld(): void {
    this.held = [];
    this.heldBytes = 0;
  }

  /** Reads type + length of a header split between held bytes and this chunk. */
  private heldHeader(chunk: Buffer, offset: number): { type: number; length: number } {
    const header = Buffer.concat([...this.held, chunk.subarray(offset, offset + MESSAGE_HEADER_BYTES - this.heldBytes)]);
    return { type: header[0]!, length: header.readInt32BE(1) };
  }
}
