/**
 * The audit writer against a real state store: large backlogs are written completely and in order, a full backlog
 * holds statements for a while, and a store outage turns the gateway unhealthy (statements refused) until the backlog
 * is written after it recovers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditWriter, type AuditRecord } from '../../src/gateway/audit/audit-writer.js';
import { StateStore } from '../../src/gateway/store/state-store.js';
import type pg from 'pg';
import { eventually, scratchStateStore } from '../support/stack.js';

function statementRecord(sequence: number, subject: string): AuditRecord {
  return {
    occurredAt: new Date(),
    event: 'statement',
    outcome: 'ok',
    subject,
    actors: sequence % 2 ? ['report-bot'] : [],
    statement: `select ${sequence} -- it's "quoted" \\ and {braced}`,
    rows: sequence,
    detail: { sequence },
  };
}

describe('audit writer', () => {
  let scratch: Awaited<ReturnType<typeof scratchStateStore>> | undefined;
  let admin: pg.Client;
  let store: StateStore;

  beforeAll(async () => {
    scratch = await scratchStateStore('audit_writer');
    ({ store, admin } = scratch);
  });

  afterAll(async () => {
    await scratch?.drop();
  });

  it('writes a backlog of 10,000 records completely, in the order they were appended', async () => {
    const writer = new AuditWriter(store, { gateway: 'test', batchSize: 1_000_000 });
    for (let sequence = 0; sequence < 10_000; sequence += 1) writer.append(statementRecord(sequence, 'backlog'));
    await writer.flush();
    const { rows } = await store.pool.query<{ sequence: number; actors: string[]; statement: string }>(
      "select (detail->>'sequence')::int as sequence, actors, statement from dbgate_audit_events where subject = 'backlog' order by id");
    expect(rows).toHaveLength(10_000);
    expect(rows.every((row, index) => row.sequence === index)).toBe(true);
    expect(rows[1]).toEqual({ sequence: 1, actors: ['report-bot'], statement: 'select 1 -- it\'s "quoted" \\ and {braced}' });
    expect(writer.healthy).toBe(true);
    await writer.close();
  });

  it('writes records of any size and script exactly, across chunks and COPY statements', async () => {
    const writer = new AuditWriter(store, { gateway: 'test', batchSize: 1_000_000 });
    // Larger than one encoding chunk (64 KiB) and, with the rest, than one COPY (1 MiB); every kind of character
    // COPY text format escapes, and characters of 2, 3 and 4 bytes in UTF-8.
    const huge = `select '${'ü€😀\t\n\r\\ '.repeat(40_000)}'`;
    const texts = [
      ...Array.from({ length: 3_000 }, (_, i) => `select ${i} /* ${'x'.repeat(300)} */`),
      huge,
      'select 1 -- after the huge one',
      huge.slice(0, 70_000),
    ];
    for (const [sequence, statement] of texts.entries()) {
      writer.append({ ...statementRecord(sequence, 'sizes'), statement, detail: Object.freeze({ sequence }) });
    }
    await writer.flush();
    const { rows } = await store.pool.query<{ statement: string }>(
      "select statement from dbgate_audit_events where subject = 'sizes' order by id");
    expect(rows.map((row) => row.statement)).toEqual(texts);
    await writer.close();
  });

  it('reports a record appended after it closed, and its store with it, as not written, rather than crash', async () => {
    const own = await scratchStateStore('audit_after_close');
    const errors: Error[] = [];
    const writer = new AuditWriter(own.store, { gateway: 'test', flushIntervalMs: 10, onError: (error) => errors.push(error) });
    await writer.close();
    await own.drop();
    // A connection that ended while the gateway shut down records its end late: the write fails, and says so.
    writer.append(statementRecord(1, 'after-close'));
    expect(await eventually(async () => errors.length > 0)).toBe(true);
    expect(errors[0]!.message).toContain('pool');
  });

  it('starts one COPY per batch, not one per record, while earlier batches are still being written', async () => {
    const writer = new AuditWriter(store, { gateway: 'test', batchSize: 100 });
    let copies = 0;
    const connect = store.pool.connect.bind(store.pool);
    store.pool.connect = (() => {
      copies += 1;
      return connect();
    }) as typeof store.pool.connect;
    try {
      // Appended a few at a time with I/O in between, as statements finish: flushes overlap the appends.
      for (let sequence = 0; sequence < 2_000; sequence += 1) {
        writer.append(statementRecord(sequence, 'batches'));
        if (sequence % 10 === 9) await new Promise((resolve) => setImmediate(resolve));
      }
      await writer.flush();
    } finally {
      store.pool.connect = connect as typeof store.pool.connect;
    }
    const { rows } = await store.pool.query<{ n: number }>("select count(*)::int as n from dbgate_audit_events where subject = 'batches'");
    expect(rows[0]!.n).toBe(2_000);
    expect(copies).toBeGreaterThan(0);
    expect(copies).toBeLessThanOrEqual(21);
    await writer.close();
  });

  it('says once when its backlog is full, holds statements until it is written, then accepts them again', async () => {
    const full: number[] = [];
    const writer = new AuditWriter(store, {
      gateway: 'test', batchSize: 1_000_000, flushIntervalMs: 60_000, maxPending: 100, onBacklogFull: (records) => full.push(records),
    });
    for (let sequence = 0; sequence < 99; sequence += 1) writer.append(statementRecord(sequence, 'backlog-full'));
    expect(writer.healthy).toBe(true);
    expect(writer.holding).toBe(false);
    expect(full).toEqual([]);
    for (let sequence = 99; sequence < 150; sequence += 1) writer.append(statementRecord(sequence, 'backlog-full'));
    expect(writer.healthy).toBe(false);
    expect(writer.holding).toBe(true);
    expect(full).toEqual([100]);
    let released = false;
    const room = writer.waitForRoom().then(() => { released = true; });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(released).toBe(false);
    await writer.flush();
    await room;
    expect(writer.healthy).toBe(true);
    expect(writer.holding).toBe(false);
    const { rows } = await store.pool.query<{ n: number }>("select count(*)::int as n from dbgate_audit_events where subject = 'backlog-full'");
    expect(rows[0]!.n).toBe(150);
    await writer.close();
  });

  it('ends the hold after maxHoldMs when the backlog is still full: statements are refused from then on', async () => {
    const writer = new AuditWriter(store, { gateway: 'test', batchSize: 1_000_000, flushIntervalMs: 60_000, maxPending: 10, maxHoldMs: 200 });
    for (let sequence = 0; sequence < 10; sequence += 1) writer.append(statementRecord(sequence, 'hold-expiry'));
    expect(writer.holding).toBe(true);
    await writer.waitForRoom();
    expect(writer.holding).toBe(false);
    expect(writer.healthy).toBe(false);
    // No new hold until the backlog has been written: waiting returns at once.
    await writer.waitForRoom();
    await writer.close();
    expect(writer.healthy).toBe(true);
  });

  it('ends the hold at once when a write fails', async () => {
    // A hold far longer than the test may take: only the failed write can end it.
    const writer = new AuditWriter(store, {
      gateway: 'test', batchSize: 1_000_000, flushIntervalMs: 60_000, maxPending: 10, maxHoldMs: 600_000, onError: () => {},
    });
    for (let sequence = 0; sequence < 10; sequence += 1) writer.append(statementRecord(sequence, 'hold-failure'));
    const room = writer.waitForRoom();
    await store.pool.query('alter table dbgate_audit_events rename to dbgate_audit_events_gone');
    try {
      await writer.flush();
      await room;
      expect(writer.holding).toBe(false);
      expect(writer.healthy).toBe(false);
    } finally {
      await store.pool.query('alter table dbgate_audit_events_gone rename to dbgate_audit_events');
    }
    await writer.close();
  });

  it('turns unhealthy while the store refuses writes, keeps every record, and recovers by itself', async () => {
    const errors: string[] = [];
    const writer = new AuditWriter(store, { gateway: 'test', onError: (error) => errors.push(error.message) });
    await store.pool.query('alter table dbgate_audit_events rename to dbgate_audit_events_away');
    try {
      for (let sequence = 0; sequence < 50; sequence += 1) writer.append(statementRecord(sequence, 'outage'));
      await writer.flush();
      expect(writer.healthy).toBe(false);
      expect(errors[0]).toContain('dbgate_audit_events');
    } finally {
      await store.pool.query('alter table dbgate_audit_events_away rename to dbgate_audit_events');
    }
    expect(await eventually(async () => writer.healthy, 5_000)).toBe(true);
    const { rows } = await store.pool.query<{ n: number }>("select count(*)::int as n from dbgate_audit_events where subject = 'outage'");
    expect(rows[0]!.n).toBe(50);
    await writer.close();
  });
});
