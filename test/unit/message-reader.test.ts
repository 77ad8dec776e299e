/**
 * PgMessageReader splits the client's byte stream into whole messages, whatever way TCP slices it.
 *
 * Frames are built with pg-protocol's serializer (node-postgres' own encoder), so the reader is checked against an
 * independent implementation of the framing, not against itself. As in pg-protocol's tests, the same stream is fed
 * split at every position, byte by byte and all at once, and must always yield the same messages.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import {
  parseStartupParameters,
  PgMessageReader,
  ProtocolViolation,
  readCString,
  type PgMessage,
} from '../../src/gateway/wire/message-reader.js';

/** What the reader must produce for one frame, worked out from the frame alone. */
interface ExpectedMessage {
  type: number;
  raw: Buffer;
  body: Buffer;
}

/** A 70 KB CopyData payload with a pattern, so a shifted or truncated copy cannot compare equal. */
const COPY_PAYLOAD = Buffer.from(Array.from({ length: 70 * 1024 }, (_, i) => (i * 31 + (i >> 8)) & 0xff));

const STARTUP = serialize.startup({ user: 'alice', database: 'orders', application_name: 'psql' });
const FRAMES: Buffer[] = [
  STARTUP,
  serialize.query('select * from customers'),
  serialize.parse({ name: 's1', text: 'select $1::int', types: [23] }),
  serialize.bind({ statement: 's1', portal: '', values: ['42'] }),
  serialize.execute({ portal: '', rows: 0 }),
  serialize.sync(),
  serialize.copyData(COPY_PAYLOAD),
];
const STREAM = Buffer.concat(FRAMES);

const EXPECTED: ExpectedMessage[] = FRAMES.map((frame, index) =>
  index === 0
    ? // The startup packet has no type byte: Int32 length, then the body (which begins with the protocol version).
      { type: 0, raw: frame, body: frame.subarray(4) }
    : // Type byte + Int32 length, then the body.
      { type: frame[0]!, raw: frame, body: frame.subarray(5) },
);

/** A chunk that owns its memory (not a slice of Node's shared pool), so `buffer` identity proves a view. */
function ownedCopy(bytes: Buffer): Buffer {
  const chunk = Buffer.from(new ArrayBuffer(bytes.length));
  bytes.copy(chunk);
  return chunk;
}

/** Feeds chunks the way a socket handler does: push, then take every complete message. */
function readAll(chunks: Buffer[]): { messages: PgMessage[]; reader: PgMessageReader } {
  const reader = new PgMessageReader();
  const messages: PgMessage[] = [];
  for (const chunk of chunks) {
    reader.push(chunk);
    for (let message = reader.next(); message !== null; message = reader.next()) {
      messages.push(message);
      // The StartupMessage ends the startup phase; from here on every message has a type byte.
      if (message.type === 0) reader.expectStartupPacket = false;
    }
  }
  return { messages, reader };
}

/** Compares without handing 70 KB buffers to the diff printer; reports the first message that differs. */
function mismatch(messages: PgMessage[]): string | undefined {
  if (messages.length !== EXPECTED.length) return `got ${messages.length} messages, expected ${EXPECTED.length}`;
  for (let i = 0; i < EXPECTED.length; i += 1) {
    const actual = messages[i]!;
    const expected = EXPECTED[i]!;
    if (actual.type !== expected.type) return `message ${i}: type ${actual.type}, expected ${expected.type}`;
    if (!actual.raw.equals(expected.raw)) return `message ${i}: raw bytes differ`;
    if (!actual.body.equals(expected.body)) return `message ${i}: body bytes differ`;
  }
  return undefined;
}

