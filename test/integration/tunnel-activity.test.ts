/**
 * A tunnel's statements counted from the audit trail: every connection `dbgate connect` relays names its tunnel
 * (startup parameter dbgate.tunnel), the gateway records that id with every statement and never passes it on, and
 * GET /v1/me/activity?tunnel=<id> counts the caller's own statements through that tunnel by decision.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditWriter, type AuditRecord } from '../../src/gateway/audit/audit-writer.js';
import { StateStore, TUNNEL_ACTIVITY_SQL } from '../../src/gateway/store/state-store.js';
import type { ApiErrorBody, TunnelActivityResponse } from '../../src/shared/api.js';
import { RawClient } from '../support/raw-client.js';
import { directClient, eventually, mintCredential, openTunnel, scratchStateStore, sharedStack, type OpenTunnel } from '../support/stack.js';

type Counts = Pick<TunnelActivityResponse, 'allowed' | 'masked' | 'denied' | 'held' | 'failed'>;
const NONE: Counts = { allowed: 0, masked: 0, denied: 0, held: 0, failed: 0 };

function countsOf(response: TunnelActivityResponse | Counts): Counts {
  const { allowed, masked, denied, held, failed } = response;
  return { allowed, masked, denied, held, failed };
}

describe('tunnel activity in the state store', () => {
  let scratch: Awaited<ReturnType<typeof scratchStateStore>> | undefined;
  let admin: pg.Client;
  let store: StateStore;

  beforeAll(async () => {
    scratch = await scratchStateStore('tunnel_activity');
    ({ store, admin } = scratch);
  });

  afterAll(async () => {
    await scratch?.drop();
  });

  it('counts what ran, masked only where values were masked, refusals by decision, and database errors as failed', async () => {
    const tunnel = randomUUID();
    const record = (change: Partial<AuditRecord> & { detail?: Record<string, unknown> }): AuditRecord => ({
      occurredAt: new Date(),
      event: 'statement',
      outcome: 'ok',
      subject: 'alice',
      actors: [],
      sessionId: randomUUID(),
      tunnelId: tunnel,
      ...change,
    });
    const writer = new AuditWriter(store, { gateway: 'test' });
    for (const audited of [
      record({ detail: { decision: 'allow' } }),
      record({ detail: { decision: 'mask', masked_columns: ['public.customers.email'] } }),
      // Decided mask, but the result held no masked column: allowed.
      record({ detail: { decision: 'mask' } }),
      record({ detail: { decision: 'mask', masked_columns: [] } }),
      record({ outcome: 'denied', detail: { decision: 'deny' } }),
      record({ outcome: 'denied', detail: { decision: 'hold' } }),
      record({ outcome: 'error', sqlState: '42P01', detail: { decision: 'mask' } }),
      // Never ran: skipped after an error in a pipeline, cancelled by a disconnect.
      record({ outcome: 'skipped', detail: { decision: 'allow' } }),
      record({ outcome: 'cancelled', detail: { decision: 'mask', masked_columns: ['public.customers.ssn'] } }),
      // Not statements.
      record({ event: 'connection.open' }),
      record({ event: 'connection.close' }),
      // Someone else, or alice elsewhere.
      record({ subject: 'bob', detail: { decision: 'allow' } }),
      record({ actors: ['report-bot'], detail: { decision: 'mask', masked_columns: ['public.customers.email'] } }),
      record({ tunnelId: randomUUID(), detail: { decision: 'allow' } }),
      record({ tunnelId: undefined, detail: { decision: 'allow' } }),
    ]) writer.append(audited);
    await writer.close();

    expect(countsOf(await store.tunnelActivity(tunnel, { subject: 'alice', actors: [] })))
      .toEqual({ allowed: 3, masked: 1, denied: 1, held: 1, failed: 1 });
    // An agent acting for alice is another identity in the audit trail, with counts of its own.
    expect(countsOf(await store.tunnelActivity(tunnel, { subject: 'alice', actors: ['report-bot'] })))
      .toEqual({ ...NONE, masked: 1 });
    expect(countsOf(await store.tunnelActivity(tunnel, { subject: 'carol', actors: [] }))).toEqual(NONE);
  });

  it('finds a tunnel\'s records through its index alone in a table of 300,000', async () => {
    // 2,000 tunnels of 100 statements each, 100,000 statements of clients without a tunnel; 50 people, so each has
    // 6,000 records for the subject index to offer.
    await store.pool.query(`
      insert into dbgate_audit_events (occurred_at, gateway, event, subject, session_id, tunnel_id, outcome, detail)
      select now() - make_interval(secs => n), 'test', 'statement', 'user-' || (n % 50), gen_random_uuid(),
             case when n % 3 = 0 then null else md5('tunnel' || (n % 2000))::uuid end,
             'ok', '{"decision":"allow"}'
        from generate_series(1, 300000) as n`);
    await store.pool.query('analyze dbgate_audit_events');
    const tunnel = (await store.pool.query<{ id: string }>("select md5('tunnel' || 7)::uuid as id")).rows[0]!.id;
    const { rows } = await store.pool.query<{ 'QUERY PLAN': unknown }>(`explain (format json) ${TUNNEL_ACTIVITY_SQL}`, [tunnel, 'user-7', []]);
    const plan = JSON.stringify(rows[0]!['QUERY PLAN']);
    expect(plan).not.toContain('"Node Type":"Seq Scan"');
    expect([...plan.matchAll(/"Index Name":"(\w+)"/g)].map((match) => match[1])).toEqual(['dbgate_audit_events_tunnel']);
  });
});

describe('GET /v1/me/activity (the shared dev gateway)', () => {
  let alice: string;
  let tunnel: OpenTunnel;
  /** What the tunnel itself saw on the wire. */
  const wire: string[] = [];
  let client: pg.Client;
  let state: pg.Client;

  async function activity(credential: string | undefined, tunnelId: string): Promise<Response> {
    return fetch(new URL(`/v1/me/activity?tunnel=${encodeURIComponent(tunnelId)}`, sharedStack().gateway.apiUrl), {
      headers: credential ? { authorization: `Bearer ${credential}` } : {},
    });
  }

  async function countsFor(credential: string, tunnelId: string): Promise<Counts> {
    const response = await activity(credential, tunnelId);
    expect(response.status).toBe(200);
    const body = (await response.json()) as TunnelActivityResponse;
    expect(body.tunnel).toBe(tunnelId);
    expect(Number.isNaN(Date.parse(body.as_of))).toBe(false);
    return countsOf(body);
  }

  /** The audit trail is written in batches a few tens of milliseconds behind: waits for `expected`, returns the last. */
  async function eventuallyCounts(credential: string, tunnelId: string, expected: Counts): Promise<Counts> {
    let last = NONE;
    await eventually(async () => JSON.stringify(last = await countsFor(credential, tunnelId)) === JSON.stringify(expected), 10_000, 100);
    return last;
  }

  /** A login straight to the gateway (plaintext: the dev gateway listens on loopback), naming a tunnel or not. */
  function direct(user: string, credential: string, parameters: Record<string, string> = {}): Promise<RawClient> {
    const { pgHost, pgPort } = sharedStack().gateway;
    return RawClient.login({ host: pgHost, port: pgPort, user, database: 'prod-orders', password: credential }, parameters);
  }

  beforeAll(async () => {
    state = await directClient('dbgate_state');
    alice = await mintCredential('alice', { groups: ['engineering'] });
    tunnel = await openTunnel('alice', {
      credential: alice,
      onEvent: (event) => {
        if (event.type === 'statement') wire.push(event.outcome);
      },
    });
    client = new pg.Client(tunnel.pgConfig);
    await client.connect();
    // The demo policy masks customers.email/phone/ssn for engineering (a mask decision on every statement of theirs),
    // denies an unbounded DELETE and holds DROP for approval.
    const emails = await client.query<{ email: string }>('select email from customers limit 3');
    expect(emails.rows).toHaveLength(3);
    for (const { email } of emails.rows) expect(email).toContain('*');
    const extended = await client.query<{ email: string }>({ text: 'select email from customers where id = $1', values: [1] });
    expect(extended.rows[0]!.email).toContain('*');
    expect((await client.query('select id from customers limit 1')).rows).toHaveLength(1);
    await expect(client.query('delete from orders')).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/^dbgate: .*denied/) });
    await expect(client.query('drop table customers')).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('held for approval') });
    await expect(client.query('select * from no_such_table')).rejects.toMatchObject({ code: '42P01' });
  });

  afterAll(async () => {
    await client?.end();
    await tunnel?.close();
    await state?.end();
  });

  it('counts the tunnel\'s statements by what the gateway decided: masked only where values were masked', async () => {
    const expected = { allowed: 1, masked: 2, denied: 1, held: 1, failed: 1 };
    expect(await eventuallyCounts(alice, tunnel.tunnel.tunnelId, expected)).toEqual(expected);
  });

  it('is counted by the tunnel itself on the wire alike, except that masked statements are allowed there', () => {
    expect(wire).toEqual(['allowed', 'allowed', 'allowed', 'denied', 'held', 'failed']);
  });

  it('records the tunnel id with each statement of the tunnel\'s connections', async () => {
    const { rows } = await state.query<{ statement: string }>(
      "select statement from dbgate_audit_events where tunnel_id = $1 and event = 'statement' order by id", [tunnel.tunnel.tunnelId]);
    expect(rows.map((row) => row.statement)).toEqual([
      'select email from customers limit 3',
      'select email from customers where id = $1',
      'select id from customers limit 1',
      'delete from orders',
      'drop table customers',
      'select * from no_such_table',
    ]);
  });

  it('shows the same counts to another credential of the same person (a renewed login is a new session)', async () => {
    const renewed = await mintCredential('alice', { groups: ['engineering'] });
    expect(await countsFor(renewed, tunnel.tunnel.tunnelId)).toEqual({ allowed: 1, masked: 2, denied: 1, held: 1, failed: 1 });
  });

  it('counts nothing for another tunnel id, nor for another user asking about this tunnel', async () => {
    expect(await countsFor(alice, randomUUID())).toEqual(NONE);
    const bob = await mintCredential('bob', { groups: ['dba'] });
    expect(await countsFor(bob, tunnel.tunnel.tunnelId)).toEqual(NONE);
  });

  it('never mixes in statements of another user who names the same tunnel id', async () => {
    const bob = await mintCredential('bob', { groups: ['dba'] });
    const intruder = await direct('bob', bob, { 'dbgate.tunnel': tunnel.tunnel.tunnelId });
    try {
      expect((await intruder.query('select 1')).rows).toEqual([['1']]);
    } finally {
      intruder.close();
    }
    expect(await eventuallyCounts(bob, tunnel.tunnel.tunnelId, { ...NONE, allowed: 1 })).toEqual({ ...NONE, allowed: 1 });
    expect(await countsFor(alice, tunnel.tunnel.tunnelId)).toEqual({ allowed: 1, masked: 2, denied: 1, held: 1, failed: 1 });
  });

  it('answers 400 to a tunnel that is not a UUID, and 401 without a credential', async () => {
    for (const bad of ['not-a-uuid', '', `${randomUUID()}' or true --`]) {
      const response = await activity(alice, bad);
      expect(response.status).toBe(400);
      expect(((await response.json()) as ApiErrorBody)).toMatchObject({ error: 'invalid_request', message: expect.stringContaining('?tunnel=<uuid>') });
    }
    const twice = await fetch(new URL(`/v1/me/activity?tunnel=${randomUUID()}&tunnel=${randomUUID()}`, sharedStack().gateway.apiUrl), {
      headers: { authorization: `Bearer ${alice}` },
    });
    expect(twice.status).toBe(400);
    const anonymous = await activity(undefined, randomUUID());
    expect(anonymous.status).toBe(401);
  });

  it('refuses a connection whose tunnel id is not a UUID, with a dbgate error (08P01)', async () => {
    const refused = await direct('alice', alice, { 'dbgate.tunnel': 'not-a-uuid' }).then(
      (raw) => {
        raw.close();
        throw new Error('the gateway accepted a malformed tunnel id');
      },
      (error: Error & { fields?: Record<string, string> }) => error.fields,
    );
    expect(refused).toMatchObject({ S: 'FATAL', C: '08P01', M: 'dbgate: the startup parameter dbgate.tunnel must be a UUID' });
  });

  it('never passes the tunnel id on to PostgreSQL', async () => {
    // Were it forwarded, PostgreSQL would keep it as a custom setting (its name has a dot) and current_setting would
    // return it.
    const through = await openTunnel('alice', { credential: alice });
    const viaTunnel = new pg.Client(through.pgConfig);
    try {
      await viaTunnel.connect();
      const { rows } = await viaTunnel.query("select current_setting('dbgate.tunnel', true) as setting");
      expect(rows).toEqual([{ setting: null }]);
    } finally {
      await viaTunnel.end();
      await through.close();
    }
    const tunnelId = randomUUID();
    const raw = await direct('alice', alice, { 'dbgate.tunnel': tunnelId });
    try {
      expect((await raw.query("select current_setting('dbgate.tunnel', true)")).rows).toEqual([[null]]);
      // The gateway did take it: the statement is counted for that tunnel.
      expect(await eventuallyCounts(alice, tunnelId, { ...NONE, allowed: 1 })).toEqual({ ...NONE, allowed: 1 });
    } finally {
      raw.close();
    }
  });
});
