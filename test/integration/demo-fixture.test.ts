import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEMO_DATABASE,
  DEMO_FIXTURE_MARKER_PREFIX,
  generateDemoData,
  isLuhnValid,
  seedDemoDatabase,
  type DemoSeedSummary,
} from '../../src/dev/demo-fixture.js';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';

describe('seedDemoDatabase against a real PostgreSQL', () => {
  let server: PgCluster | undefined;
  const clients: pg.Client[] = [];
  let client: pg.Client;
  let summary: DemoSeedSummary;
  let seedMs = 0;

  async function connect(database: string, user?: string): Promise<pg.Client> {
    if (server === undefined) throw new Error('server not started');
    const c = new pg.Client({ host: server.socketDir, port: server.port, user: user ?? server.superuser, database });
    await c.connect();
    await c.query(`SET TimeZone = 'UTC'`);
    clients.push(c);
    return c;
  }

  async function createDatabase(name: string): Promise<void> {
    const admin = await connect('postgres');
    await admin.query(`CREATE DATABASE ${name}`);
  }

  beforeAll(async () => {
    server = await startPgCluster();
    await createDatabase(DEMO_DATABASE);
    client = await connect(DEMO_DATABASE);
    const started = performance.now();
    summary = await seedDemoDatabase(client);
    seedMs = performance.now() - started;
    console.log(`demo seed (1000 customers): ${seedMs.toFixed(0)} ms`, summary);
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => undefined);
    await server?.stop();
  }, 60_000);

  it('seeds at least 1000 customers and reports the counts it wrote', async () => {
    expect(summary.customers).toBeGreaterThanOrEqual(1000);
    expect(summary.orders).toBeGreaterThanOrEqual(summary.customers);
    expect(summary.payments).toBeGreaterThan(0);
    const { rows } = await client.query<DemoSeedSummary>(
      `SELECT (SELECT count(*) FROM customers)::int AS customers,
              (SELECT count(*) FROM orders)::int AS orders,
              (SELECT count(*) FROM payments)::int AS payments`,
    );
    expect(rows[0]).toEqual(summary);
    const expected = generateDemoData();
    expect(summary).toEqual({
      customers: expected.customers.length,
      orders: expected.orders.length,
      payments: expected.payments.length,
    });
  });

  it('stores exactly the rows the pure generators produce', async () => {
    const expected = generateDemoData();
    const { rows } = await client.query<{ id: string; name: string; email: string; phone: string; ssn: string; created_at: Date }>(
      'SELECT id, name, email, phone, ssn, created_at FROM customers ORDER BY id LIMIT 5',
    );
    expect(
      rows.map((r) => ({ id: Number(r.id), name: r.name, email: r.email, phone: r.phone, ssn: r.ssn, createdAt: r.created_at.toISOString() })),
    ).toEqual(expected.customers.slice(0, 5));
  });

  it('stores only Luhn-valid 16-digit card numbers', async () => {
    const { rows } = await client.query<{ card_number: string }>('SELECT card_number FROM payments');
    expect(rows.length).toBe(summary.payments);
    for (const { card_number } of rows) {
      expect(card_number).toMatch(/^\d{16}$/);
      expect(isLuhnValid(card_number), card_number).toBe(true);
    }
  });

  it('keeps customer emails unique', async () => {
    const { rows } = await client.query<{ total: number; distinct_emails: number }>(
      'SELECT count(*)::int AS total, count(DISTINCT email)::int AS distinct_emails FROM customers',
    );
    expect(rows[0]?.distinct_emails).toBe(rows[0]?.total);
  });

  it('creates the foreign-key indexes and marks the data as seeded', async () => {
    const { rows } = await client.query<{ indexname: string }>(
      `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname IN ('orders_customer_id_idx', 'payments_order_id_idx') ORDER BY 1`,
    );
    expect(rows.map((r) => r.indexname)).toEqual(['orders_customer_id_idx', 'payments_order_id_idx']);
    const { rows: marker } = await client.query<{ c: string | null }>(
      `SELECT obj_description('public.customers'::regclass, 'pg_class') AS c`,
    );
    expect(marker[0]?.c?.startsWith(DEMO_FIXTURE_MARKER_PREFIX)).toBe(true);
  });

  it('is idempotent: seeding again returns the same counts and inserts nothing', async () => {
    const again = await seedDemoDatabase(client);
    expect(again).toEqual(summary);
    const { rows } = await client.query<{ dupes: number }>(
      `SELECT (SELECT count(*) FROM (SELECT email FROM customers GROUP BY email HAVING count(*) > 1) d)::int AS dupes`,
    );
    expect(rows[0]?.dupes).toBe(0);
    const { rows: counts } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM customers');
    expect(counts[0]?.n).toBe(summary.customers);
  });

  it('leaves identity sequences usable for later inserts', async () => {
    await client.query('BEGIN');
    try {
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO customers (name, email, phone, ssn, created_at)
         VALUES ('Extra Person', 'extra@example.com', '+1-555-000-0000', '123-45-6789', '2024-06-01Z') RETURNING id`,
      );
      expect(Number(rows[0]?.id)).toBe(summary.customers + 1);
    } finally {
      await client.query('ROLLBACK');
    }
  });

  it('refuses to reseed with different options instead of mixing datasets', async () => {
    await expect(seedDemoDatabase(client, { seed: 7 })).rejects.toThrow(/already seeded/);
    const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM customers');
    expect(rows[0]?.n).toBe(summary.customers);
  });

  it('produces byte-identical data in two fresh databases', async () => {
    const digestSql = `
      SELECT
        (SELECT md5(string_agg(concat_ws('|', id, name, email, phone, ssn, created_at), E'\\n' ORDER BY id)) FROM customers) AS customers,
        (SELECT md5(string_agg(concat_ws('|', id, customer_id, status, total_cents, created_at), E'\\n' ORDER BY id)) FROM orders) AS orders,
        (SELECT md5(string_agg(concat_ws('|', id, order_id, card_number, amount_cents, status, created_at), E'\\n' ORDER BY id)) FROM payments) AS payments`;
    const digests: Array<Record<string, string>> = [];
    for (const name of ['demo_copy_a', 'demo_copy_b']) {
      await createDatabase(name);
      const c = await connect(name);
      const s = await seedDemoDatabase(c);
      expect(s).toEqual(summary);
      const { rows } = await c.query<Record<string, string>>(digestSql);
      expect(rows[0]).toBeDefined();
      digests.push(rows[0] ?? {});
    }
    const { rows: original } = await client.query<Record<string, string>>(digestSql);
    expect(digests[0]?.['customers']).toMatch(/^[0-9a-f]{32}$/);
    expect(digests[1]).toEqual(digests[0]);
    expect(original[0]).toEqual(digests[0]);
  }, 30_000);

  it('serialises concurrent seeds of the same fresh database', async () => {
    await createDatabase('demo_concurrent');
    const [a, b] = await Promise.all([connect('demo_concurrent'), connect('demo_concurrent')]);
    const results = await Promise.all([seedDemoDatabase(a), seedDemoDatabase(b)]);
    expect(results[0]).toEqual(summary);
    expect(results[1]).toEqual(summary);
  }, 30_000);

  it('creates tables owned by the current, non-superuser role and lets readers re-check', async () => {
    const admin = await connect('postgres');
    await admin.query('CREATE ROLE demo_owner LOGIN');
    await admin.query('CREATE DATABASE demo_owned OWNER demo_owner');
    const owner = await connect('demo_owned', 'demo_owner');
    // PostgreSQL 15 no longer grants CREATE on public to everyone; the database owner owns public.
    await expect(seedDemoDatabase(owner)).resolves.toEqual(summary);
    const { rows } = await owner.query<{ tablename: string; tableowner: string }>(
      `SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`,
    );
    expect(rows).toEqual([
      { tablename: 'customers', tableowner: 'demo_owner' },
      { tablename: 'orders', tableowner: 'demo_owner' },
      { tablename: 'payments', tableowner: 'demo_owner' },
    ]);
    // Re-checking an already seeded database needs no CREATE privilege, only SELECT.
    await admin.query('CREATE ROLE demo_reader LOGIN');
    await owner.query('GRANT SELECT ON customers, orders, payments TO demo_reader');
    const reader = await connect('demo_owned', 'demo_reader');
    await expect(seedDemoDatabase(reader)).resolves.toEqual(summary);
  }, 30_000);

  it('refuses to seed over tables that already hold foreign data', async () => {
    await createDatabase('demo_foreign');
    const c = await connect('demo_foreign');
    await c.query(`CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL,
      email text NOT NULL UNIQUE, phone text NOT NULL, ssn text NOT NULL, created_at timestamptz NOT NULL)`);
    await c.query(`INSERT INTO customers (name, email, phone, ssn, created_at) VALUES ('A B', 'a@b.c', 'x', 'y', now())`);
    await expect(seedDemoDatabase(c)).rejects.toThrow(/refusing to mix/);
    const { rows } = await c.query<{ n: number; orders: string | null }>(
      `SELECT (SELECT count(*) FROM customers)::int AS n, to_regclass('public.orders')::text AS orders`,
    );
    expect(rows[0]).toEqual({ n: 1, orders: null }); // rolled back, nothing half-created
  }, 30_000);
});
