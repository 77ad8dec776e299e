/**
 * `dbgate targets` and `dbgate query` against the shared dev gateway and its demo policy, run in-process with
 * `main(argv, context)` as alice (engineering: reads prod-orders, PII masked) and bob (dba: writes prod-orders, admin
 * on scratch), with DBGATE_GATEWAY and DBGATE_CREDENTIAL as a script would set them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import type { TargetSummary } from '../../src/shared/api.js';
import { captureContext, directClient, mintCredential, sharedStack } from '../support/stack.js';

const PROD_ORDERS_DESCRIPTION = 'demo orders database (customers, orders, payments)';
const ANSI_ESCAPE = '\u001b[';

let configDir: string;
let alice: string;
let bob: string;

beforeAll(async () => {
  configDir = await mkdtemp(join(tmpdir(), 'dbgate-cli-config-'));
  [alice, bob] = await Promise.all([
    mintCredential('alice', { groups: ['engineering'] }),
    mintCredential('bob', { groups: ['dba'] }),
  ]);
});

afterAll(async () => {
  await rm(configDir, { recursive: true, force: true });
});

/** Runs `dbgate <argv>` in-process as the credential's owner. */
async function dbgate(credential: string, argv: string[], extra: { tty?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  const context = captureContext({
    DBGATE_GATEWAY: sharedStack().gateway.apiUrl,
    DBGATE_CREDENTIAL: credential,
    DBGATE_CONFIG_DIR: configDir,
    ...extra.env,
  });
  context.stdoutIsTTY = extra.tty ?? false;
  const code = await main(argv, context);
  return { code, stdout: context.out(), stderr: context.err() };
}

describe('GET /v1/targets', () => {
  it('needs a dbgate credential (401 without one)', async () => {
    const response = await fetch(new URL('/v1/targets', sharedStack().gateway.apiUrl));
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: 'invalid_token' });
  });
});

describe('dbgate targets', () => {
  it('--json: alice (engineering) reads prod-orders and reaches nothing else', async () => {
    const { code, stdout, stderr } = await dbgate(alice, ['targets', '--json']);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(stdout)).toEqual([{ name: 'prod-orders', access: 'read', description: PROD_ORDERS_DESCRIPTION }] satisfies TargetSummary[]);
  });

  it('--json: bob (dba) writes prod-orders and administers scratch', async () => {
    const { code, stdout } = await dbgate(bob, ['targets', '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual([
      { name: 'prod-orders', access: 'write', description: PROD_ORDERS_DESCRIPTION },
      { name: 'scratch', access: 'admin', description: expect.stringContaining('playground') },
    ]);
  });

  it('prints one tab-separated line per target in a pipe', async () => {
    const { code, stdout } = await dbgate(bob, ['targets']);
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\n').map((line) => line.split('\t'));
    expect(lines.map(([name, access]) => [name, access])).toEqual([['prod-orders', 'write'], ['scratch', 'admin']]);
    expect(lines[0]![2]).toBe(PROD_ORDERS_DESCRIPTION);
  });

  it('draws a table in a terminal, coloured unless NO_COLOR', async () => {
    const plain = await dbgate(alice, ['targets'], { tty: true, env: { NO_COLOR: '1' } });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/│ prod-orders +│ read +│ demo orders database/);
    expect(plain.stdout).not.toContain(ANSI_ESCAPE);
    const coloured = await dbgate(alice, ['targets'], { tty: true });
    expect(coloured.stdout).toContain(ANSI_ESCAPE);
    const forced = await dbgate(alice, ['targets'], { tty: true, env: { NO_COLOR: '1', FORCE_COLOR: '1' } });
    expect(forced.stdout).toContain(ANSI_ESCAPE);
  });

  it('exits 4 with nothing on stdout when not logged in', async () => {
    const context = captureContext({ DBGATE_CONFIG_DIR: configDir, DBGATE_GATEWAY: sharedStack().gateway.apiUrl });
    expect(await main(['targets', '--json'], context)).toBe(4);
    expect(context.out()).toBe('');
    expect(context.err()).toContain('dbgate: you are not logged in');
  });

  it('__complete targets lists the names for the shell completions', async () => {
    const { code, stdout, stderr } = await dbgate(bob, ['__complete', 'targets']);
    expect({ code, stdout, stderr }).toEqual({ code: 0, stdout: 'prod-orders\nscratch\n', stderr: '' });
  });
});

