/**
 * A statement sent behind DDL, before the server has answered it, is judged on a catalog that does not have the
 * DDL's effect yet. A rule that names a table sees through views (target-catalog.ts): a view created and written
 * through in one write must not let the write past the rule. Simple Queries behind DDL wait for its answer; in an
 * extended-protocol pipeline, statements after DDL and before Sync are refused.
 *
 * An in-process gateway with a policy of this file's own (a hold rule on one table, DDL allowed) and a database of
 * its own on the shared cluster.
 */
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import { silentLogger } from '../../src/gateway/log.js';
import { createGuardedDatabase, holdGuardedWrites, login as loginTo, type GuardedDatabase } from '../support/guarded-database.js';
import { gatewayConfigDir, type GatewayConfigDir } from '../support/in-process-gateway.js';
import type { RawClient } from '../support/raw-client.js';

const TARGET = 'schema-change-target';
const GROUP = 'schema-changers';

describe('statements behind DDL are judged on the catalog the DDL leaves', () => {
  let database: GuardedDatabase;
  let dir: GatewayConfigDir | undefined;
  let gateway: RunningGateway | undefined;

  const guardedVersion = (): Promise<string> => database.guardedVersion();
  /** A fresh connection: its catalog is read for its first statement, so it is younger than the recheck interval. */
  const login = (): Promise<RawClient> => loginTo(gateway!, TARGET, GROUP);

  beforeAll(async () => {
    database = await createGuardedDatabase('schema_change');
    dir = await gatewayConfigDir('schema-change');
    gateway = await dir.start({
      ...dir.base,
      targets: {
        [TARGET]: await dir.clusterTarget(database.name),
      },
      policy: {
        grants: [{ groups: [GROUP], targets: [TARGET], access: 'admin' }],
        rules: [holdGuardedWrites(TARGET)],
      },
    }, silentLogger);
  });

  afterAll(async () => {
    await gateway?.close();
    await dir?.remove();
    await database?.drop();
  });

  it('holds a write through a view created by the Query before it in the same write', async () => {
    const client = await login();
    try {
      const before = await guardedVersion();
      const exchange = await client.send([
        serialize.query('create view probe_view as select * from guarded'),
        serialize.query('update probe_view set n = n + 1 where id = 1'),
      ], 2);
      expect(exchange.errors).toHaveLength(1);
      expect(exchange.errors[0]!['D']).toBe('rule: hold-guarded-writes');
      expect(await guardedVersion()).toBe(before);
    } finally {
      client.close();
    }
  });

  it('refuses a statement pipelined after DDL before Sync, and judges it on the new catalog after', async () => {
    const client = await login();
    try {
      const before = await guardedVersion();
      const exchange = await client.send([
        serialize.parse({ text: 'create view probe_view2 as select * from guarded' }), serialize.bind({}), serialize.execute({}),
        serialize.parse({ text: 'update probe_view2 set n = n + 1 where id = 1' }), serialize.bind({}), serialize.execute({}),
        serialize.sync(),
      ]);
      expect(exchange.errors).toHaveLength(1);
      expect(exchange.errors[0]!['D']).toBe('rule: builtin:session-change-pending');
      expect(await guardedVersion()).toBe(before);
      // The refusal failed the pipeline's transaction, and the view with it; created in a pipeline of its own, the
      // write through it is held.
      expect((await client.send([
        serialize.parse({ text: 'create view probe_view2 as select * from guarded' }), serialize.bind({}), serialize.execute({}),
        serialize.sync(),
      ])).errors).toEqual([]);
      const write = await client.send([
        serialize.parse({ text: 'update probe_view2 set n = n + 1 where id = 1' }), serialize.bind({}), serialize.execute({}),
        serialize.sync(),
      ]);
      expect(write.errors[0]?.['D']).toBe('rule: hold-guarded-writes');
      expect(await guardedVersion()).toBe(before);
    } finally {
      client.close();
    }
  });
});
