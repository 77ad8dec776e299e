/**
 * node-postgres, the most used Node client, through `dbgate connect`'s tunnel and the gateway to real PostgreSQL:
 * parameters, cursors, pipelining (spoken by hand, since node-postgres does not pipeline), CancelRequest and a
 * 64 MiB parameter. The gateway must be invisible to all of it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parse, serialize } from 'pg-protocol';
import type { BackendMessage, CommandCompleteMessage, DataRowMessage, DatabaseError, ReadyForQueryMessage } from 'pg-protocol/dist/messages.js';
import { activeServiceBackends, directClient, eventually, mintCredential, openTunnel, sharedStack, type OpenTunnel } from '../support/stack.js';

/** pg-cursor ships no type declarations; this is the part of its API the tests use. */
interface Cursor<Row> extends pg.Submittable {
  read(rowCount: number): Promise<Row[]>;
  close(): Promise<void>;
}
const Cursor = createRequire(import.meta.url)('pg-cursor') as new <Row>(text: string, values?: unknown[]) => Cursor<Row>;

/** node-postgres keeps the BackendKeyData it was given on the client, untyped. */
function cancelKeyOf(client: pg.Client): { processID: number; secretKey: number } {
  return client as unknown as { processID: number; secretKey: number };
}

/**
 * Sends a CancelRequest on a new connection, as libpq does: Int32 16, Int32 80877102, Int32 process id,
 * Int32 secret key. Resolves once the receiver has closed the connection (it never answers).
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS
 */
async function sendCancelRequest(tunnel: OpenTunnel, processId: number, secretKey: number): Promise<void> {
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(80877102, 4);
  packet.writeInt32BE(processId | 0, 8);
  packet.writeInt32BE(secretKey | 0, 12);
  const socket = connect(tunnel.port, tunnel.host);
  await once(socket, 'connect');
  const closed = once(socket, 'close');
  socket.end(packet);
  await closed;
}

/**
 * A frontend spoken by hand, to do what node-postgres cannot: put many messages in one write. Backend messages are
 * parsed by pg-protocol and queued; tests take them up to a ReadyForQuery.
 */
