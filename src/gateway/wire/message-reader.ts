/**
 * Splits a PostgreSQL byte stream into whole messages (both directions share the framing; the startup phase of
 * the client side has packets without a type byte).
 *
 * TCP delivers arbitrary slices: one chunk may hold many messages (pipelining) or a fraction of one (a 64 MB Bind).
 * Messages that sit inside one chunk are returned as views into it (no copy); only a message that spans chunks is
 * assembled, once, into a buffer of its exact size. Lengths are validated before anything is buffered, so a hostile
 * length field costs nothing.
 *
 * @see https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
 */
import {
  MAX_MESSAGE_BYTES,
  MAX_STARTUP_PACKET_BYTES,
  MESSAGE_HEADER_BYTES,
  STARTUP_HEADER_BYTES,
} from './protocol.js';

/** A complete message. `raw` is the whole frame as received, ready to forward unchanged. */
export interface PgMessage {
  /** The type byte, or 0 for a startup-phase packet (which has none). */
  type: number;
  /** The whole frame: header and body. */
  raw: Buffer;
  /** The body after the header. For startup packets: after the Int32 length, so it begins with the request code. */
  body: Buffer;
}

/** The client broke the framing rules. The connection cannot be resynchronised and must be closed. */
export class ProtocolViolation extends Error {
  readonly code = 'PROTOCOL_VIOLATION';
}

export interface MessageReaderLimits {
  maxMessageBytes?: number;
  maxStartupPacketBytes?: number;
}

export class PgMessageReader {
  /** Startup-phase packets have no type byte; set false once the StartupMessage has been read. */
  expectStartupPacket = true;
  private readonly chunks: Buffer[] = [];
  /** Read position inside chunks[0]. */
  private offset = 0;
  private available = 0;
  /** Adjustable: a session accepts small messages until it has authenticated, then the configured limit. */
  maxMessageBytes: number;
  private readonly maxStartupPacketBytes: number;

  constructor(limits: MessageReaderLimits = {}) {
    this.maxMessageBytes = limits.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.maxStartupPacketBytes = limits.maxStartupPacketBytes ?? MAX_STARTUP_PACKET_BYTES;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.available += chunk.length;
  }

  /** Bytes received but not yet returned as a message. */
  get bufferedBytes(): number {
    return this.available;
  }

  /** Removes and returns every buffered byte, e.g. to hand the rest of the stream to a relay. */
  drain(): Buffer[] {
    const out = this.chunks.map((chunk, index) => (index === 0 ? chunk.subarray(this.offset) : chunk));
    this.chunks.length = 0;
    this.offset = 0;
    this.available = 0;
    return out.filter((chunk) => chunk.length > 0);
  }

  /** The next complete message, or null when more bytes are needed. Throws ProtocolViolation on a bad frame. */
  next(): PgMessage | null {
    if (this.expectStartupPacket) return this.nextStartupPacket();
    if (this.available < MESSAGE_HEADER_BYTES) return null;
    const type = this.byteAt(0);
    // Int32 length counts itself but not the type byte.
    const length = this.int32At(1);
    if (length < 4 || length > this.maxMessageBytes) {
      throw new ProtocolViolation(`invalid message length ${length} for message type 0x${type.toString(16)}`);
    }
    const total = 1 + length;
    if (this.available < total) return null;
    const raw = this.take(total);
    return { type, raw, body: raw.subarray(MESSAGE_HEADER_BYTES) };
  }

  private nextStartupPacket(): PgMessage | null {
    if (this.available < 4) return null;
    const length = this.int32At(0);
    if (length < STARTUP_HEADER_BYTES || length > this.maxStartupPacketBytes) {
      throw new ProtocolViolation(`invalid startup packet length ${length}`);
    }
    if (this.available < length) return null;
    const raw = this.take(length);
    return { type: 0, raw, body: raw.subarray(4) };
  }

  private byteAt(position: number): number {
    let index = 0;
    let at = this.offset + position;
    while (at >= this.chunks[index]!.length) {
      at -= this.chunks[index]!.length;
      index += 1;
    }
    return this.chunks[index]![at]!;
  }

  private int32At(position: number): number {
    const first = this.chunks[0]!;
    if (this.offset + position + 4 <= first.length) return first.readInt32BE(this.offset + position);
    // The four bytes straddle chunks: assemble them one by one (rare, and only 4 bytes).
    return (
      ((this.byteAt(position) << 24) |
        (this.byteAt(position + 1) << 16) |
        (this.byteAt(position + 2) << 8) |
        this.byteAt(position + 3)) |
      0
    );
  }

  /** Removes `count` bytes from the front; a view when they sit in one chunk, otherwise one exact-size copy. */
  private take(count: number): Buffer {
    const first = this.chunks[0]!;
    this.available -= count;
    if (this.offset + count <= first.length) {
      const view = first.subarray(this.offset, this.offset + count);
      this.offset += count;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
      return view;
    }
    const out = Buffer.allocUnsafe(count);
    let written = 0;
    while (written < count) {
      const chunk = this.chunks[0]!;
      const n = Math.min(chunk.length - this.offset, count - written);
      chunk.copy(out, written, this.offset, this.offset + n);
      written += n;
      this.offset += n;
      if (this.offset === chunk.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    return out;
  }
}

/** Reads a C string (NUL-terminated, UTF-8) at `offset`; returns the value and the offset after the NUL. */
export function readCString(buffer: Buffer, offset: number): { value: string; next: number } {
  const end = buffer.indexOf(0, offset);
  if (end < 0) throw new ProtocolViolation('unterminated string in message');
  return { value: buffer.toString('utf8', offset, end), next: end + 1 };
}

/** Parses the body of a StartupMessage (after Int32 length and Int32 protocol version): name/value pairs. */
export function parseStartupParameters(body: Buffer): Map<string, string> {
  const parameters = new Map<string, string>();
  let offset = 4; // skip the protocol version
  while (offset < body.length && body[offset] !== 0) {
    const name = readCString(body, offset);
    const value = readCString(body, name.next);
    parameters.set(name.value, value.value);
    offset = value.next;
  }
  return parameters;
}
