/**
 * What a client sees when the audit trail falls behind. A store that is slow (here: the audit table locked by another
 * transaction) fills the backlog; the gateway then holds statements until the backlog is written, and they run. A
 * store that fails (here: the table renamed away) gets statements refused at once, with the rule and what to do
 * next, until it recovers (fail closed).
 *
 * An in-process gateway with a state store of its own (a scratch database), so the lock and the rename touch no
 * other test's gateway.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import { silentLogger } from '../../src/gateway/log.js';
import { gatewayConfigDir, issueTestCredential, type GatewayConfigDir } from '../support/in-process-gateway.js';
import { directClient, eventually, scratchStateStore } from '../support/stack.js';

const TARGET = 'held-target';
const GROUP = 'hold-testers';
/** AuditWriter's default maxPending: the backlog at which statements are held. */
const FULL_BACKLOG = 50_000;

describe('a full audit backlog holds statements; a failing store refuses them', () => {
  let scratch: Awaited<ReturnType<typeof scratchStateStore>> | undefined;
  let dir: GatewayConfigDir | undefined;
  let gateway: RunningGateway | undefined;
  let storeAdmin: pg.Client;
  let client: pg.Client;
  const marker = `held-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    scratch = await scratchStateStore('audit_hold');
    storeAdmin = await directClient(scratch.database);
    dir = await gatewayConfigDir('audit-hold');
    const stateStore = new URL(String((dir.base['state_store'] as { url: string }).url));
    stateStore.pathname = `/${scratch.database}`;
    gateway = await dir.start({
      ...dir.base,
      state_store: { ...(dir.base['state_store'] as object), url: stateStore.toString() },
      targets: {
        [TARGET]: await dir.clusterTarget('postgres'),
      },
      policy: { grants: [{ groups: [GROUP], targets: [TARGET], access: 'admin' }] },
    }, silentLogger);
    client = new pg.Client({
      host: gateway.pg.host, port: gateway.pg.port, user: 'holder', database: TARGET, ssl: false,
      password: await issueTestCredential(gateway, 'holder', [GROUP], 'audit-backlog-hold-test'),
    });
    client.on('error', () => {});
    await client.connect();
  });

  afterAll(async () => {
    await client?.end().catch(() => {});
    await storeAdmin?.query('rollback').catch(() => {});
    await gateway?.close();
    await dir?.remove();
    await storeAdmin?.end();
    await scratch?.drop();
  });

  /** Records of this test's own, about nobody, until the gateway's backlog is full. */
  function fillBacklog(audit: RunningGateway['audit']): void {
    for (let sequence = 0; sequence < FULL_BACKLOG; sequence += 1) {
      audit.append({ occurredAt: Date.now(), event: 'statement', outcome: 'ok', subject: 'backlog-filler', statement: `select ${sequence}` });
    }
  }

  it('holds a statement while the store cannot keep up, then runs it once the backlog is written', async () => {
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await storeAdmin.query('begin');
    await storeAdmin.query('lock table dbgate_audit_events in access exclusive mode');
    let settled = false;
    let answer: Promise<pg.QueryResult>;
    try {
      fillBacklog(gateway!.audit);
      expect(gateway!.audit.holding).toBe(true);
      answer = client.query(`select '${marker}' as marker`);
      void answer.then(() => { settled = true; }, () => { settled = true; });
      // Held, neither answered nor refused, while the audit table stays locked.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(settled).toBe(false);
    } finally {
      await storeAdmin.query('commit');
    }
    expect((await answer!).rows).toEqual([{ marker }]);
    expect(gateway!.audit.healthy).toBe(true);
    expect(await eventually(async () => {
      const { rows } = await storeAdmin.query<{ outcome: string }>(
        "select outcome from dbgate_audit_events where subject = 'holder' and statement like $1", [`%${marker}%`]);
      return rows.length === 1 && rows[0]!.outcome === 'ok';
    })).toBe(true);
  });

  it('refuses statements at once while the store fails, saying why and what to do, and runs them again after', async () => {
    await storeAdmin.query('alter table dbgate_audit_events rename to dbgate_audit_events_away');
    try {
      // The statement's own record is the one whose write fails.
      await client.query('select 2');
      await gateway!.audit.flush();
      expect(gateway!.audit.healthy).toBe(false);
      const refused = await client.query('select 3').then(() => undefined, (error: pg.DatabaseError) => error);
      expect(refused?.code).toBe('42501');
      expect(refused?.message).toBe('dbgate: the audit trail cannot be written right now, so no statement may run');
      expect(refused?.detail).toBe('rule: builtin:audit-unavailable');
      expect(refused?.hint).toContain('retry shortly');
    } finally {
      await storeAdmin.query('alter table dbgate_audit_events_away rename to dbgate_audit_events');
    }
    expect(await eventually(async () => gateway!.audit.healthy, 10_000)).toBe(true);
    expect((await client.query('select 4 as four')).rows).toEqual([{ four: 4 }]);
  });
});