class RawConnection {
  private readonly received: BackendMessage[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    void parse(socket, (message) => {
      this.received.push(message);
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  /** Connects to the tunnel and logs in with its password (the tunnel asks for it in clear text, on loopback). */
  static async open(tunnel: OpenTunnel): Promise<RawConnection> {
    const socket = connect(tunnel.port, tunnel.host);
    socket.setNoDelay(true);
    await once(socket, 'connect');
    const connection = new RawConnection(socket);
    socket.write(serialize.startup({ user: tunnel.user, database: tunnel.database, application_name: 'node-pg-raw-pipeline' }));
    const [request] = await connection.takeUntil((message) => message.name === 'authenticationCleartextPassword');
    expect(request?.name).toBe('authenticationCleartextPassword');
    socket.write(serialize.password(tunnel.password));
    const login = await connection.takeReadyForQuery(1);
    expect(login.map((message) => message.name)).toContain('authenticationOk');
    return connection;
  }

  /** All the buffers go out in a single write, so they reach the tunnel (and the gateway) as one run of bytes. */
  send(messages: Buffer[]): void {
    this.socket.write(Buffer.concat(messages));
  }

  /** Messages up to and including the `count`-th ReadyForQuery from now. */
  async takeReadyForQuery(count: number): Promise<BackendMessage[]> {
    let seen = 0;
    return this.takeUntil((message) => message.name === 'readyForQuery' && ++seen === count);
  }

  close(): void {
    this.socket.end(serialize.end());
  }

  private async takeUntil(isLast: (message: BackendMessage) => boolean): Promise<BackendMessage[]> {
    let checked = 0;
    for (;;) {
      for (; checked < this.received.length; checked += 1) {
        if (isLast(this.received[checked]!)) return this.received.splice(0, checked + 1);
      }
      if (this.closed) throw new Error(`connection closed; received: ${this.received.map(summarize).join(', ')}`);
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

/** One line per backend message, so a whole exchange reads (and diffs) as a list. */
function summarize(message: BackendMessage): string {
  switch (message.name) {
    case 'dataRow':
      return `DataRow ${(message as DataRowMessage).fields.join('|')}`;
    case 'commandComplete':
      return `CommandComplete ${(message as CommandCompleteMessage).text}`;
    case 'error':
      return `Error ${(message as DatabaseError).code}`;
    case 'readyForQuery':
      return `ReadyForQuery ${(message as ReadyForQueryMessage).status}`;
    default:
      return message.name.charAt(0).toUpperCase() + message.name.slice(1);
  }
}

/** Parse + Bind + Execute of one statement on the unnamed statement and portal (text parameters). */
function parseBindExecute(text: string, values: Array<string | null>): Buffer[] {
  return [serialize.parse({ text }), serialize.bind({ values }), serialize.execute()];
}

const PIPELINE_TABLE = 'node_pg_pipeline_items';
const CANCEL_APPLICATION = 'node-pg-cancel-test';
const SCRATCH_TARGET = 'scratch';
const SCRATCH_DATABASE = 'dbgate_scratch';

describe('node-postgres through tunnel and gateway', () => {
  let tunnel: OpenTunnel;
  let admin: pg.Client;
  let client: pg.Client;

  beforeAll(async () => {
    // bob (dba) on the dev stack's `scratch` target (database dbgate_scratch): the pipeline tests insert rows and the
    // bytea test creates a temp table, which is DDL — held for an approval on prod-orders, but dba is admin on
    // scratch with no guardrail rules. The tables these tests look at directly therefore live in dbgate_scratch.
    tunnel = await openTunnel('bob', { credential: await mintCredential('bob', { groups: ['dba'] }), target: SCRATCH_TARGET });
    admin = await directClient(SCRATCH_DATABASE);
    await admin.query(`drop table if exists ${PIPELINE_TABLE}`);
    await admin.query(`create table ${PIPELINE_TABLE} (id int primary key, note text)`);
    await admin.query(`grant all on ${PIPELINE_TABLE} to dbgate_service`);
    client = new pg.Client(tunnel.pgConfig);
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await admin?.query(`drop table if exists ${PIPELINE_TABLE}`);
    await admin?.end();
    await tunnel?.close();
  });

  it('delivers a large result intact to a client that keeps stalling (writes that back up in the gateway)', async () => {
    // The gateway reads the server into one reused buffer and forwards views of it; a write the client cannot take at
    // once must keep its bytes while the next reads go elsewhere. Every value is checked, not just the row count.
    // Plain TCP straight to the gateway (loopback, as pgbench in bench/): a TLS socket encrypts what it is given at
    // once, a plain one keeps the very bytes queued.
    const { gateway } = sharedStack();
    const slow = new pg.Client({
      host: gateway.pgHost, port: gateway.pgPort, user: 'bob', database: SCRATCH_TARGET, ssl: false,
      password: await mintCredential('bob', { groups: ['dba'] }),
    });
    await slow.connect();
    const socket = (slow as unknown as { connection: { stream: Socket } }).connection.stream;
    const stall = setInterval(() => (socket.isPaused() ? socket.resume() : socket.pause()), 25);
    try {
      const { rows } = await slow.query<[string, string]>({
        text: 'select i::text, md5(i::text) from generate_series(1, 400000) as i', rowMode: 'array',
      });
      expect(rows).toHaveLength(400_000);
      const wrong = rows.filter(([i, digest], index) => i !== String(index + 1) || digest !== createHash('md5').update(i).digest('hex'));
      expect(wrong.slice(0, 3)).toEqual([]);
    } finally {
      clearInterval(stall);
      socket.resume();
      await slow.end();
    }
  });

  describe('parameters', () => {
    it('round-trips text, int, bigint, null, empty string, unicode and json parameters exactly', async () => {
      const text = `it's a "quote" \\ backslash\nnew line\ttab`;
      const unicode = 'Zürich · 東京 · مرحبا · 🐘🚀 · e\u0301';
      const document = { name: 'ünïcødé 🐘', list: [1, 2.5, -3, null, true], nested: { empty: {}, text: 'a"b\\c' } };
      const { rows } = await client.query(
        'select $1::text as text, $2::int as int, $3::int8 as big, $4::text as nothing, $5::text as empty, $6::text as unicode, $7::json as document',
        [text, -2147483648, '9007199254740993', null, '', unicode, document],
      );
      expect(rows).toEqual([{
        text,
        int: -2147483648,
        big: '9007199254740993', // int8 comes back as a string: beyond 2^53, so exact only if nothing rounds it
        nothing: null,
        empty: '',
        unicode,
        document,
      }]);
    });

    it('keeps parameters apart from SQL: a parameter that looks like SQL is only data', async () => {
      const hostile = `'); drop table ${PIPELINE_TABLE}; --`;
      const { rows } = await client.query('select $1::text as value, length($1::text) as length', [hostile]);
      expect(rows).toEqual([{ value: hostile, length: hostile.length }]);
      const { rows: still } = await admin.query(`select to_regclass($1) is not null as exists`, [PIPELINE_TABLE]);
      expect(still[0].exists).toBe(true);
    });
  });

  describe('cursors', () => {
    it('reads a 200,000-row result in batches with pg-cursor, every row exact and in order', async () => {
      const total = 200_000;
      const batchSize = 7_000; // not a divisor of total: the last batch is partial
      const cursor = client.query(new Cursor<{ n: number; digest: string }>(
        'select g::int as n, md5(g::text) as digest from generate_series(1, $1::int) g order by g',
        [total],
      ));
      let count = 0;
      let sum = 0;
      let batches = 0;
      let mismatches = 0;
      for (;;) {
        const rows = await cursor.read(batchSize);
        if (rows.length === 0) break;
        batches += 1;
        for (const row of rows) {
          count += 1;
          sum += row.n;
          if (row.n !== count || row.digest !== createHash('md5').update(String(row.n)).digest('hex')) mismatches += 1;
        }
      }
      await cursor.close();
      expect({ count, sum, batches, mismatches }).toEqual({
        count: total,
        sum: (total * (total + 1)) / 2,
        batches: Math.ceil(total / batchSize),
        mismatches: 0,
      });
      // The connection is back in a usable state after the portal is closed.
      const { rows } = await client.query('select 1 as after_cursor');
      expect(rows).toEqual([{ after_cursor: 1 }]);
    });
  });

  describe('pipelining (several statements in one write)', () => {
    let raw: RawConnection;

    beforeAll(async () => {
      raw = await RawConnection.open(tunnel);
    });

    afterAll(() => raw?.close());

    it('answers 50 Parse/Bind/Execute with a single Sync in order', async () => {
      const messages: Buffer[] = [];
      const expected: string[] = [];
      for (let i = 1; i <= 50; i += 1) {
        messages.push(...parseBindExecute('select $1::int * 2 as doubled, $2::text as label', [String(i), `row ${i}`]));
        expected.push('ParseComplete', 'BindComplete', `DataRow ${i * 2}|row ${i}`, 'CommandComplete SELECT 1');
      }
      messages.push(serialize.sync());
      expected.push('ReadyForQuery I');
      raw.send(messages);
      expect((await raw.takeReadyForQuery(1)).map(summarize)).toEqual(expected);
    });

    it('answers 50 independent Parse/Bind/Execute/Sync groups sent in one write in order', async () => {
      const messages: Buffer[] = [];
      const expected: string[] = [];
      for (let i = 1; i <= 50; i += 1) {
        messages.push(...parseBindExecute('select $1::int + 1000 as shifted', [String(i)]), serialize.sync());
        expected.push('ParseComplete', 'BindComplete', `DataRow ${i + 1000}`, 'CommandComplete SELECT 1', 'ReadyForQuery I');
      }
      raw.send(messages);
      expect((await raw.takeReadyForQuery(50)).map(summarize)).toEqual(expected);
    });

    it('skips the rest of a segment after an error, rolls back its earlier writes, and runs the next segment', async () => {
      const insert = `insert into ${PIPELINE_TABLE} (id, note) values ($1::int, $2::text)`;
      const messages: Buffer[] = [];
      const expected: string[] = [];
      // Segment 1: five inserts, a duplicate key, five more inserts, Sync — one implicit transaction. (The error must
      // come at Execute: a division by a zero parameter would already fail at Bind, when the plan is made.)
      for (let id = 101; id <= 105; id += 1) {
        messages.push(...parseBindExecute(insert, [String(id), 'before the error']));
        expected.push('ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1');
      }
      messages.push(...parseBindExecute(insert, ['103', 'duplicate']));
      expected.push('ParseComplete', 'BindComplete', 'Error 23505');
      for (let id = 106; id <= 110; id += 1) messages.push(...parseBindExecute(insert, [String(id), 'after the error']));
      messages.push(serialize.sync());
      expected.push('ReadyForQuery I'); // nothing for the five skipped inserts
      // Segment 2, in the same write: runs normally and commits.
      for (let id = 201; id <= 203; id += 1) {
        messages.push(...parseBindExecute(insert, [String(id), 'next segment']));
        expected.push('ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1');
      }
      messages.push(...parseBindExecute(`select count(*)::int from ${PIPELINE_TABLE}`, []), serialize.sync());
      expected.push('ParseComplete', 'BindComplete', 'DataRow 3', 'CommandComplete SELECT 1', 'ReadyForQuery I');

      raw.send(messages);
      expect((await raw.takeReadyForQuery(2)).map(summarize)).toEqual(expected);
      const { rows } = await admin.query(`select id, note from ${PIPELINE_TABLE} order by id`);
      expect(rows).toEqual([
        { id: 201, note: 'next segment' },
        { id: 202, note: 'next segment' },
        { id: 203, note: 'next segment' },
      ]);
    });
  });

  describe('CancelRequest', () => {
    let sleeper: pg.Client;

    beforeAll(async () => {
      sleeper = new pg.Client({ ...tunnel.pgConfig, application_name: CANCEL_APPLICATION });
      await sleeper.connect();
    });

    afterAll(async () => {
      await sleeper?.end();
    });

    /** Starts pg_sleep(30) and resolves once it is really running upstream; `outcome` settles when it ends. */
    async function startSleep(): Promise<{ outcome: Promise<unknown>; settled: () => boolean }> {
      let settled = false;
      const outcome = sleeper.query('select pg_sleep(30)').then(
        (result) => { settled = true; return result; },
        (error: unknown) => { settled = true; return error; },
      );
      const running = await eventually(async () =>
        (await activeServiceBackends(admin, CANCEL_APPLICATION)).some((b) => b.state === 'active' && b.query === 'select pg_sleep(30)'), 10_000);
      expect(running).toBe(true);
      return { outcome, settled: () => settled };
    }

    it('hands out its own cancel key: the client never learns the upstream backend pid', async () => {
      const { rows } = await sleeper.query<{ pid: number }>('select pg_backend_pid() as pid');
      expect(cancelKeyOf(sleeper).processID).not.toBe(rows[0]!.pid);
    });

    it('cancels a running pg_sleep(30) within 1 s of the CancelRequest (SQLSTATE 57014); the client goes on working', async () => {
      const { outcome } = await startSleep();
      const { processID, secretKey } = cancelKeyOf(sleeper);
      const sentAt = Date.now();
      await sendCancelRequest(tunnel, processID, secretKey);
      const error = await outcome;
      const elapsed = Date.now() - sentAt;
      expect(error).toBeInstanceOf(Error);
      expect((error as { code?: string }).code).toBe('57014');
      expect((error as Error).message).toBe('canceling statement due to user request');
      expect(elapsed).toBeLessThan(1_000); // the acceptance bound for a cancel through tunnel and gateway
      const { rows } = await sleeper.query('select 42 as still_working');
      expect(rows).toEqual([{ still_working: 42 }]);
    });

    it('ignores a CancelRequest with a wrong secret key; the statement keeps running until properly cancelled', async () => {
      const { outcome, settled } = await startSleep();
      const { processID, secretKey } = cancelKeyOf(sleeper);
      await sendCancelRequest(tunnel, processID, secretKey ^ 0x5a5a5a5a);
      await sendCancelRequest(tunnel, processID ^ 0x00ff00ff, secretKey);
      // A valid cancel takes effect within 1 s (previous test); give these wrong ones 1.5 s to do any harm.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(settled()).toBe(false);
      const backends = await activeServiceBackends(admin, CANCEL_APPLICATION);
      expect(backends).toEqual([expect.objectContaining({ state: 'active', query: 'select pg_sleep(30)' })]);

      await sendCancelRequest(tunnel, processID, secretKey);
      const error = await outcome;
      expect((error as { code?: string }).code).toBe('57014');
      const { rows } = await sleeper.query('select 7 as still_working');
      expect(rows).toEqual([{ still_working: 7 }]);
    });
  });

  describe('large values', () => {
    it('round-trips a 64 MiB bytea parameter through a temp table unchanged (sha256)', async () => {
      const blob = randomBytes(64 * 1024 * 1024);
      const digest = createHash('sha256').update(blob).digest('hex');
      await client.query('create temp table node_pg_blob (id int primary key, data bytea not null)');
      try {
        await client.query('insert into node_pg_blob (id, data) values (1, $1)', [blob]);
        // What arrived upstream: the server's own hash of what it stored.
        const stored = await client.query<{ length: number; digest: string }>(
          "select length(data) as length, encode(sha256(data), 'hex') as digest from node_pg_blob where id = 1");
        expect(stored.rows).toEqual([{ length: blob.length, digest }]);
        // What comes back: all 64 MiB again, through gateway and tunnel.
        const { rows } = await client.query<{ data: Buffer }>('select data from node_pg_blob where id = 1');
        expect(rows).toHaveLength(1);
        expect(rows[0]!.data.length).toBe(blob.length);
        expect(createHash('sha256').update(rows[0]!.data).digest('hex')).toBe(digest);
      } finally {
        await client.query('drop table if exists node_pg_blob');
      }
    }, 120_000);
  });
});
