/**
 * A database of a test's own on the shared cluster, for tests of rules that see through views: a table `guarded`
 * whose writes a rule holds (`holdGuardedWrites`), a table `harmless` no rule names, one row in each, and a way in
 * through an in-process gateway (`login`).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import { issueTestCredential } from './in-process-gateway.js';
import { RawClient } from './raw-client.js';
import { directClient } from './stack.js';

export interface GuardedDatabase {
  /** The database's name. */
  name: string;
  /** A direct connection to it, as the cluster's superuser. */
  client: pg.Client;
  /** The guarded row's version: its xmin moves with every UPDATE that reaches it. */
  guardedVersion(): Promise<string>;
  drop(): Promise<void>;
}

export async function createGuardedDatabase(prefix: string): Promise<GuardedDatabase> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = await directClient('postgres');
  await admin.query(`create database ${name}`);
  const client = await directClient(name);
  await client.query('create table guarded (id int primary key, n int not null)');
  await client.query('insert into guarded values (1, 0)');
  await client.query('create table harmless (id int primary key, n int not null)');
  await client.query('insert into harmless values (1, 0)');
  return {
    name,
    client,
    async guardedVersion() {
      return (await client.query<{ xmin: string }>('select xmin::text from guarded where id = 1')).rows[0]!.xmin;
    },
    async drop() {
      await client.end();
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

/** The policy rule that holds writes to `guarded` on `target`. */
export function holdGuardedWrites(target: string): Record<string, unknown> {
  return {
    id: 'hold-guarded-writes', match: { targets: [target], tables: ['public.guarded'], writes: true },
    action: 'hold', reason: 'writes to guarded need an approval',
  };
}

/** A fresh connection to `target` through `gateway`, as a new subject of `group`. */
export async function login(gateway: RunningGateway, target: string, group: string): Promise<RawClient> {
  const subject = `owner-${randomBytes(3).toString('hex')}`;
  return RawClient.login({
    host: gateway.pg.host, port: gateway.pg.port, user: subject, database: target,
    password: await issueTestCredential(gateway, subject, [group], 'guarded-database-test'),
  });
}
