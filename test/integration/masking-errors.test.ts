/**
 * Errors are a way out for masked values: a cast that fails prints its input, a constraint violation prints the row,
 * and whether a computation fails at all shows what it computed on. Through the gateway, alice (engineering:
 * customers' email, phone and SSN masked) cannot run a computation on a masked value that can fail (inference clause
 * `error`); where a policy permits it (`allow_inference: [error]`), she gets the SQLSTATE and the parts of the server's
 * message that only repeat her statement, and never a masked value.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import { silentLogger } from '../../src/gateway/log.js';
import { gatewayConfigDir, issueTestCredential, type GatewayConfigDir } from '../support/in-process-gateway.js';
import { directClient, mintCredential, openTunnel, type OpenTunnel } from '../support/stack.js';

const FAILING = [
  ['a failing cast', 'select email::int from customers where id = 1', '22P02'],
  ['a failing date cast', 'select ssn::date from customers where id = 1', '22008'],
  // The email's dots make it a cross-database name (0A000); the message would still print it.
  ['a value read as a relation name', 'select (select email from customers where id = 1)::regclass', '0A000'],
  ['a value read as a setting name', 'select current_setting(phone) from customers where id = 1', '42704'],
  ['a value parsed as JSON (detail and context)', 'select email::json from customers where id = 1', '22P02'],
] as const;

describe('errors of statements that read masked columns', () => {
  let tunnel: OpenTunnel;
  let alice: pg.Client;
  let secrets: string[];
  let dir: GatewayConfigDir | undefined;
  let permissive: RunningGateway | undefined;
  /** alice through a gateway whose mask rule permits computations that can fail on masked columns. */
  let permitted: pg.Client;

  beforeAll(async () => {
    tunnel = await openTunnel('alice');
    alice = new pg.Client(tunnel.pgConfig);
    await alice.connect();
    const admin = await directClient();
    const { rows } = await admin.query<{ email: string; phone: string; ssn: string }>('select email, phone, ssn from customers where id = 1');
    await admin.end();
    secrets = [rows[0]!.email, rows[0]!.phone, rows[0]!.ssn];
    dir = await gatewayConfigDir('masking-errors');
    permissive = await dir.start({
      ...dir.base,
      targets: { 'prod-orders': await dir.clusterTarget('prod_orders') },
      policy: {
        grants: [{ groups: ['engineering'], targets: ['prod-orders'], access: 'read' }],
        rules: [{
          id: 'mask-pii', match: { groups: ['engineering'] }, action: 'mask', allow_inference: ['error'],
          columns: ['public.customers.email', 'public.customers.phone', 'public.customers.ssn'],
        }],
      },
    }, silentLogger);
    permitted = new pg.Client({
      host: permissive.pg.host, port: permissive.pg.port, user: 'alice', database: 'prod-orders', ssl: false,
      password: await issueTestCredential(permissive, 'alice', ['engineering'], 'masking-errors-test'),
    });
    await permitted.connect();
  });

  afterAll(async () => {
    await alice?.end();
    await tunnel?.close();
    await permitted?.end();
    await permissive?.close();
    await dir?.remove();
  });

  async function failure(sql: string, client = permitted): Promise<pg.DatabaseError> {
    const error = await client.query(sql).then(() => undefined, (caught: pg.DatabaseError) => caught);
    if (!error) throw new Error(`expected ${sql} to fail`);
    return error;
  }

  it.each(FAILING)('%s is refused before it runs: whether it fails would show the value', async (_name, sql) => {
    const error = await failure(sql, alice);
    expect(error.code).toBe('42501');
    expect(error.detail).toBe('rule: builtin:inference');
    expect(error.message).toContain('with an operation that can fail');
  });

  it('refuses the computations that fail exactly for some values, and lets those that never fail run', async () => {
    // Fails exactly when the email starts with "k": one bit of the value per statement, without the refusal.
    expect((await failure('select 1 / (ascii(email) - 107) from customers where id = 1', alice)).code).toBe('42501');
    expect((await failure("select case when email like 'k%' then 1 / 0 else 1 end from customers where id = 1", alice)).code).toBe('42501');
    const { rows } = await alice.query('select length(email) as n, lower(email) as l from customers where id = 1');
    expect(rows).toEqual([{ n: null, l: '****' }]);
  });

  it.each(FAILING)("%s, where the policy permits it, shows its SQLSTATE, not the value", async (_name, sql, code) => {
    const error = await failure(sql);
    expect(error.code).toBe(code);
    const everything = JSON.stringify({ ...error, message: error.message });
    // Not even a part of one: a JSON error's detail prints just the first token ("kim" of kim.lee@…).
    for (const part of secrets.flatMap((secret) => secret.split(/[^A-Za-z0-9]+/)).filter((part) => part.length >= 4)) {
      expect(everything).not.toContain(part);
    }
  });

  it('keeps messages that only repeat the statement', async () => {
    expect((await failure("select name from customers where id = 'abc'", alice)).message).toBe('invalid input syntax for type bigint: "abc"');
    expect((await failure('select emial from customers', alice)).message).toBe('column "emial" does not exist');
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
