/**
 * psql, the reference client, through `dbgate connect`'s tunnel and the gateway to real PostgreSQL.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { activeServiceBackends, directClient, eventually, mintCredential, openTunnel, sharedStack, type OpenTunnel } from '../support/stack.js';

/** Runs psql to completion without blocking the event loop (the tunnel under test lives in this process). */
function psql(tunnel: OpenTunnel, args: string[], input = ''): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return run('psql', ['-X', '-v', 'ON_ERROR_STOP=0', ...args], tunnel.libpqEnv, input);
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv, input = ''): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(input);
  });
}

describe('psql through tunnel and gateway', () => {
  let tunnel: OpenTunnel;
  let admin: pg.Client;
  let workDir: string;
  let scratch: pg.Client;
  let scratchTunnel: OpenTunnel;

  beforeAll(async () => {
    // bob (dba) has write access on prod-orders: \copy into a table, INSERT in a transaction and NOTIFY are writes,
    // which the demo policy denies to read-only groups and holds for engineering.
    tunnel = await openTunnel('bob', { credential: await mintCredential('bob', { groups: ['dba'] }) });
    admin = await directClient();
    workDir = await mkdtemp(join(tmpdir(), 'dbgate-psql-'));
    await admin.query('create table if not exists psql_copy_test (id int primary key, note text)');
    await admin.query('grant all on psql_copy_test to dbgate_service');
    // The scratch target, where bob (dba) has admin access: DDL runs there without an approval.
    scratch = await directClient('dbgate_scratch');
    scratchTunnel = await openTunnel('bob', { credential: await mintCredential('bob', { groups: ['dba'] }), target: 'scratch' });
  });

  afterAll(async () => {
    await admin?.query('drop table if exists psql_copy_test');
    await admin?.end();
    await tunnel?.close();
    await scratch?.end();
    await scratchTunnel?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  it('reports the tunnel as the server in \\conninfo and runs selects against the target', async () => {
    const result = await psql(tunnel, ['-c', '\\conninfo', '-c', 'select count(*) as customers from customers']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain(`connected to database "prod-orders" as user "bob" on host "127.0.0.1" at port "${tunnel.port}"`);
    expect(result.stdout).toMatch(/customers\s*\n-+\n\s*1000\n/);
  });

  it('copies rows in with \\copy from a file and back out with \\copy to a file', async () => {
    const source = join(workDir, 'in.csv');
    const target = join(workDir, 'out.csv');
    const rows = Array.from({ length: 5000 }, (_, i) => `${i + 1},note ${i + 1}`).join('\n');
    await writeFile(source, `${rows}\n`);
    const copyIn = await psql(tunnel, ['-c', `\\copy psql_copy_test from '${source}' with (format csv)`]);
    expect(copyIn.stderr).toBe('');
    expect(copyIn.stdout.trim()).toBe('COPY 5000');
    const { rows: counted } = await admin.query('select count(*)::int as n, max(id) as max from psql_copy_test');
    expect(counted[0]).toEqual({ n: 5000, max: 5000 });

    const copyOut = await psql(tunnel, ['-c', `\\copy (select * from psql_copy_test order by id) to '${target}' with (format csv)`]);
    expect(copyOut.stderr).toBe('');
    expect(copyOut.stdout.trim()).toBe('COPY 5000');
    expect(await readFile(target, 'utf8')).toBe(`${rows}\n`);
  });

  it('keeps transaction semantics: an error aborts the block and rollback discards its writes', async () => {
    const script = [
      'begin;',
      "insert into psql_copy_test values (900001, 'in transaction');",
      'select 1/0;',
      "insert into psql_copy_test values (900002, 'after error');",
      'rollback;',
      'select count(*) as kept from psql_copy_test where id > 900000;',
    ].join('\n');
    const result = await psql(tunnel, ['-f', '-'], script);
    expect(result.stderr).toContain('ERROR:  division by zero');
    expect(result.stderr).toContain('current transaction is aborted, commands ignored until end of transaction block');
    expect(result.stdout).toContain('ROLLBACK');
    expect(result.stdout).toMatch(/kept\s*\n-+\n\s*0\n/);
    const { rows } = await admin.query('select count(*)::int as n from psql_copy_test where id > 900000');
    expect(rows[0].n).toBe(0);
  });

  it('delivers NOTIFY from one tunnelled connection to a LISTENing one', async () => {
    const listener = spawn('psql', ['-X', '-q'], { env: tunnel.libpqEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    listener.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    listener.stdin.write('listen dbgate_channel;\nselect 1 as listening;\n');
    expect(await eventually(async () => output.includes('listening'), 10_000)).toBe(true);

    const notifier = await psql(tunnel, ['-c', "notify dbgate_channel, 'hello through the gateway'"]);
    expect(notifier.stderr).toBe('');
    // psql prints notifications it has received when it next talks to the server.
    listener.stdin.write('select 2 as poll;\n');
    expect(await eventually(async () => output.includes('hello through the gateway'), 10_000)).toBe(true);
    expect(output).toMatch(/Asynchronous notification "dbgate_channel" with payload "hello through the gateway" received from server process with PID \d+/);
    listener.stdin.end('\\q\n');
    await new Promise((resolve) => listener.once('exit', resolve));
  });

  it('restores a plain pg_dump script (it starts with set_config(\'search_path\', \'\', false)) with psql -f', async () => {
    // Dumped straight from the server by the real pg_dump, then restored through the gateway into the scratch target.
    const scratchUrl = new URL(sharedStack().cluster.adminUrl);
    scratchUrl.pathname = '/dbgate_scratch';
    const script = join(workDir, 'restore.sql');
    try {
      await scratch.query('drop table if exists psql_restore_test');
      await scratch.query('create table psql_restore_test (id serial primary key, note text)');
      await scratch.query("insert into psql_restore_test (note) values ('plain'), (E'tab\\there'), (E'back\\\\slash\\nnewline')");
      const { rows: original } = await scratch.query('select id, note from psql_restore_test order by id');
      const dump = await run('pg_dump', ['--no-owner', '--no-privileges', '-t', 'public.psql_restore_test', '-f', script, scratchUrl.toString()], process.env);
      expect(dump.stderr).toBe('');
      expect(await readFile(script, 'utf8')).toContain("SELECT pg_catalog.set_config('search_path', '', false);");
      await scratch.query('drop table psql_restore_test');

      const restore = await psql(scratchTunnel, ['-v', 'ON_ERROR_STOP=1', '-q', '-f', script]);
      expect(restore.stderr).toBe('');
      expect(restore.status).toBe(0);
      expect((await scratch.query('select id, note from psql_restore_test order by id')).rows).toEqual(original);
      // The sequence was restored too (setval), so new rows continue after the dumped ones.
      expect((await scratch.query("insert into psql_restore_test (note) values ('next') returning id")).rows).toEqual([{ id: 4 }]);
    } finally {
      await scratch.query('drop table if exists psql_restore_test');
    }
  });

  it('copies in behind DDL and SET search_path sent in the same message (the gateway waits for them, not for the data)', async () => {
    try {
      const created = await psql(scratchTunnel, ['-v', 'ON_ERROR_STOP=1', '-c',
        'drop table if exists psql_copy_behind_ddl; create table psql_copy_behind_ddl (a int); copy psql_copy_behind_ddl from stdin'],
      '1\n2\n3\n\\.\n');
      expect(created.stderr.replace(/NOTICE: .*\n/, '')).toBe('');
      expect(created.stdout.trim().split('\n')).toEqual(['DROP TABLE', 'CREATE TABLE', 'COPY 3']);
      const pathed = await psql(scratchTunnel, ['-v', 'ON_ERROR_STOP=1', '-c', 'set search_path = public; copy psql_copy_behind_ddl from stdin'],
        '4\n\\.\n');
      expect(pathed.stdout.trim().split('\n')).toEqual(['SET', 'COPY 1']);
      expect((await scratch.query('select count(*)::int as n from psql_copy_behind_ddl')).rows).toEqual([{ n: 4 }]);
    } finally {
      await scratch.query('drop table if exists psql_copy_behind_ddl');
    }
  });

  it('cancels a running pg_sleep(10) when psql gets Ctrl-C (SIGINT)', async () => {
    const child = spawn('psql', ['-X', '-c', 'select pg_sleep(10)'], { env: tunnel.libpqEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // Wait until the statement is really running upstream, then press Ctrl-C.
    expect(await eventually(async () => (await activeServiceBackends(admin)).some((b) => b.query === 'select pg_sleep(10)' && b.state === 'active'), 10_000)).toBe(true);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(stderr).toContain('canceling statement due to user request');
    expect(code).toBe(1);
    expect(await eventually(async () => !(await activeServiceBackends(admin)).some((b) => b.query === 'select pg_sleep(10)' && b.state === 'active'))).toBe(true);
  });
});

