/**
 * Errors are a way out for masked values: a cast that fails prints its input, a constraint violation prints the row.
 * Through the gateway, alice (engineering: customers' email, phone and SSN masked) gets the SQLSTATE and the parts of
 * the server's message that only repeat her statement, and never a masked value.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { directClient, mintCredential, openTunnel, type OpenTunnel } from '../support/stack.js';

describe('errors of statements that read masked columns', () => {
  let tunnel: OpenTunnel;
  let alice: pg.Client;
  let secrets: string[];

  beforeAll(async () => {
    tunnel = await openTunnel('alice');
    alice = new pg.Client(tunnel.pgConfig);
    await alice.connect();
    const admin = await directClient();
    const { rows } = await admin.query<{ email: string; phone: string; ssn: string }>('select email, phone, ssn from customers where id = 1');
    await admin.end();
    secrets = [rows[0]!.email, rows[0]!.phone, rows[0]!.ssn];
  });

  afterAll(async () => {
    await alice?.end();
    await tunnel?.close();
  });

  async function failure(sql: string): Promise<pg.DatabaseError> {
    const error = await alice.query(sql).then(() => undefined, (caught: pg.DatabaseError) => caught);
    if (!error) throw new Error(`expected ${sql} to fail`);
    return error;
  }

  it.each([
    ['a failing cast', 'select email::int from customers where id = 1', '22P02'],
    ['a failing date cast', 'select ssn::date from customers where id = 1', '22008'],
    // The email's dots make it a cross-database name (0A000); the message would still print it.
    ['a value read as a relation name', 'select (select email from customers where id = 1)::regclass', '0A000'],
    ['a value read as a setting name', 'select current_setting(phone) from customers where id = 1', '42704'],
    ['a value parsed as JSON (detail and context)', 'select email::json from customers where id = 1', '22P02'],
  ])('%s shows its SQLSTATE, not the value', async (_name, sql, code) => {
    const error = await failure(sql);
    expect(error.code).toBe(code);
    const everything = JSON.stringify({ ...error, message: error.message });
    // Not even a part of one: a JSON error's detail prints just the first token ("kim" of kim.lee@…).
    for (const part of secrets.flatMap((secret) => secret.split(/[^A-Za-z0-9]+/)).filter((part) => part.length >= 4)) {
      expect(everything).not.toContain(part);
    }
  });

  it('keeps messages that only repeat the statement', async () => {
    expect((await failure("select name from customers where id = 'abc'")).message).toBe('invalid input syntax for type bigint: "abc"');
    expect((await failure('select emial from customers')).message).toBe('column "emial" does not exist');
  });

  it('leaves the errors of an identity with nothing masked alone', async () => {
    const bobTunnel = await openTunnel('bob', { credential: await mintCredential('bob', { groups: ['dba'] }) });
    const bob = new pg.Client(bobTunnel.pgConfig);
    await bob.connect();
    try {
      const error = await bob.query('select email::int from customers where id = 1').then(() => undefined, (caught: pg.DatabaseError) => caught);
      expect(error?.message).toBe(`invalid input syntax for type integer: "${secrets[0]}"`);
    } finally {
      await bob.end();
      await bobTunnel.close();
    }
  });
});
