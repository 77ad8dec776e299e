/**
 * Several gateways behind a load balancer share one state store (README "Several gateways"). A view replaced through
 * one of them must not be judged on its old definition by the others, which read the catalog on their own: the
 * gateway the change committed through announces it in the store (NOTIFY), and the others read their catalog again.
 *
 * Two in-process gateways of this file's own (A and B) with the shared cluster's state store, the same target (a
 * database of this file's own) and the same policy: a hold rule on one table, DDL allowed.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import type { Logger } from '../../src/gateway/log.js';
import { createGuardedDatabase, holdGuardedWrites, login as loginTo, type GuardedDatabase } from '../support/guarded-database.js';
import { gatewayConfigDir, type GatewayConfigDir } from '../support/in-process-gateway.js';
import type { RawClient } from '../support/raw-client.js';
import { directClient, eventually } from '../support/stack.js';

const TARGET = `shared-schema-${randomBytes(4).toString('hex')}`;
const GROUP = 'schema-owners';

describe('a schema change through one gateway, seen by another sharing the store', () => {
  const dirs: GatewayConfigDir[] = [];
  let database: GuardedDatabase;
  let target: GuardedDatabase['client'];
  let gatewayA: RunningGateway | undefined;
  let gatewayB: RunningGateway | undefined;
  /** What B logged of announcements it received. */
  const announcedToB: Array<Record<string, unknown>> = [];

  async function startGateway(name: string, log: Logger): Promise<RunningGateway> {
    const dir = await gatewayConfigDir(name);
    dirs.push(dir);
    return dir.start({
      ...dir.base,
      targets: { [TARGET]: await dir.clusterTarget(database.name) },
      policy: { grants: [{ groups: [GROUP], targets: [TARGET], access: 'admin' }], rules: [holdGuardedWrites(TARGET)] },
    }, log);
  }

  const login = (gateway: RunningGateway): Promise<RawClient> => loginTo(gateway, TARGET, GROUP);

  beforeAll(async () => {
    database = await createGuardedDatabase('shared_schema');
    target = database.client;
    await target.query('create view swapped as select * from harmless');
    gatewayA = await startGateway('schema-a', { log() {} });
    gatewayB = await startGateway('schema-b', {
      log(_level, event, fields) {
        if (event === 'catalog.changed_elsewhere' && (fields?.['target'] === TARGET || fields?.['target'] === '*')) {
          announcedToB.push(fields);
        }
      },
    });
  });

  afterAll(async () => {
    await gatewayA?.close();
    await gatewayB?.close();
    for (const dir of dirs) await dir.remove();
    await database?.drop();
  });

  it('holds a write through a view replaced through the other gateway, within the catalog\'s usual minute', async () => {
    const onA = await login(gatewayA!);
    const onB = await login(gatewayB!);
    try {
      // B reads its catalog: swapped reads harmless, so a write through it is not held.
      expect((await onB.query('update swapped set n = n + 1 where id = 1')).errors).toEqual([]);
      const guardedBefore = await database.guardedVersion();

      expect((await onA.query('create or replace view swapped as select * from guarded')).errors).toEqual([]);
      expect(await eventually(async () => announcedToB.length > 0)).toBe(true);

      const write = await onB.query('update swapped set n = n + 1 where id = 1');
      expect(write.errors[0]?.['D']).toBe('rule: hold-guarded-writes');
      expect(await database.guardedVersion()).toBe(guardedBefore);
    } finally {
      onA.close();
      onB.close();
    }
  });

  it('listens again after losing its connection to the store, and reads every catalog again for what it missed', async () => {
    const store = await directClient('dbgate_state');
    const onA = await login(gatewayA!);
    const onB = await login(gatewayB!);
    try {
      await target.query('create or replace view swapped as select * from harmless');
      announcedToB.length = 0;
      // Every gateway's listening connection (others of the test run listen too: they connect again the same way).
      await store.query(`select pg_terminate_backend(pid) from pg_stat_activity
                          where application_name = 'dbgate-gateway schema changes' and datname = current_database()`);
      expect(await eventually(async () => announcedToB.some((fields) => fields['target'] === '*'))).toBe(true);
      // B read its catalog again for what it may have missed: the view replaced directly is seen at once.
      expect((await onB.query('update swapped set n = n + 1 where id = 1')).errors).toEqual([]);
      // And it hears announcements again.
      announcedToB.length = 0;
      expect((await onA.query('create or replace view swapped as select * from guarded')).errors).toEqual([]);
      expect(await eventually(async () => announcedToB.some((fields) => fields['target'] === TARGET))).toBe(true);
      expect((await onB.query('update swapped set n = n + 1 where id = 1')).errors[0]?.['D']).toBe('rule: hold-guarded-writes');
    } finally {
      onA.close();
      onB.close();
      await store.end();
    }
  });
});
