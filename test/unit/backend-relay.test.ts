/**
 * BackendRelay forwards the server's byte stream to the client, follows message boundaries however TCP slices the
 * stream, hands every small message to the inspector whole, and streams result rows (DataRow, CopyData) through
 * without collecting them.
 *
 * Streams are fed split at every position and at seeded random positions; the expectations are computed from the
 * frames the test built, not from the relay.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { describe, expect, it } from 'vitest';
import { BackendRelay, type BackendMessageInspector, type RelayAction } from '../../src/gateway/wire/backend-relay.js';

// ── building server messages ─────────────────────────────────────────────────────────────────────────────────────

const int16 = (value: number): Buffer => {
  const bytes = Buffer.alloc(2);
  bytes.writeInt16BE(value);
  return bytes;
};
const int32 = (value: number): Buffer => {
  const bytes = Buffer.alloc(4);
  bytes.writeInt32BE(value);
  return bytes;
};
const cstring = (text: string): Buffer => Buffer.from(`${text}\0`, 'utf8');

/** Type byte, Int32 length (counting itself, not the type byte), body. */
function frame(type: string, ...body: Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  return Buffer.concat([Buffer.from(type, 'latin1'), int32(payload.length + 4), payload]);
}

function rowDescription(columns: string[]): Buffer {
  const fields = columns.map((name, index) =>
    // name, table oid, column number, type oid (text), type size, type modifier, format (text)
    Buffer.concat([cstring(name), int32(16384), int16(index + 1), int32(25), int16(-1), int32(-1), int16(0)]),
  );
  return frame('T', int16(columns.length), ...fields);
}

function dataRow(values: Array<Buffer | null>): Buffer {
  const columns = values.map((value) => (value === null ? int32(-1) : Buffer.concat([int32(value.length), value])));
  return frame('D', int16(values.length), ...columns);
}

function noticeOrError(type: 'N' | 'E', severity: string, sqlState: string, message: string): Buffer {
  return frame(
    type,
    Buffer.from('S'), cstring(severity),
    Buffer.from('V'), cstring(severity),
    Buffer.from('C'), cstring(sqlState),
    Buffer.from('M'), cstring(message),
    Buffer.from([0]),
  );
}

const commandComplete = (tag: string): Buffer => frame('C', cstring(tag));
const readyForQuery = (status: 'I' | 'T' | 'E'): Buffer => frame('Z', Buffer.from(status));

/** Deterministic bytes, so a shifted or truncated copy cannot compare equal. */
function patterned(length: number, seed: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (i * 131 + seed + (i >> 9)) & 0xff));
}

// ── the streams ─────────────────────────────────────────────────────────────────────────────────────────────────

const ERROR_RESPONSE = noticeOrError('E', 'ERROR', '42501', 'permission denied for table customers');
const DATA_ROW_COUNT_SMALL = 40;

/** Small messages of every shape the relay distinguishes: empty bodies, many rows, an error, COPY OUT. */
const SMALL_FRAMES: Buffer[] = [
  frame('1'), // ParseComplete: empty body
  frame('2'), // BindComplete: empty body
  rowDescription(['id', 'email', 'note']),
  ...Array.from({ length: DATA_ROW_COUNT_SMALL }, (_, i) =>
    dataRow([Buffer.from(String(i)), Buffer.from(`user${i}@example.com`), i % 3 === 0 ? null : Buffer.alloc(0)]),
  ),
  commandComplete(`SELECT ${DATA_ROW_COUNT_SMALL}`),
  readyForQuery('I'),
  ERROR_RESPONSE,
  readyForQuery('I'),
  frame('H', Buffer.from([0]), int16(1), int16(0)), // CopyOutResponse, text, one column
  frame('d', Buffer.from('1\talice\n')),
  frame('d'), // CopyData with no data: legal, and a bulk message with an empty body
  frame('d', Buffer.from('2\tbob\n')),
  frame('c'), // CopyDone
  commandComplete('COPY 2'),
  readyForQuery('I'),
];

/** Large messages: a 100 KB DataRow is streamed; a 20 KB NoticeResponse must be held until it is whole. */
const LARGE_FRAMES: Buffer[] = [
  rowDescription(['blob']),
  dataRow([patterned(100 * 1024, 7)]),
  commandComplete('SELECT 1'),
  noticeOrError('N', 'NOTICE', '00000', `large notice ${'x'.repeat(20 * 1024)}`),
  ERROR_RESPONSE,
  readyForQuery('I'),
];

