/**
 * The audit writer against a real state store: large backlogs are written completely and in order, and a store
 * outage turns the gateway unhealthy (statements refused) until the backlog is written after it recovers.
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
