/**
 * A masked column renamed on the database stays masked. The policy names `clinic.patients.email`; the gateway's
 * catalog remembers where it found that column (table OID and attribute number, in the state store), so after
 * `RENAME COLUMN` — through the gateway, or directly on the database while no gateway ran — its values are masked
 * under the new name and the policy judges the new name as the masked column. A masked column the catalog cannot
 * find at all (its table is there) makes masked reads of that table fail closed.
 *
 * A gateway of this file's own (in-process, stopped and started again) in front of a database of its own on the
 * shared cluster, so renaming columns disturbs no other test.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import type { Logger } from '../../src/gateway/log.js';
import { gatewayConfigDir, issueTestCredential, type GatewayConfigDir } from '../support/in-process-gateway.js';
import { directClient, sharedStack } from '../support/stack.js';

const DATABASE = 'dbgate_rename_test';
/** Unique per run: the state store is shared, and remembers locations per target name. */
const TARGET = `clinic-${randomBytes(4).toString('hex')}`;
const PATIENTS = [
  { id: 1, name: 'Ann Lee', email: 'ann.lee@example.com' },
  { id: 2, name: 'Bo Chan', email: 'bo.chan@example.org' },
];

interface Outcome {
  rows: unknown[][];
  error: { code: string | undefined; message: string; detail: string | undefined } | undefined;
  /** Everything the client got back, for leak checks. */
  text: string;
}

describe('a masked column renamed on the database', () => {
  let admin: pg.Client;
  let configDir: GatewayConfigDir;
  let config: Record<string, unknown>;
  let gateway: RunningGateway | undefined;
  const events: string[] = [];
  const log: Logger = { log: (_level, event) => events.push(event) };

  /** Runs `sql` through the gateway as a new connection of `subject` in `group`. */
  async function run(group: 'analysts' | 'owners', sql: string): Promise<Outcome> {
    const subject = `${group}-${randomBytes(3).toString('hex')}`;
    const client = new pg.Client({
      host: gateway!.pg.host, port: gateway!.pg.port, user: subject, database: TARGET, ssl: false,
      password: await issueTestCredential(gateway!, subject, [group], 'masked-column-rename-test'),
    });
    await client.connect();
    try {
      const result = await client.query({ text: sql, rowMode: 'array' });
      return { rows: result.rows as unknown[][], error: undefined, text: JSON.stringify(result.rows) };
    } catch (error) {
      const { code, message, detail } = error as pg.DatabaseError;
      return { rows: [], error: { code, message, detail }, text: JSON.stringify({ message, detail }) };
    } finally {
      await client.end();
    }
  }

  function expectNoEmail(outcome: Outcome): void {
    for (const { email } of PATIENTS) expect(outcome.text).not.toContain(email);
  }

  async function restartGateway(): Promise<void> {
    await gateway?.close();
    gateway = await configDir.start(config, log);
  }

  beforeAll(async () => {
    const server = await directClient('postgres');
    await server.query(`drop database if exists ${DATABASE} with (force)`);
    await server.query(`create database ${DATABASE}`);
    await server.end();
    admin = await directClient(DATABASE);
    await admin.query('create schema clinic');
    await admin.query('create table clinic.patients (id int primary key, name text not null, email text not null)');
    for (const { id, name, email } of PATIENTS) {
      await admin.query('insert into clinic.patients values ($1, $2, $3)', [id, name, email]);
    }

    configDir = await gatewayConfigDir('masked-column-rename');
    const cluster = new URL(sharedStack().cluster.adminUrl);
    config = {
      ...configDir.base,
      targets: {
        [TARGET]: {
          host: cluster.hostname, port: Number(cluster.port), database: DATABASE, user: decodeURIComponent(cluster.username),
          password_file: await configDir.secret('target-password', decodeURIComponent(cluster.password)), tls: 'disable',
        },
      },
      policy: {
        grants: [
          { groups: ['analysts'], targets: [TARGET], access: 'read' },
          { groups: ['owners'], targets: [TARGET], access: 'admin' },
        ],
        rules: [{ id: 'mask-patient-email', match: { groups: ['analysts'] }, action: 'mask', columns: ['clinic.patients.email'] }],
      },
    };
    gateway = await configDir.start(config, log);
  });

  afterAll(async () => {
    await gateway?.close();
    await configDir?.remove();
    await admin?.end();
    const server = await directClient('dbgate_state');
    await server.query('delete from dbgate_masked_column_locations where target = $1', [TARGET]);
    await server.query(`drop database if exists ${DATABASE} with (force)`);
    await server.end();
  });

  it('is masked under the policy\'s name to begin with', async () => {
    const outcome = await run('analysts', 'select id, email from clinic.patients order by id');
    expect(outcome.rows).toEqual([[1, 'a***@example.com'], [2, 'b***@example.org']]);
  });

  it('stays masked under its new name after RENAME COLUMN through the gateway, and the policy treats it as masked', async () => {
    expect((await run('owners', 'alter table clinic.patients rename column email to contact')).error).toBeUndefined();

    const read = await run('analysts', 'select id, contact from clinic.patients order by id');
    expect(read.rows).toEqual([[1, 'a***@example.com'], [2, 'b***@example.org']]);
    const computed = await run('analysts', 'select length(contact), upper(contact) from clinic.patients order by id');
    // Computed from the masked column: masked whole (NULL where the type cannot hold the style's token).
    expect(computed.rows).toEqual([[null, '****'], [null, '****']]);

    const filtered = await run('analysts', `select id from clinic.patients where contact = '${PATIENTS[0]!.email}'`);
    expect(filtered.error).toMatchObject({ code: '42501', detail: 'rule: builtin:inference' });
    expect(filtered.error!.message).toContain('clinic.patients.email');
    expect(events).toContain('masking.column_renamed');
    // The owner, for whom nothing is masked, reads the values.
    expect((await run('owners', 'select contact from clinic.patients order by id')).rows).toEqual(PATIENTS.map((p) => [p.email]));
  });

  it('stays masked after a rename made directly on the database while no gateway ran (remembered in the state store)', async () => {
    await gateway!.close();
    gateway = undefined;
    await admin.query('alter table clinic.patients rename column contact to reach');
    await restartGateway();
    const read = await run('analysts', 'select * from clinic.patients order by id');
    expect(read.rows).toEqual([[1, 'Ann Lee', 'a***@example.com'], [2, 'Bo Chan', 'b***@example.org']]);
    expectNoEmail(read);
  });

  it('refuses masked reads of the table when the column is nowhere to be found, and says what to do', async () => {
    await gateway!.close();
    gateway = undefined;
    // As if no gateway had ever seen the column: the rename cannot be followed.
    const state = await directClient('dbgate_state');
    await state.query('delete from dbgate_masked_column_locations where target = $1', [TARGET]);
    await state.end();
    await admin.query('alter table clinic.patients rename column reach to reached');
    await restartGateway();

    const refused = await run('analysts', 'select id, name from clinic.patients');
    expect(refused.error).toMatchObject({ code: '42501', detail: 'rule: builtin:masked-column-missing' });
    expect(refused.error!.message).toContain('clinic.patients.email');
    expectNoEmail(refused);
    expect(events).toContain('masking.column_missing');
    // Other statements still run; the owner still reads the table.
    expect((await run('analysts', 'select 1')).rows).toEqual([[1]]);
    expect((await run('owners', 'select count(*)::int from clinic.patients')).rows).toEqual([[2]]);
  });
});