interface MessageSpan {
  type: number;
  start: number;
  end: number;
  body: Buffer;
  bulk: boolean;
}

/** A stream with everything the test needs to know about it, derived from the frames. */
interface TestStream {
  bytes: Buffer;
  messages: MessageSpan[];
  boundaries: Set<number>;
  dataRows: number;
}

function makeStream(frames: Buffer[]): TestStream {
  // Own memory, not Node's shared pool: a view of it is recognisable by `buffer` identity.
  const bytes = Buffer.from(new ArrayBuffer(frames.reduce((n, f) => n + f.length, 0)));
  Buffer.concat(frames).copy(bytes);
  const messages: MessageSpan[] = [];
  let start = 0;
  for (const f of frames) {
    const type = f[0]!;
    messages.push({
      type,
      start,
      end: start + f.length,
      body: bytes.subarray(start + 5, start + f.length),
      bulk: type === 0x44 || type === 0x64, // 'D', 'd'
    });
    start += f.length;
  }
  return {
    bytes,
    messages,
    boundaries: new Set([0, ...messages.map((m) => m.end)]),
    dataRows: messages.filter((m) => m.type === 0x44).length,
  };
}

const SMALL = makeStream(SMALL_FRAMES);
const LARGE = makeStream(LARGE_FRAMES);
const STREAMS = [
  ['small messages', SMALL],
  ['large DataRow and NoticeResponse', LARGE],
] as const;

// ── running the relay ───────────────────────────────────────────────────────────────────────────────────────────

interface RelayRun {
  /** Buffers returned by relay(), per chunk. */
  outputs: Buffer[][];
  inspected: Array<{ type: number; body: Buffer }>;
  dataRows: number;
  /** atMessageBoundary after each chunk. */
  boundaryAfterChunk: boolean[];
}

function runRelay(chunks: Buffer[], decide: (type: number, body: Buffer) => RelayAction = () => 'forward'): RelayRun {
  const run: RelayRun = { outputs: [], inspected: [], dataRows: 0, boundaryAfterChunk: [] };
  const inspect: BackendMessageInspector = (type, body) => {
    run.inspected.push({ type, body });
    return decide(type, body);
  };
  const relay = new BackendRelay(inspect, { onDataRow: () => (run.dataRows += 1) });
  for (const chunk of chunks) {
    run.outputs.push(relay.relay(chunk));
    run.boundaryAfterChunk.push(relay.atMessageBoundary);
  }
  return run;
}

/** Cuts `bytes` at the given sorted positions; the chunks are views, so forwarded views are recognisable. */
function cut(bytes: Buffer, positions: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let previous = 0;
  for (const position of [...positions, bytes.length]) {
    chunks.push(bytes.subarray(previous, position));
    previous = position;
  }
  return chunks;
}

/**
 * The expected output as segments of known buffers. An output buffer that is a view of exactly the right place in
 * a segment's source is equal without comparing bytes (this keeps "every split" of a 120 KB stream fast); anything
 * else is compared byte by byte.
 */
interface Segment {
  source: Buffer;
  outStart: number;
}

interface ExpectedOutput {
  segments: Segment[];
  bytes: Buffer;
}

function expectedOutput(segments: Segment[]): ExpectedOutput {
  return { segments, bytes: Buffer.concat(segments.map((s) => s.source)) };
}

function outputMismatch(outputs: Buffer[], { segments, bytes: expected }: ExpectedOutput): string | undefined {
  let position = 0;
  for (const [index, out] of outputs.entries()) {
    const end = position + out.length;
    if (end > expected.length) return `output overruns the expected ${expected.length} bytes at buffer ${index}`;
    const segment = segments.find((s) => s.outStart <= position && end <= s.outStart + s.source.length);
    const sameMemory =
      segment !== undefined &&
      out.buffer === segment.source.buffer &&
      out.byteOffset === segment.source.byteOffset + (position - segment.outStart);
    if (!sameMemory && !out.equals(expected.subarray(position, end))) {
      return `output buffer ${index} (bytes ${position}..${end}) differs from the expected output`;
    }
    position = end;
  }
  if (position !== expected.length) return `output has ${position} bytes, expected ${expected.length}`;
  return undefined;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return (a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.length === b.length) || a.equals(b);
}

