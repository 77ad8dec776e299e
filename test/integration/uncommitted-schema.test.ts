/**
 * The gateway reads the target's catalog on a connection of its own: it sees committed relations, and temporary ones
 * of other sessions, but not what a session has changed in a transaction it has not committed yet. A view created or
 * replaced there, then used in the same transaction (or the same message), would be judged on the catalog as it was:
 * a write through it past a rule holding writes to its table, masked values copied out through it. Statements that
 * use relations after such a change are refused until the transaction ends; a temporary view is seen through like
 * any other once it is committed.
 *
 * An in-process gateway with a policy of this file's own (a hold rule on one table, a masked column, DDL allowed) and
 * a database of its own on the shared cluster.
 */
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import { silentLogger } from '../../src/gateway/log.js';
import { createGuardedDatabase, holdGuardedWrites, login as loginTo, type GuardedDatabase } from '../support/guarded-database.js';
import { gatewayConfigDir, type GatewayConfigDir } from '../support/in-process-gateway.js';
import type { RawClient } from '../support/raw-client.js';

const TARGET = 'uncommitted-schema-target';
const GROUP = 'schema-owners';
const EMAIL = 'ada@example.com';

describe('statements after uncommitted schema changes', () => {
  let database: GuardedDatabase;
  let target: GuardedDatabase['client'];
  let dir: GatewayConfigDir | undefined;
  let gateway: RunningGateway | undefined;

  const guardedVersion = (): Promise<string> => database.guardedVersion();
  const login = (): Promise<RawClient> => loginTo(gateway!, TARGET, GROUP);

  /** Runs `queries` one Query message each, in order, and returns each one's errors' DETAIL (the rule). */
  async function run(client: RawClient, ...queries: string[]): Promise<Array<string | undefined>> {
    const rules: Array<string | undefined> = [];
    for (const sql of queries) rules.push((await client.query(sql)).errors[0]?.['D'] ?? (undefined));
    return rules;
  }

  async function relationExists(name: string): Promise<boolean> {
    return (await target.query<{ found: boolean }>('select to_regclass($1) is not null as found', [name])).rows[0]!.found;
  }

  beforeAll(async () => {
    database = await createGuardedDatabase('uncommitted_schema');
    target = database.client;
    await target.query('create view swapped as select * from harmless');
    await target.query('create view swapped_in_pipeline as select * from harmless');
    await target.query('create view inner_view as select * from harmless');
    await target.query('create view outer_view as select * from inner_view');
    await target.query('create table people (id int primary key, email text not null)');
    await target.query('create table migration_history (name text not null)');
    await target.query('insert into people values (1, $1)', [EMAIL]);
    dir = await gatewayConfigDir('uncommitted-schema');
    gateway = await dir.start({
      ...dir.base,
      targets: { [TARGET]: await dir.clusterTarget(database.name) },
      policy: {
        grants: [{ groups: [GROUP], targets: [TARGET], access: 'admin' }],
        rules: [
          holdGuardedWrites(TARGET),
          { id: 'mask-people-email', match: { targets: [TARGET] }, action: 'mask', columns: ['public.people.email'] },
        ],
      },
    }, silentLogger);
  });

  afterAll(async () => {
    await gateway?.close();
    await dir?.remove();
    await database?.drop();
  });

  it('refuses a write through a view created earlier in the open transaction, and holds it once committed', async () => {
    const client = await login();
    try {
      const before = await guardedVersion();
      const [, created, write] = await run(client,
        'begin', 'create view in_tx as select * from guarded', 'update in_tx set n = n + 1 where id = 1');
      expect(created).toBeUndefined();
      expect(write).toBe('rule: builtin:uncommitted-schema');
      const refused = (await client.query('rollback')).errors;
      expect(refused).toEqual([]);
      expect(await guardedVersion()).toBe(before);

      const [, , , committedWrite] = await run(client,
        'begin', 'create view in_tx as select * from guarded', 'commit', 'update in_tx set n = n + 1 where id = 1');
      expect(committedWrite).toBe('rule: hold-guarded-writes');
      expect(await guardedVersion()).toBe(before);
    } finally {
      client.close();
    }
  });

  it('names the rule, the reason and the way out in its refusal', async () => {
    const client = await login();
    try {
      await run(client, 'begin', 'create view explained as select * from harmless');
      const { errors } = await client.query('select * from explained');
      expect(errors[0]).toMatchObject({ C: '42501', D: 'rule: builtin:uncommitted-schema' });
      expect(errors[0]!['M']).toContain('changed the schema in this transaction');
      expect(errors[0]!['H']).toContain('COMMIT');
      // Statements that name no relation still run: the transaction can be ended either way.
      expect((await client.query('rollback')).errors).toEqual([]);
      expect((await client.query('select * from harmless')).errors).toEqual([]);
    } finally {
      client.close();
    }
  });

  it('refuses views over a view replaced in the open transaction, and names renamed in it, but not tables it left alone', async () => {
    const client = await login();
    try {
      const [, replaced, untouched, throughOuter] = await run(client,
        'begin', 'create or replace view inner_view as select * from guarded',
        'update harmless set n = n + 1 where id = 1', 'update outer_view set n = n + 1 where id = 1');
      expect([replaced, untouched]).toEqual([undefined, undefined]);
      expect(throughOuter).toBe('rule: builtin:uncommitted-schema');
      await run(client, 'rollback');
      const [, renamed, created, shadowed] = await run(client,
        'begin', 'alter table harmless rename to harmless_before', 'create view harmless as select * from guarded',
        'update harmless set n = n + 1 where id = 1');
      expect([renamed, created]).toEqual([undefined, undefined]);
      expect(shadowed).toBe('rule: builtin:uncommitted-schema');
      await run(client, 'rollback');
      expect(await relationExists('harmless_before')).toBe(false);
    } finally {
      client.close();
    }
  });

  it('refuses a message that creates a view and uses it, before any of it runs', async () => {
    const client = await login();
    try {
      const before = await guardedVersion();
      const { errors } = await client.query('create view same_message as select * from guarded; update same_message set n = n + 1 where id = 1');
      expect(errors[0]?.['D']).toBe('rule: builtin:uncommitted-schema');
      expect(await relationExists('same_message')).toBe(false);
      expect(await guardedVersion()).toBe(before);
    } finally {
      client.close();
    }
  });

  it('judges a view replaced in a transaction on its new definition once committed, not on a catalog read meanwhile', async () => {
    const client = await login();
    try {
      const before = await guardedVersion();
      const [, replaced, write] = await run(client,
        'begin', 'create or replace view swapped as select * from guarded', 'update swapped set n = n + 1 where id = 1');
      expect(replaced).toBeUndefined();
      expect(write).toBe('rule: builtin:uncommitted-schema');
      expect(await run(client, 'rollback')).toEqual([undefined]);
      // A catalog read during the next transaction must not outlive its commit.
      const [, replacedAgain, read, commit, committedWrite] = await run(client,
        'begin', 'create or replace view swapped as select * from guarded', 'select 1', 'commit',
        'update swapped set n = n + 1 where id = 1');
      expect([replacedAgain, read, commit]).toEqual([undefined, undefined, undefined]);
      expect(committedWrite).toBe('rule: hold-guarded-writes');
      expect(await guardedVersion()).toBe(before);
    } finally {
      await target.query('create or replace view swapped as select * from harmless');
      client.close();
    }
  });

  it('refuses a portal bound before a view was replaced in its pipeline', async () => {
    const client = await login();
    try {
      const before = await guardedVersion();
      const exchange = await client.send([
        serialize.parse({ name: 'write', text: 'update swapped_in_pipeline set n = n + 1 where id = 1' }),
        serialize.bind({ portal: 'p', statement: 'write' }),
        serialize.parse({ text: 'create or replace view swapped_in_pipeline as select * from guarded' }), serialize.bind({}), serialize.execute({}),
        serialize.execute({ portal: 'p' }),
        serialize.sync(),
      ]);
      expect(exchange.errors.map((error) => error['D'])).toEqual(['rule: builtin:session-change-pending']);
      expect(await guardedVersion()).toBe(before);
      // The refusal failed the pipeline's implicit transaction, the replacement with it.
      const definition = await target.query<{ definition: string }>("select pg_get_viewdef('swapped_in_pipeline') as definition");
      expect(definition.rows[0]!.definition).toContain('harmless');
    } finally {
      client.close();
    }
  });

  it('refuses to copy masked values out through a view created in the open transaction', async () => {
    const client = await login();
    try {
      const [, view, copy] = await run(client,
        'begin', 'create view contact as select email from people', 'create table copied as select * from contact');
      expect(view).toBeUndefined();
      expect(copy).toBe('rule: builtin:uncommitted-schema');
      // The refusal failed the transaction: COMMIT rolls it back.
      await run(client, 'commit');
      expect(await relationExists('copied')).toBe(false);
      // Committed, the view is known: the copy is refused for what it copies.
      const [committedView, committedCopy] = await run(client,
        'create view contact as select email from people', 'create table copied as select * from contact');
      expect(committedView).toBeUndefined();
      expect(committedCopy).toBe('rule: builtin:inference');
      expect(await relationExists('copied')).toBe(false);
    } finally {
      client.close();
    }
  });

  it('sees through a temporary view, also one that shadows a table of the same name', async () => {
    const client = await login();
    try {
      const before = await guardedVersion();
      const [created, write] = await run(client,
        'create temp view temporary_guarded as select * from guarded', 'update temporary_guarded set n = n + 1 where id = 1');
      expect(created).toBeUndefined();
      expect(write).toBe('rule: hold-guarded-writes');
      const [shadow, shadowedWrite] = await run(client,
        'create temp view harmless as select * from guarded', 'update harmless set n = n + 1 where id = 1');
      expect(shadow).toBeUndefined();
      expect(shadowedWrite).toBe('rule: hold-guarded-writes');
      expect(await guardedVersion()).toBe(before);
    } finally {
      client.close();
    }
  });

  it('reads the catalog past a view locked by an open transaction, and treats that view as unknown until it is released', async () => {
    const owner = await login();
    const other = await login();
    try {
      await target.query('create or replace view locked_view as select * from harmless');
      // The gateway session holds an exclusive lock on the view (CREATE OR REPLACE VIEW) until its transaction ends.
      expect(await run(owner, 'begin', 'create or replace view locked_view as select * from harmless')).toEqual([undefined, undefined]);
      // A relation the catalog does not know has it read again, once the last read is older than a second.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const unknown = await other.query('select * from no_such_relation');
      expect(unknown.errors[0]?.['C']).toBe('42P01');
      // The locked view's definition could not be read: what it reads is unknown, and this identity has masked
      // columns, so its columns in a WHERE clause are refused (fail closed).
      const write = (await other.query('update locked_view set n = n + 1 where id = 1')).errors[0];
      expect(write?.['D']).toBe('rule: builtin:inference');
      expect(write?.['M']).toContain('locked_view');
      // The lock holder is not stuck behind the read either.
      expect(await run(owner, 'select 1', 'rollback')).toEqual([undefined, undefined]);
      // Released, the view is read again soon: a write through it is judged on its definition (it reads harmless).
      await new Promise((resolve) => setTimeout(resolve, 2_100));
      const [released] = await run(other, 'update locked_view set n = n + 1 where id = 1');
      expect(released).toBeUndefined();
    } finally {
      owner.close();
      other.close();
    }
  }, 20_000);

  it('holds a rule that turns writes of another table into writes of the guarded one, as it would the writes', async () => {
    const client = await login();
    try {
      const [created] = await run(client, 'create rule redirect as on update to harmless do instead update guarded set n = n + 1');
      expect(created).toBe('rule: hold-guarded-writes');
      const rules = await target.query("select count(*)::int as n from pg_rules where rulename = 'redirect'");
      expect(rules.rows[0].n).toBe(0);
    } finally {
      client.close();
    }
  });

  it('lets a migration create tables, fill them and define views over them in one transaction', async () => {
    const client = await login();
    try {
      const rules = await run(client,
        'begin',
        'create table migrated (id int primary key, label text)',
        "insert into migrated values (1, 'one')",
        'create view migrated_labels as select label from migrated',
        'create view migrated_first as select * from migrated_labels limit 1',
        'alter table migrated add column note text',
        "update migrated set note = 'first'",
        // A migration tool records the migration in its own table, in the same transaction.
        "insert into migration_history values ('create migrated')",
        'commit');
      expect(rules).toEqual(Array(9).fill(undefined));
      const { rows, errors } = await client.query('select * from migrated_first');
      expect(errors).toEqual([]);
      expect(rows).toEqual([['one']]);
    } finally {
      client.close();
    }
  });
});
