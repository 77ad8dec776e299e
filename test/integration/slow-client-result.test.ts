/**
 * The gateway forwards a plain-TCP upstream's reads without copying them: each read lands in one reused buffer, and
 * the write to the client is a view of it (proxy/upstream.ts ReusedReads). A client that stops reading leaves such a
 * write pending, below the point where the gateway pauses the upstream; the next read must then go to a new buffer,
 * or it overwrites bytes the client has not received yet. Here a client stalls in the middle of a large result, and
 * every byte of it must still arrive as the server sent it.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { mintCredential, sharedStack } from '../support/stack.js';

const ROWS = 4_000;
/** Each row's value: its md5 repeated, ~6 KB: a result of ~25 MB. */
const ROWS_SQL = `select i, repeat(md5(i::text), 190) as v from generate_series(1, ${ROWS}) as i`;
/**
 * The same rows, produced slowly: the server then sends each 8 KB as it fills, and the gateway reads them one by one —
 * writes small enough to stay pending without making the gateway pause the upstream.
 */
const SLOW_SQL = `select i, v from (select i, v, pg_sleep(0.0001) from (${ROWS_SQL}) as rows) as slowly`;

const clients: pg.Client[] = [];
afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((client) => client.end()));
});

describe('a client that stops reading in the middle of a large result', () => {
  it('gets every byte of it as the server sent it', async () => {
    const { pgHost, pgPort } = sharedStack().gateway;
    const client = new pg.Client({
      host: pgHost, port: pgPort, user: 'bob', database: 'scratch', ssl: false,
      password: await mintCredential('bob', { groups: ['dba'] }),
      // A stream the gateway garbled would leave the driver waiting for bytes that never make sense.
      query_timeout: 45_000,
    });
    clients.push(client);
    await client.connect();
    const expected = await client.query<{ digest: string }>(`select md5(string_agg(v, '' order by i)) as digest from (${ROWS_SQL}) as rows`);

    const socket = (client as unknown as { connection: { stream: NodeJS.ReadableStream } }).connection.stream;
    const result = client.query<{ i: number; v: string }>(SLOW_SQL);
    // Stop reading while the result streams: the kernel's buffers fill, and the gateway's writes stay pending.
    socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    socket.resume();
    const { rows } = await result;
    expect(rows).toHaveLength(ROWS);
    const digest = createHash('md5');
    for (const [index, row] of rows.entries()) {
      expect(row.i).toBe(index + 1);
      digest.update(row.v);
    }
    expect(digest.digest('hex')).toBe(expected.rows[0]!.digest);
  });
});