function inspectedMismatch(run: RelayRun, stream: TestStream): string | undefined {
  const expected = stream.messages.filter((m) => !m.bulk);
  if (run.inspected.length !== expected.length) {
    return `inspector saw ${run.inspected.length} messages, expected ${expected.length}`;
  }
  for (let i = 0; i < expected.length; i += 1) {
    const seen = run.inspected[i]!;
    const message = expected[i]!;
    if (seen.type !== message.type) return `inspected message ${i}: type ${seen.type}, expected ${message.type}`;
    if (!sameBytes(seen.body, message.body)) return `inspected message ${i} (type ${message.type}): body differs`;
  }
  return undefined;
}

/**
 * How many bytes of the first `position` the relay may already have forwarded: everything but an incomplete header,
 * and everything but an incomplete non-bulk message (which the inspector must see whole first).
 */
function forwardableBefore(stream: TestStream, position: number): number {
  const message = stream.messages.find((m) => m.start < position && position < m.end);
  if (message === undefined) return position; // at a boundary
  const headerComplete = position - message.start >= 5;
  return headerComplete && message.bulk ? position : message.start;
}

/** Checks one run of a forward-everything relay; returns what is wrong, if anything. */
function forwardAllProblems(stream: TestStream, chunks: Buffer[]): string | undefined {
  const run = runRelay(chunks);
  const unchanged: ExpectedOutput = { segments: [{ source: stream.bytes, outStart: 0 }], bytes: stream.bytes };
  const problem = outputMismatch(run.outputs.flat(), unchanged) ?? inspectedMismatch(run, stream);
  if (problem !== undefined) return problem;
  if (run.dataRows !== stream.dataRows) return `onDataRow counted ${run.dataRows}, expected ${stream.dataRows}`;
  let received = 0;
  let forwarded = 0;
  for (const [index, chunk] of chunks.entries()) {
    received += chunk.length;
    forwarded += run.outputs[index]!.reduce((n, b) => n + b.length, 0);
    if (forwarded !== forwardableBefore(stream, received)) {
      return `after ${received} bytes: forwarded ${forwarded}, expected ${forwardableBefore(stream, received)}`;
    }
    if (run.boundaryAfterChunk[index] !== stream.boundaries.has(received)) {
      return `after ${received} bytes: atMessageBoundary is ${run.boundaryAfterChunk[index]}`;
    }
  }
  return undefined;
}

/** mulberry32: a tiny seeded PRNG, so a failing random split can be reproduced. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Every split position, or, with `skipBulkInterior`, every one except those more than 16 bytes inside a DataRow or
 * CopyData body (where a split only moves where a streamed run is cut, which the forwarding tests cover everywhere).
 */
function splitPositions(stream: TestStream, { skipBulkInterior = false } = {}): number[] {
  const positions: number[] = [];
  for (let p = 1; p < stream.bytes.length; p += 1) {
    const inside = stream.messages.find((m) => m.start < p && p < m.end);
    if (skipBulkInterior && inside?.bulk && p > inside.start + 5 + 16 && p < inside.end - 16) continue;
    positions.push(p);
  }
  return positions;
}

function randomCuts(random: () => number, length: number): number[] {
  const count = 1 + Math.floor(random() * 30);
  const positions = new Set<number>();
  for (let i = 0; i < count; i += 1) positions.add(1 + Math.floor(random() * (length - 1)));
  return [...positions].sort((a, b) => a - b);
}

// ── the specification ───────────────────────────────────────────────────────────────────────────────────────────