describe('dbgate query', () => {
  const sql = 'select name, email from customers order by id limit 3';
  let customers: Array<{ name: string; email: string }>;

  beforeAll(async () => {
    const admin = await directClient();
    try {
      customers = (await admin.query<{ name: string; email: string }>(sql)).rows;
    } finally {
      await admin.end();
    }
    expect(customers).toHaveLength(3);
  });

  /** The gateway's partial email mask: first letter, ***, the domain (k***@example.com). */
  const masked = (email: string): string => `${email[0]}***${email.slice(email.lastIndexOf('@'))}`;

  it('prints a table with the emails masked for alice, then the row count and time', async () => {
    const { code, stdout, stderr } = await dbgate(alice, ['query', 'prod-orders', sql]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    for (const customer of customers) {
      expect(stdout).toContain(customer.name);
      expect(stdout).toContain(masked(customer.email));
      expect(stdout).not.toContain(customer.email);
    }
    expect(stdout).toMatch(/│ name +│ email +│/);
    expect(stdout).toMatch(/\n3 rows \(\d+ ms\)\n$/);
    expect(stdout).not.toContain(ANSI_ESCAPE);
  });

  it('shows bob the emails unmasked', async () => {
    const { code, stdout } = await dbgate(bob, ['query', 'prod-orders', sql]);
    expect(code).toBe(0);
    for (const customer of customers) expect(stdout).toContain(customer.email);
  });

  it('--json prints {columns, rows, row_count, duration_ms} and nothing else', async () => {
    const { code, stdout, stderr } = await dbgate(alice, ['query', 'prod-orders', sql, '--json']);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout.endsWith('\n')).toBe(true);
    const output = JSON.parse(stdout) as Record<string, unknown>;
    expect(Object.keys(output)).toEqual(['columns', 'rows', 'row_count', 'duration_ms']);
    expect(output).toEqual({
      columns: ['name', 'email'],
      rows: customers.map((customer) => [customer.name, masked(customer.email)]),
      row_count: 3,
      duration_ms: expect.any(Number),
    });
  });

  it('--json writes numbers and booleans as JSON, int8 and numeric as exact strings, NULL as null', async () => {
    const { code, stdout } = await dbgate(alice, ['query', 'prod-orders',
      "select 42::int4 as i, 1.5::float8 as f, true as b, 9007199254740993::int8 as big, 0.1::numeric as n, null::text as z, 'x'::text as t", '--json']);
    expect(code).toBe(0);
    expect((JSON.parse(stdout) as { rows: unknown[][] }).rows).toEqual([[42, 1.5, true, '9007199254740993', '0.1', null, 'x']]);
  });

  it('--csv prints RFC 4180 CSV with a header line', async () => {
    const { code, stdout, stderr } = await dbgate(alice, ['query', 'prod-orders', sql, '--csv']);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const quote = (value: string): string => (/[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);
    expect(stdout).toBe(['name,email', ...customers.map((c) => `${quote(c.name)},${masked(c.email)}`)].map((line) => `${line}\r\n`).join(''));
  });

  it('--csv quotes what needs quoting and tells NULL from the empty string', async () => {
    const { stdout } = await dbgate(alice, ['query', 'prod-orders', `select 'a,b' as x, 'say "hi"' as y, '' as e, null::text as n`, '--csv']);
    expect(stdout).toBe('x,y,e,n\r\n"a,b","say ""hi""","",\r\n');
  });

  it('--json and --csv exclude each other (usage, exit 2)', async () => {
    const { code, stderr } = await dbgate(alice, ['query', 'prod-orders', sql, '--json', '--csv']);
    expect(code).toBe(2);
    expect(stderr).toContain('cannot be used with');
  });

  it('a policy denial exits 5 with the gateway message and its hint', async () => {
    const { code, stdout, stderr } = await dbgate(alice, ['query', 'prod-orders', 'delete from orders']);
    expect(code).toBe(5);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^dbgate: (?!dbgate:).*DELETE.*\nhint: .+\n$/);
  });

  it('a statement held for approval exits 6', async () => {
    const { code, stderr } = await dbgate(alice, ['query', 'prod-orders', 'drop table customers']);
    expect(code).toBe(6);
    expect(stderr).toMatch(/^dbgate: .*held for approval/);
    // Held, not run.
    const admin = await directClient();
    try {
      expect((await admin.query(`select to_regclass('public.customers') is not null as present`)).rows[0]).toEqual({ present: true });
    } finally {
      await admin.end();
    }
  });

  it("any other SQL error exits 1 with the server's message", async () => {
    const { code, stdout, stderr } = await dbgate(alice, ['query', 'prod-orders', 'select * from no_such_table']);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toContain('dbgate: relation "no_such_table" does not exist');
  });

  it('a statement without a result set prints its command tag', async () => {
    const { code, stdout } = await dbgate(bob, ['query', 'scratch', 'set statement_timeout = 5000']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^SET \(\d+ ms\)\n$/);
  });

  it('Ctrl-C ends a running query at once (exit 130)', async () => {
    const controller = new AbortController();
    const context = captureContext({
      DBGATE_GATEWAY: sharedStack().gateway.apiUrl,
      DBGATE_CREDENTIAL: bob,
      DBGATE_CONFIG_DIR: configDir,
    }, controller.signal);
    const running = main(['query', 'scratch', 'select pg_sleep(30)'], context);
    setTimeout(() => controller.abort('SIGINT'), 1_000);
    expect(await running).toBe(130);
    expect(context.out()).toBe('');
  });

  it('a target that does not exist says so and points at dbgate targets', async () => {
    const { code, stderr } = await dbgate(alice, ['query', 'no-such-target', 'select 1']);
    expect(code).toBe(1);
    expect(stderr).toContain('no-such-target');
    expect(stderr).toContain('hint: run: dbgate targets');
  });
});
