/**
 * The audit trail of the shared dev gateway: what a person does through `dbgate connect` shows up in the state
 * store's dbgate_audit_events under their identity — the credential they were given, the connection they opened,
 * and every statement with its outcome, SQLSTATE and row count.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { directClient, eventually, mintCredential, openTunnel, type OpenTunnel } from '../support/stack.js';

interface AuditRow {
  event: string;
  subject: string | null;
  session_id: string | null;
  connection_id: string | null;
  target: string | null;
  statement: string | null;
  protocol_step: string | null;
  outcome: string;
  sqlstate: string | null;
  rows: string | null;
  duration_ms: number | null;
  detail: Record<string, unknown>;
}

/** The `sid` claim of a credential (its payload is plain base64url JSON). */
function sessionIdOf(credential: string): string {
  return (JSON.parse(Buffer.from(credential.split('.')[1]!, 'base64url').toString('utf8')) as { sid: string }).sid;
}

describe('audit trail', () => {
  // One subject of its own, so rows written for other test files never match.
  const user = `audit-${randomBytes(4).toString('hex')}`;
  let credential: string;
  let tunnel: OpenTunnel;
  let client: pg.Client;
  let state: pg.Client;

  async function events(): Promise<AuditRow[]> {
    const { rows } = await state.query<AuditRow>('select * from dbgate_audit_events where subject = $1 order by id', [user]);
    return rows;
  }

  /** Waits for the writer (it flushes every ~50 ms) to store a row `match` accepts; returns the rows matched. */
  async function eventuallyAudited(match: (row: AuditRow) => boolean): Promise<AuditRow[]> {
    let found: AuditRow[] = [];
    await eventually(async () => (found = (await events()).filter(match)).length > 0, 5_000);
    return found;
  }

  beforeAll(async () => {
    state = await directClient('dbgate_state');
    credential = await mintCredential(user, { groups: ['engineering'] });
    tunnel = await openTunnel(user, { credential });
    client = new pg.Client({ ...tunnel.pgConfig, application_name: 'audit-trail-test' });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await tunnel?.close();
    await state?.end();
  });

  it('records the minting of the credential, bound to its session', async () => {
    const minted = await eventuallyAudited((row) => row.event === 'credential.issue');
    expect(minted).toHaveLength(1);
    expect(minted[0]).toMatchObject({ outcome: 'ok', session_id: sessionIdOf(credential), target: null, statement: null });
    expect(minted[0]!.detail).toMatchObject({ origin: 'credential-mint', groups: ['engineering'] });
    expect(String(minted[0]!.detail['minted_by'])).toMatch(/^os-user:/);
  });

  it('records the connection opening on target prod-orders with the session of the credential', async () => {
    const opened = await eventuallyAudited((row) => row.event === 'connection.open');
    expect(opened).toHaveLength(1);
    expect(opened[0]).toMatchObject({ outcome: 'ok', target: 'prod-orders', session_id: sessionIdOf(credential) });
    expect(opened[0]!.connection_id).toMatch(/\S/);
    expect(opened[0]!.detail).toMatchObject({ application_name: 'audit-trail-test' });
  });

  it('records a simple-protocol query with its text, outcome ok and the number of rows returned', async () => {
    const sql = 'select * from customers limit 7';
    const result = await client.query(sql);
    expect(result.rows).toHaveLength(7);
    const [row, ...more] = await eventuallyAudited((r) => r.event === 'statement' && r.statement === sql);
    expect(more).toEqual([]);
    expect(row).toMatchObject({
      subject: user,
      target: 'prod-orders',
      protocol_step: 'query',
      outcome: 'ok',
      sqlstate: null,
      rows: '7',
      session_id: sessionIdOf(credential),
    });
    expect(row!.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('records an extended-protocol parameterized query by its statement text, not its parameter values', async () => {
    const sql = 'select id::int as id, name from customers where id between $1 and $2 order by id';
    const result = await client.query(sql, [3, 5]);
    expect(result.rows.map((r: { id: number }) => r.id)).toEqual([3, 4, 5]);
    const [row, ...more] = await eventuallyAudited((r) => r.event === 'statement' && r.statement === sql);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ subject: user, target: 'prod-orders', protocol_step: 'execute', outcome: 'ok', rows: '3' });
  });

  it('records a failing statement with outcome error and the SQLSTATE the server gave (22012 for 1/0)', async () => {
    const sql = 'select 1/0 as boom';
    await expect(client.query(sql)).rejects.toMatchObject({ code: '22012' });
    const [row, ...more] = await eventuallyAudited((r) => r.event === 'statement' && r.statement === sql);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ subject: user, target: 'prod-orders', protocol_step: 'query', outcome: 'error', sqlstate: '22012' });
  });

  it('records a failing extended-protocol execution with outcome error and its SQLSTATE', async () => {
    const sql = 'select 10 / $1::int as ratio';
    await expect(client.query(sql, [0])).rejects.toMatchObject({ code: '22012' });
    const [row, ...more] = await eventuallyAudited((r) => r.event === 'statement' && r.statement === sql);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ protocol_step: 'execute', outcome: 'error', sqlstate: '22012' });
    // The connection is still usable after the error, and that is audited as well.
    await client.query('select 2 as after_error');
    expect(await eventuallyAudited((r) => r.statement === 'select 2 as after_error' && r.outcome === 'ok')).toHaveLength(1);
  });

  it('attributes every statement to the same connection the open event named', async () => {
    const all = await events();
    const opened = all.find((row) => row.event === 'connection.open');
    const statements = all.filter((row) => row.event === 'statement');
    expect(statements.length).toBeGreaterThanOrEqual(5);
    expect(new Set(statements.map((row) => row.connection_id))).toEqual(new Set([opened!.connection_id]));
  });

  it('attributes statements to the identity that sent them when two people use the gateway at once', async () => {
    const other = `audit-${randomBytes(4).toString('hex')}`;
    const otherTunnel = await openTunnel(other, { credential: await mintCredential(other, { groups: ['engineering'] }) });
    const otherClient = new pg.Client(otherTunnel.pgConfig);
    try {
      await otherClient.connect();
      const marker = `select '${other}' as marker`;
      await otherClient.query(marker);
      expect(await eventually(async () => {
        const { rows } = await state.query('select subject from dbgate_audit_events where statement = $1', [marker]);
        return rows.length === 1 && rows[0].subject === other;
      })).toBe(true);
      expect((await events()).some((row) => row.statement === marker)).toBe(false);
    } finally {
      await otherClient.end();
      await otherTunnel.close();
    }
  });
});