describe('BackendRelay forwarding', () => {
  it.each(STREAMS)('forwards %s unchanged in one chunk, as views of it', (_, stream) => {
    const run = runRelay([stream.bytes]);
    expect(Buffer.concat(run.outputs.flat()).equals(stream.bytes)).toBe(true);
    // Nothing is copied: the whole chunk goes out as one run.
    expect(run.outputs[0]).toHaveLength(1);
    expect(run.outputs[0]![0]!.buffer).toBe(stream.bytes.buffer);
  });

  it.each(STREAMS)('forwards %s unchanged when split into two chunks at every position', (_, stream) => {
    for (const split of splitPositions(stream)) {
      const problem = forwardAllProblems(stream, cut(stream.bytes, [split]));
      if (problem !== undefined) expect.fail(`split at ${split}: ${problem}`);
    }
  });

  it.each(STREAMS)('forwards %s unchanged when split at seeded random positions', (_, stream) => {
    const random = seededRandom(0xdb9a7e);
    for (let iteration = 0; iteration < 300; iteration += 1) {
      const positions = randomCuts(random, stream.bytes.length);
      const problem = forwardAllProblems(stream, cut(stream.bytes, positions));
      if (problem !== undefined) expect.fail(`cuts at ${positions.join(',')}: ${problem}`);
    }
  });

  it('forwards small messages unchanged when they arrive one byte at a time', () => {
    const positions = Array.from({ length: SMALL.bytes.length - 1 }, (_, i) => i + 1);
    expect(forwardAllProblems(SMALL, cut(SMALL.bytes, positions))).toBeUndefined();
  });

  it('streams a 100 KB DataRow as views of the chunks it arrives in, holding nothing back', () => {
    const row = LARGE.messages[1]!;
    expect(row.type).toBe(0x44);
    const positions: number[] = [];
    for (let p = row.start + 5 + 1000; p < row.end; p += 1000) positions.push(p);
    const chunks = cut(LARGE.bytes, positions);
    const run = runRelay(chunks);
    // Every chunk that lies inside the row's body goes out at once, as that very chunk.
    for (let i = 1; i < chunks.length - 1; i += 1) {
      expect(run.outputs[i]).toHaveLength(1);
      expect(run.outputs[i]![0]!.buffer).toBe(chunks[i]!.buffer);
      expect(run.outputs[i]![0]!.byteOffset).toBe(chunks[i]!.byteOffset);
      expect(run.outputs[i]![0]!.length).toBe(chunks[i]!.length);
      expect(run.boundaryAfterChunk[i]).toBe(false);
    }
    expect(run.inspected.map((m) => m.type)).not.toContain(0x44);
  });
});

describe('BackendRelay inspection', () => {
  it('shows the inspector every message except DataRow and CopyData, once, with its body', () => {
    const run = runRelay([SMALL.bytes]);
    expect(run.inspected.map((m) => String.fromCharCode(m.type)).join('')).toBe('12TCZEZHcCZ');
    expect(inspectedMismatch(run, SMALL)).toBeUndefined();
  });

  it('counts every DataRow through onDataRow without showing it to the inspector', () => {
    const run = runRelay([SMALL.bytes]);
    expect(run.dataRows).toBe(DATA_ROW_COUNT_SMALL);
    expect(run.inspected.some((m) => m.type === 0x44 || m.type === 0x64)).toBe(false);
  });

  it('hands the inspector a 20 KB NoticeResponse whole even when it arrives in 100-byte pieces', () => {
    const notice = LARGE.messages[3]!;
    expect(notice.type).toBe(0x4e);
    const positions: number[] = [];
    for (let p = notice.start + 1; p < notice.end; p += 100) positions.push(p);
    const run = runRelay(cut(LARGE.bytes, positions));
    const seen = run.inspected.find((m) => m.type === 0x4e);
    expect(seen?.body.equals(notice.body)).toBe(true);
  });
});