describe('PgMessageReader framing', () => {
  it('reads a startup packet followed by Query, Parse, Bind, Execute, Sync and a 70 KB CopyData in one chunk', () => {
    const { messages, reader } = readAll([STREAM]);
    expect(messages.map((m) => m.type)).toEqual([0, 0x51, 0x50, 0x42, 0x45, 0x53, 0x64]); // -, Q, P, B, E, S, d
    expect(mismatch(messages)).toBeUndefined();
    expect(messages[6]!.body.equals(COPY_PAYLOAD)).toBe(true);
    expect(reader.bufferedBytes).toBe(0);
  });

  it('yields the same messages when the stream is split into two chunks at every position', () => {
    for (let split = 1; split < STREAM.length; split += 1) {
      const { messages, reader } = readAll([STREAM.subarray(0, split), STREAM.subarray(split)]);
      const problem = mismatch(messages);
      if (problem !== undefined) expect.fail(`split at ${split}: ${problem}`);
      if (reader.bufferedBytes !== 0) expect.fail(`split at ${split}: ${reader.bufferedBytes} bytes left over`);
    }
  });

  it('yields the same messages when the stream arrives one byte at a time', () => {
    const bytes = Array.from({ length: STREAM.length }, (_, i) => STREAM.subarray(i, i + 1));
    const { messages, reader } = readAll(bytes);
    expect(mismatch(messages)).toBeUndefined();
    expect(reader.bufferedBytes).toBe(0);
  });

  it('returns nothing until a message is complete, then exactly that message', () => {
    const reader = new PgMessageReader();
    reader.expectStartupPacket = false;
    const query = serialize.query('select 1');
    reader.push(query.subarray(0, query.length - 1));
    expect(reader.next()).toBeNull();
    expect(reader.bufferedBytes).toBe(query.length - 1);
    reader.push(query.subarray(query.length - 1));
    expect(reader.next()?.raw.equals(query)).toBe(true);
    expect(reader.next()).toBeNull();
  });

  it('ignores empty chunks', () => {
    const { messages } = readAll([Buffer.alloc(0), STREAM.subarray(0, 10), Buffer.alloc(0), STREAM.subarray(10)]);
    expect(mismatch(messages)).toBeUndefined();
  });

  it('reads messages with an empty body (length 4)', () => {
    const reader = new PgMessageReader();
    reader.expectStartupPacket = false;
    reader.push(Buffer.concat([serialize.sync(), serialize.flush()]));
    const sync = reader.next();
    const flush = reader.next();
    expect(sync?.type).toBe(0x53); // 'S'
    expect(sync?.body.length).toBe(0);
    expect(flush?.type).toBe(0x48); // 'H'
    expect(reader.next()).toBeNull();
  });
});

describe('PgMessageReader zero copy', () => {
  it('returns every message of a single chunk as a view into that chunk', () => {
    const chunk = ownedCopy(STREAM);
    const { messages } = readAll([chunk]);
    let offset = 0;
    for (const [index, message] of messages.entries()) {
      expect(message.raw.buffer, `message ${index}`).toBe(chunk.buffer);
      expect(message.raw.byteOffset, `message ${index}`).toBe(chunk.byteOffset + offset);
      expect(message.body.buffer, `message ${index}`).toBe(chunk.buffer);
      offset += message.raw.length;
    }
    expect(offset).toBe(STREAM.length);
  });

  it('returns views for the messages that lie inside one chunk when the stream is split', () => {
    // Split in the middle of the Parse message: startup and Query lie in the first chunk, the Parse message spans
    // both, Bind onwards lie in the second.
    const parseStart = FRAMES[0]!.length + FRAMES[1]!.length;
    const split = parseStart + 3;
    const first = ownedCopy(STREAM.subarray(0, split));
    const second = ownedCopy(STREAM.subarray(split));
    const { messages } = readAll([first, second]);
    expect(mismatch(messages)).toBeUndefined();
    expect(messages[0]!.raw.buffer).toBe(first.buffer);
    expect(messages[1]!.raw.buffer).toBe(first.buffer);
    for (const message of messages.slice(3)) expect(message.raw.buffer).toBe(second.buffer);
  });

  it('gives a message that spans chunks its own bytes, unaffected by later reuse of the chunks', () => {
    const parseStart = FRAMES[0]!.length + FRAMES[1]!.length;
    const split = parseStart + 3;
    const first = ownedCopy(STREAM.subarray(0, split));
    const second = ownedCopy(STREAM.subarray(split));
    const { messages } = readAll([first, second]);
    first.fill(0);
    second.fill(0);
    expect(messages[2]!.raw.equals(FRAMES[2]!)).toBe(true);
  });
});

