/**
 * SQL cursors are portals too: `DECLARE c CURSOR FOR SELECT email FROM customers` creates a portal named "c", and
 * the extended protocol's Execute can read it by that name. Its rows must never pass unmasked: an Execute of a portal
 * the gateway did not bind is refused, and a cursor declared under the name of a portal bound before does not
 * inherit that portal's decision (nor does a statement PREPAREd in SQL under a parsed statement's name). FETCH, the
 * way SQL reads a cursor, stays masked.
 */
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/raw-client.js';
import { directClient, openTunnel, type OpenTunnel } from '../support/stack.js';

describe('cursors through the extended protocol', () => {
  let tunnel: OpenTunnel;
  let alice: RawClient;
  let emails: string[];

  beforeAll(async () => {
    tunnel = await openTunnel('alice');
    alice = await RawClient.login({ host: tunnel.host, port: tunnel.port, user: 'alice', database: 'prod-orders', password: tunnel.password });
    const admin: pg.Client = await directClient();
    emails = (await admin.query<{ email: string }>('select email from customers order by id limit 3')).rows.map((row) => row.email);
    await admin.end();
  });

  afterAll(async () => {
    alice?.close();
    await tunnel?.close();
  });

  function expectNoCleartext(rows: unknown): void {
    const text = JSON.stringify(rows);
    for (const email of emails) expect(text).not.toContain(email);
  }

  /** Sends `messages` and a Sync: refused by `rule`, and not one email in clear came back. */
  async function expectRefused(messages: Buffer[], rule: string): Promise<void> {
    const exchange = await alice.send([...messages, serialize.sync()]);
    expect(exchange.errors[0]?.['D']).toBe(`rule: ${rule}`);
    expectNoCleartext(exchange.rows);
  }

  it('refuses an Execute of a cursor DECLAREd in SQL', async () => {
    expect((await alice.query('begin; declare probe_c cursor for select email from customers order by id')).errors).toEqual([]);
    await expectRefused([serialize.execute({ portal: 'probe_c', rows: 3 })], 'builtin:unknown-portal');
    await alice.query('rollback');
  });

  it('does not let a cursor DECLAREd under a bound portal\'s name borrow its decision', async () => {
    // A harmless portal named probe_p, bound in a transaction that ends (the server drops the portal with it)…
    expect((await alice.query('begin')).errors).toEqual([]);
    expect((await alice.send([serialize.parse({ name: '', text: 'select 1' }), serialize.bind({ portal: 'probe_p' }), serialize.sync()])).errors)
      .toEqual([]);
    expect((await alice.query('commit')).errors).toEqual([]);
    // …then a cursor over the emails under the same name: its rows would have been judged as `select 1`'s.
    expect((await alice.query('begin; declare probe_p cursor for select email from customers order by id')).errors).toEqual([]);
    await expectRefused([serialize.execute({ portal: 'probe_p', rows: 3 })], 'builtin:unknown-portal');
    await alice.query('rollback');
  });

  it('does not let a statement PREPAREd in SQL under a parsed statement\'s name borrow its decision', async () => {
    expect((await alice.send([serialize.parse({ name: 'probe_s', text: 'select 1' }), serialize.sync()])).errors).toEqual([]);
    expect((await alice.query('deallocate probe_s; prepare probe_s as select email from customers order by id limit 3')).errors).toEqual([]);
    await expectRefused([serialize.bind({ statement: 'probe_s' }), serialize.execute({})], 'builtin:unknown-prepared-statement');
    await alice.query('deallocate probe_s');
  });

  it('masks the rows FETCH returns', async () => {
    expect((await alice.query('begin; declare probe_f cursor for select email from customers order by id')).errors).toEqual([]);
    const fetched = await alice.query('fetch 3 from probe_f');
    expect(fetched.errors).toEqual([]);
    expect(fetched.rows).toHaveLength(3);
    expectNoCleartext(fetched.rows);
    await alice.query('rollback');
  });
});