describe('BackendRelay replacing a message', () => {
  const denial = noticeOrError('E', 'ERROR', '42501', 'dbgate: denied by rule no-pii');
  const notice = noticeOrError('N', 'NOTICE', '01000', 'dbgate: statement audited');
  const isError = (type: number): boolean => type === 0x45; // 'E'

  function outputReplacingError(stream: TestStream, replacement: Buffer[]): ExpectedOutput {
    const error = stream.messages.find((m) => isError(m.type))!;
    const segments: Segment[] = [{ source: stream.bytes.subarray(0, error.start), outStart: 0 }];
    let outStart = error.start;
    for (const source of replacement) {
      segments.push({ source, outStart });
      outStart += source.length;
    }
    segments.push({ source: stream.bytes.subarray(error.end), outStart });
    return expectedOutput(segments);
  }

  const replacements = [
    ['another ErrorResponse', [denial]],
    ['nothing (the message is dropped)', []],
    ['the original followed by a NoticeResponse', [ERROR_RESPONSE, notice]],
  ] as const;

  for (const [label, replacement] of replacements) {
    it.each(STREAMS)(`swaps the ErrorResponse of %s for ${label} wherever the stream is split`, (_, stream) => {
      const decide = (type: number): RelayAction => (isError(type) ? { replaceWith: [...replacement] } : 'forward');
      const expected = outputReplacingError(stream, [...replacement]);
      const check = (chunks: Buffer[]): string | undefined => {
        const run = runRelay(chunks, decide);
        return outputMismatch(run.outputs.flat(), expected) ?? inspectedMismatch(run, stream);
      };
      expect(check([stream.bytes])).toBeUndefined();
      for (const split of splitPositions(stream, { skipBulkInterior: true })) {
        const problem = check(cut(stream.bytes, [split]));
        if (problem !== undefined) expect.fail(`split at ${split}: ${problem}`);
      }
      const random = seededRandom(42);
      for (let iteration = 0; iteration < 100; iteration += 1) {
        const positions = randomCuts(random, stream.bytes.length);
        const problem = check(cut(stream.bytes, positions));
        if (problem !== undefined) expect.fail(`cuts at ${positions.join(',')}: ${problem}`);
      }
    });
  }
});

describe('BackendRelay over a reused read buffer', () => {
  it('keeps what it holds across chunks when the chunk memory is overwritten by the next read', () => {
    // upstream.ts reads the server into one buffer and hands the relay views of it: bytes the relay holds back (the
    // start of a message that ends in the next chunk) must survive that buffer being filled again.
    const readBuffer = Buffer.alloc(64);
    for (const split of splitPositions(SMALL)) {
      const relay = new BackendRelay(() => 'forward');
      const out: Buffer[] = [];
      for (const chunk of cut(SMALL.bytes, [split])) {
        for (let offset = 0; offset < chunk.length; offset += readBuffer.length) {
          const piece = chunk.subarray(offset, offset + readBuffer.length);
          piece.copy(readBuffer);
          // What the relay returns is written at once (a copy stands in for the socket taking it).
          for (const buffer of relay.relay(readBuffer.subarray(0, piece.length))) out.push(Buffer.from(buffer));
          readBuffer.fill(0xee);
        }
      }
      if (!Buffer.concat(out).equals(SMALL.bytes)) expect.fail(`split at ${split}: output differs`);
    }
  });
});

describe('BackendRelay message boundaries', () => {
  it('is at a message boundary before any byte and after each complete message, and nowhere else', () => {
    const relay = new BackendRelay(() => 'forward');
    expect(relay.atMessageBoundary).toBe(true);
    const atBoundary: number[] = [];
    for (let i = 0; i < SMALL.bytes.length; i += 1) {
      relay.relay(SMALL.bytes.subarray(i, i + 1));
      if (relay.atMessageBoundary) atBoundary.push(i + 1);
    }
    expect(atBoundary).toEqual(SMALL.messages.map((m) => m.end));
  });
});

describe('BackendRelay length validation', () => {
  it.each([0, 3, -1, 0x80000000 | 0])('refuses a message length of %i', (length) => {
    const relay = new BackendRelay(() => 'forward');
    const header = Buffer.concat([Buffer.from('C'), int32(length)]);
    expect(() => relay.relay(header)).toThrow(/invalid message length/);
  });

  it('refuses an invalid length whose header arrives split across chunks', () => {
    const relay = new BackendRelay(() => 'forward');
    const header = Buffer.concat([Buffer.from('D'), int32(2)]);
    expect(relay.relay(header.subarray(0, 3))).toEqual([]);
    expect(() => relay.relay(header.subarray(3))).toThrow(/invalid message length/);
  });

  it('refuses a message longer than maxMessageBytes from its header alone', () => {
    const relay = new BackendRelay(() => 'forward', { maxMessageBytes: 1024 });
    expect(() => relay.relay(Buffer.concat([Buffer.from('N'), int32(1025)]))).toThrow(/invalid message length/);
    const atLimit = new BackendRelay(() => 'forward', { maxMessageBytes: 1024 });
    expect(atLimit.relay(Buffer.concat([Buffer.from('N'), int32(1024)]))).toEqual([]);
  });
});