describe('PgMessageReader length validation', () => {
  /** Type byte + Int32 length, and nothing of the body. */
  function header(type: number, length: number): Buffer {
    const bytes = Buffer.alloc(5);
    bytes[0] = type;
    bytes.writeUInt32BE(length >>> 0, 1);
    return bytes;
  }

  function afterStartup(limits?: ConstructorParameters<typeof PgMessageReader>[0]): PgMessageReader {
    const reader = new PgMessageReader(limits);
    reader.expectStartupPacket = false;
    return reader;
  }

  it.each([
    ['0', 0],
    ['3 (shorter than the length field itself)', 3],
    ['0x7fffffff (over PostgreSQL\'s 1 GB message limit)', 0x7fffffff],
    ['0x80000000 (negative as Int32)', 0x80000000],
  ])('refuses a message length of %s as soon as the header is in, without waiting for the body', (_, length) => {
    const reader = afterStartup();
    reader.push(header(0x51, length));
    expect(() => reader.next()).toThrow(ProtocolViolation);
  });

  it('accepts a message length of exactly maxMessageBytes and refuses one byte more', () => {
    const atLimit = afterStartup({ maxMessageBytes: 1024 });
    atLimit.push(header(0x51, 1024));
    expect(atLimit.next()).toBeNull(); // waiting for the body
    const overLimit = afterStartup({ maxMessageBytes: 1024 });
    overLimit.push(header(0x51, 1025));
    expect(() => overLimit.next()).toThrow(ProtocolViolation);
  });

  it('refuses a length that arrives split across chunks', () => {
    const reader = afterStartup();
    const bytes = header(0x51, 3);
    for (const byte of bytes) reader.push(Buffer.from([byte]));
    expect(() => reader.next()).toThrow(ProtocolViolation);
  });

  it('refuses a startup packet over 10,000 bytes from its length field alone', () => {
    const reader = new PgMessageReader();
    const length = Buffer.alloc(4);
    length.writeInt32BE(10_001);
    reader.push(length);
    const violation = (() => {
      try {
        reader.next();
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    expect(violation).toBeInstanceOf(ProtocolViolation);
    expect((violation as ProtocolViolation).code).toBe('PROTOCOL_VIOLATION');
  });

  it('waits for a startup packet of exactly 10,000 bytes', () => {
    const reader = new PgMessageReader();
    const length = Buffer.alloc(4);
    length.writeInt32BE(10_000);
    reader.push(length);
    expect(reader.next()).toBeNull();
  });

  it.each([0, 4, 7, -1])('refuses a startup packet length of %i (less than length + code)', (value) => {
    const reader = new PgMessageReader();
    const length = Buffer.alloc(4);
    length.writeInt32BE(value);
    reader.push(length);
    expect(() => reader.next()).toThrow(ProtocolViolation);
  });

  it('reads an 8-byte SSLRequest as a startup-phase packet', () => {
    const reader = new PgMessageReader();
    reader.push(serialize.requestSsl());
    const message = reader.next();
    expect(message?.type).toBe(0);
    expect(message?.body.readInt32BE(0)).toBe(80877103);
  });
});

describe('PgMessageReader.drain', () => {
  it('returns exactly the bytes not yet returned as messages, and empties the reader', () => {
    const consumed = FRAMES[0]!.length + FRAMES[1]!.length;
    const cut1 = consumed - 5; // inside the Query message
    const cut2 = consumed + 7; // inside the Parse message
    const cut3 = consumed + 20;
    const { messages, reader } = readAll([
      STREAM.subarray(0, cut1),
      STREAM.subarray(cut1, cut2),
      STREAM.subarray(cut2, cut3),
    ]);
    expect(messages).toHaveLength(2);
    const rest = reader.drain();
    expect(Buffer.concat(rest).equals(STREAM.subarray(consumed, cut3))).toBe(true);
    expect(rest.every((chunk) => chunk.length > 0)).toBe(true);
    expect(reader.bufferedBytes).toBe(0);
    expect(reader.next()).toBeNull();
    expect(reader.drain()).toEqual([]);
  });

  it('returns nothing when every byte has been read', () => {
    const { reader } = readAll([STREAM]);
    expect(reader.drain()).toEqual([]);
  });
});

describe('readCString', () => {
  it('reads a UTF-8 string up to its NUL and returns the offset after it', () => {
    const bytes = Buffer.from('\x01héllo\0next\0', 'utf8');
    const first = readCString(bytes, 1);
    expect(first).toEqual({ value: 'héllo', next: 1 + Buffer.byteLength('héllo') + 1 });
    expect(readCString(bytes, first.next)).toEqual({ value: 'next', next: bytes.length });
  });

  it('reads an empty string', () => {
    expect(readCString(Buffer.from([0]), 0)).toEqual({ value: '', next: 1 });
  });

  it('refuses a string without a terminating NUL', () => {
    expect(() => readCString(Buffer.from('abc'), 0)).toThrow(ProtocolViolation);
  });
});

describe('parseStartupParameters', () => {
  it('reads the name/value pairs of a StartupMessage body', () => {
    const { messages } = readAll([STARTUP]);
    expect(Object.fromEntries(parseStartupParameters(messages[0]!.body))).toEqual({
      user: 'alice',
      database: 'orders',
      application_name: 'psql',
      client_encoding: 'UTF8', // pg-protocol always adds it
    });
  });

  it('refuses a parameter value that runs off the end of the packet', () => {
    const version = Buffer.alloc(4);
    version.writeInt32BE(196608);
    const body = Buffer.concat([version, Buffer.from('user\0alice', 'utf8')]);
    expect(() => parseStartupParameters(body)).toThrow(ProtocolViolation);
  });
});
