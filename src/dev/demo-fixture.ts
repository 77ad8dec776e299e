/**
 * Demo fixture shared by the dev stack, the quickstart and the tests.
 *
 * It describes a small "orders" database full of fake PII (names, emails,
 * phone numbers, SSNs, card numbers) so that masking, policies and auditing
 * have something realistic to act on. All data comes from a seeded PRNG:
 * the same seed always yields byte-identical rows, ids included.
 */
import type { ClientBase } from 'pg';

/** Names of the demo objects, so tests and docs don't repeat string literals. */
export const DEMO_TARGET_NAME = 'prod-orders';
export const DEMO_DATABASE = 'prod_orders';
export const DEMO_SCHEMA = 'public';
export const DEMO_TABLES = ['customers', 'orders', 'payments'] as const;
export type DemoTableName = (typeof DEMO_TABLES)[number];

export const DEMO_DEFAULT_CUSTOMERS = 1000;
export const DEMO_DEFAULT_SEED = 42;

export const DEMO_ORDER_STATUSES = ['pending', 'paid', 'shipped', 'cancelled', 'refunded'] as const;
export type DemoOrderStatus = (typeof DEMO_ORDER_STATUSES)[number];
export const DEMO_PAYMENT_STATUSES = ['authorized', 'captured', 'failed', 'refunded'] as const;
export type DemoPaymentStatus = (typeof DEMO_PAYMENT_STATUSES)[number];

export interface DemoSeedOptions {
  /** Number of customers to generate. Default 1000. */
  customers?: number;
  /** PRNG seed (treated as an unsigned 32-bit integer). Default 42. */
  seed?: number;
}

export interface DemoSeedSummary {
  customers: number;
  orders: number;
  payments: number;
}

export interface DemoCustomer {
  id: number;
  name: string;
  email: string;
  /** `+1-555-XXX-XXXX` */
  phone: string;
  /** `XXX-XX-XXXX`, area never 000, 666 or 9xx. */
  ssn: string;
  /** ISO-8601 UTC timestamp, e.g. `2024-03-05T12:34:56.000Z`. */
  createdAt: string;
}

export interface DemoOrder {
  id: number;
  customerId: number;
  status: DemoOrderStatus;
  totalCents: number;
  createdAt: string;
}

export interface DemoPayment {
  id: number;
  orderId: number;
  /** 16 plain digits, Luhn-valid; Visa (4…) or Mastercard (51–55…). */
  cardNumber: string;
  amountCents: number;
  status: DemoPaymentStatus;
  createdAt: string;
}

export interface DemoData {
  customers: DemoCustomer[];
  orders: DemoOrder[];
  payments: DemoPayment[];
}

/** Prefix of the comment placed on `public.customers` once seeding has committed. */
export const DEMO_FIXTURE_MARKER_PREFIX = 'dbgate-demo-fixture v1 ';

// ---------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------

/** mulberry32: tiny, fast, good enough for fake data. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Independent stream per generator, so changing one never shifts the others. */
function deriveSeed(seed: number, stream: number): number {
  let h = (seed >>> 0) ^ Math.imul(stream + 1, 0x9e3779b9);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const STREAM_CUSTOMERS = 1;
const STREAM_ORDERS = 2;
const STREAM_PAYMENTS = 3;

class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  float(): number {
    return this.next();
  }
  /** Integer in [min, max] inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error('pick from empty list');
    return item;
  }
  digits(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String(this.int(0, 9));
    return s;
  }
}

// ---------------------------------------------------------------------------
// Word lists and time base
// ---------------------------------------------------------------------------

const FIRST_NAMES = [
  'James', 'Mary', 'Robert', 'Patricia', 'John', 'Jennifer', 'Michael', 'Linda', 'David', 'Elizabeth',
  'William', 'Barbara', 'Richard', 'Susan', 'Joseph', 'Jessica', 'Thomas', 'Sarah', 'Christopher', 'Karen',
  'Charles', 'Lisa', 'Daniel', 'Nancy', 'Matthew', 'Betty', 'Anthony', 'Sandra', 'Mark', 'Margaret',
  'Donald', 'Ashley', 'Steven', 'Kimberly', 'Andrew', 'Emily', 'Paul', 'Donna', 'Joshua', 'Michelle',
  'Kenneth', 'Carol', 'Kevin', 'Amanda', 'Brian', 'Melissa', 'Timothy', 'Deborah', 'Ronald', 'Stephanie',
  'George', 'Rebecca', 'Jason', 'Sharon', 'Edward', 'Laura', 'Jeffrey', 'Cynthia', 'Ryan', 'Dorothy',
  'Jacob', 'Amy', 'Nicholas', 'Kathleen', 'Gary', 'Angela', 'Eric', 'Shirley', 'Jonathan', 'Emma',
  'Stephen', 'Brenda', 'Larry', 'Pamela', 'Justin', 'Nicole', 'Scott', 'Anna', 'Brandon', 'Samantha',
  'Priya', 'Wei', 'Sofia', 'Mateo', 'Aisha', 'Hiroshi', 'Olga', 'Diego', 'Fatima', 'Luca',
] as const;

const LAST_NAMES = [
  'Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis', 'Rodriguez', 'Martinez',
  'Hernandez', 'Lopez', 'Gonzalez', 'Wilson', 'Anderson', 'Thomas', 'Taylor', 'Moore', 'Jackson', 'Martin',
  'Lee', 'Perez', 'Thompson', 'White', 'Harris', 'Sanchez', 'Clark', 'Ramirez', 'Lewis', 'Robinson',
  'Walker', 'Young', 'Allen', 'King', 'Wright', 'Scott', 'Torres', 'Nguyen', 'Hill', 'Flores',
  'Green', 'Adams', 'Nelson', 'Baker', 'Hall', 'Rivera', 'Campbell', 'Mitchell', 'Carter', 'Roberts',
  'Gomez', 'Phillips', 'Evans', 'Turner', 'Diaz', 'Parker', 'Cruz', 'Edwards', 'Collins', 'Reyes',
  'Stewart', 'Morris', 'Morales', 'Murphy', 'Cook', 'Rogers', 'Gutierrez', 'Ortiz', 'Morgan', 'Cooper',
  "O'Brien", 'Kowalski', 'Patel', 'Kim', 'Chen', 'Schmidt', 'Novak', 'Rossi', 'Tanaka', 'Okafor',
] as const;

const EMAIL_DOMAINS = ['example.com', 'example.org', 'example.net'] as const;

const BASE_MS = Date.UTC(2024, 0, 1); // 2024-01-01T00:00:00Z
const YEAR_SECONDS = 366 * 24 * 3600; // 2024 is a leap year
const END_MS = BASE_MS + YEAR_SECONDS * 1000; // 2025-01-01T00:00:00Z

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function emailLocalPart(word: string): string {
  return word.toLowerCase().replace(/[^a-z]/g, '');
}

// ---------------------------------------------------------------------------
// Generators (pure)
// ---------------------------------------------------------------------------

function assertCount(count: number, what: string): void {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`${what} must be a non-negative integer, got ${count}`);
  }
}

/**
 * Customers with ids 1..count. Each customer only consumes the PRNG in order,
 * so `generateCustomers(n, s)` is a prefix of `generateCustomers(m, s)` for n <= m.
 */
export function generateCustomers(count: number, seed: number): DemoCustomer[] {
  assertCount(count, 'count');
  const rng = new Rng(deriveSeed(seed, STREAM_CUSTOMERS));
  const out: DemoCustomer[] = [];
  for (let id = 1; id <= count; id++) {
    const first = rng.pick(FIRST_NAMES);
    const last = rng.pick(LAST_NAMES);
    const domain = rng.pick(EMAIL_DOMAINS);
    const phone = `+1-555-${rng.digits(3)}-${rng.digits(4)}`;
    // SSA rules: area 001-899 except 666; group 01-99; serial 0001-9999.
    let area = rng.int(1, 898);
    if (area >= 666) area += 1; // skip 666, tops out at 899
    const group = rng.int(1, 99);
    const serial = rng.int(1, 9999);
    const ssn = `${pad(area, 3)}-${pad(group, 2)}-${pad(serial, 4)}`;
    // Leave the last ~2 weeks of the year free so every customer can order in 2024.
    const createdAt = iso(BASE_MS + rng.int(0, YEAR_SECONDS - 14 * 24 * 3600) * 1000);
    out.push({
      id,
      name: `${first} ${last}`,
      email: `${emailLocalPart(first)}.${emailLocalPart(last)}${id}@${domain}`,
      phone,
      ssn,
      createdAt,
    });
  }
  return out;
}

const ORDER_STATUS_WEIGHTS: ReadonlyArray<readonly [DemoOrderStatus, number]> = [
  ['pending', 10],
  ['paid', 30],
  ['shipped', 45],
  ['cancelled', 8],
  ['refunded', 7],
];

function weighted<T>(rng: Rng, table: ReadonlyArray<readonly [T, number]>): T {
  let total = 0;
  for (const [, w] of table) total += w;
  let r = rng.float() * total;
  for (const [value, w] of table) {
    if (r < w) return value;
    r -= w;
  }
  const last = table[table.length - 1];
  if (last === undefined) throw new Error('empty weight table');
  return last[0];
}

/** 1–4 orders per customer, ids 1..n in customer order, each after its customer's created_at. */
export function generateOrders(customers: readonly DemoCustomer[], seed: number): DemoOrder[] {
  const rng = new Rng(deriveSeed(seed, STREAM_ORDERS));
  const out: DemoOrder[] = [];
  let id = 0;
  for (const customer of customers) {
    const n = rng.int(1, 4);
    const startMs = Date.parse(customer.createdAt) + 60_000;
    const spanSeconds = Math.max(1, Math.floor((END_MS - 1000 - startMs) / 1000));
    const times: number[] = [];
    for (let i = 0; i < n; i++) times.push(startMs + rng.int(0, spanSeconds) * 1000);
    times.sort((a, b) => a - b);
    for (const t of times) {
      id += 1;
      out.push({
        id,
        customerId: customer.id,
        status: weighted(rng, ORDER_STATUS_WEIGHTS),
        totalCents: rng.int(499, 49_999),
        createdAt: iso(t),
      });
    }
  }
  return out;
}

/**
 * Payments for paid/shipped/refunded orders. Each such order gets exactly one
 * successful payment (captured, authorized for ~15% of `paid`, refunded for
 * `refunded`), sometimes preceded by a failed attempt with another card.
 */
export function generatePayments(orders: readonly DemoOrder[], seed: number): DemoPayment[] {
  const rng = new Rng(deriveSeed(seed, STREAM_PAYMENTS));
  const out: DemoPayment[] = [];
  let id = 0;
  for (const order of orders) {
    if (order.status !== 'paid' && order.status !== 'shipped' && order.status !== 'refunded') continue;
    let t = Date.parse(order.createdAt) + rng.int(5, 300) * 1000;
    if (rng.float() < 0.08) {
      id += 1;
      out.push({
        id,
        orderId: order.id,
        cardNumber: generateCardNumber(rng),
        amountCents: order.totalCents,
        status: 'failed',
        createdAt: iso(t),
      });
      t += rng.int(30, 900) * 1000;
    }
    let status: DemoPaymentStatus;
    if (order.status === 'refunded') status = 'refunded';
    else if (order.status === 'paid' && rng.float() < 0.15) status = 'authorized';
    else status = 'captured';
    id += 1;
    out.push({
      id,
      orderId: order.id,
      cardNumber: generateCardNumber(rng),
      amountCents: order.totalCents,
      status,
      createdAt: iso(t),
    });
  }
  return out;
}

/** Everything at once, with defaults applied. */
export function generateDemoData(options: DemoSeedOptions = {}): DemoData {
  const { customers: count, seed } = resolveOptions(options);
  const customers = generateCustomers(count, seed);
  const orders = generateOrders(customers, seed);
  const payments = generatePayments(orders, seed);
  return { customers, orders, payments };
}

function generateCardNumber(rng: Rng): string {
  const prefix = rng.float() < 0.6 ? '4' : `5${rng.int(1, 5)}`;
  const body = prefix + rng.digits(15 - prefix.length);
  return body + luhnCheckDigit(body);
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

// ---------------------------------------------------------------------------
// Luhn
// ---------------------------------------------------------------------------

/** Check digit that makes `payload + digit` Luhn-valid. `payload` must be digits only. */
export function luhnCheckDigit(payload: string): string {
  let sum = 0;
  // The check digit will sit at the right, so the rightmost payload digit is doubled.
  for (let i = payload.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = payload.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
}

/** True iff `digits` is a non-empty string of ASCII digits (at least 2) passing the Luhn check. */
export function isLuhnValid(digits: string): boolean {
  if (!/^[0-9]{2,}$/.test(digits)) return false;
  let sum = 0;
  for (let i = digits.length - 1, double = false; i >= 0; i--, double = !double) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

// ---------------------------------------------------------------------------
// Database seeding
// ---------------------------------------------------------------------------

function resolveOptions(options: DemoSeedOptions): { customers: number; seed: number } {
  const customers = options.customers ?? DEMO_DEFAULT_CUSTOMERS;
  const seed = options.seed ?? DEMO_DEFAULT_SEED;
  if (!Number.isSafeInteger(customers) || customers < 1) {
    throw new RangeError(`customers must be a positive integer, got ${customers}`);
  }
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  return { customers, seed: seed >>> 0 };
}

/** DDL for the demo schema; safe to run repeatedly. */
export const DEMO_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS public.customers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL UNIQUE,
  phone text NOT NULL,
  ssn text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS public.orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES public.customers(id),
  status text NOT NULL CHECK (status IN ('pending','paid','shipped','cancelled','refunded')),
  total_cents integer NOT NULL CHECK (total_cents >= 0),
  created_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON public.orders (customer_id);
CREATE TABLE IF NOT EXISTS public.payments (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_id bigint NOT NULL REFERENCES public.orders(id),
  card_number text NOT NULL,
  amount_cents integer NOT NULL,
  status text NOT NULL CHECK (status IN ('authorized','captured','failed','refunded')),
  created_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_order_id_idx ON public.payments (order_id);
`;

/** Rows per INSERT ... SELECT FROM unnest(...) statement. */
const BATCH_ROWS = 5000;

interface MarkerPayload {
  seed: number;
  customers: number;
  orders: number;
  payments: number;
}

function parseMarker(comment: string | null): MarkerPayload | undefined {
  if (comment === null || !comment.startsWith(DEMO_FIXTURE_MARKER_PREFIX)) return undefined;
  try {
    const parsed: unknown = JSON.parse(comment.slice(DEMO_FIXTURE_MARKER_PREFIX.length));
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const p = parsed as Record<string, unknown>;
    if (
      typeof p['seed'] === 'number' &&
      typeof p['customers'] === 'number' &&
      typeof p['orders'] === 'number' &&
      typeof p['payments'] === 'number'
    ) {
      return { seed: p['seed'], customers: p['customers'], orders: p['orders'], payments: p['payments'] };
    }
  } catch {
    // not ours
  }
  return undefined;
}

async function countRows(client: ClientBase): Promise<DemoSeedSummary> {
  const res = await client.query<{ customers: number; orders: number; payments: number }>(
    `SELECT (SELECT count(*) FROM public.customers)::int AS customers,
            (SELECT count(*) FROM public.orders)::int AS orders,
            (SELECT count(*) FROM public.payments)::int AS payments`,
  );
  const row = res.rows[0];
  if (row === undefined) throw new Error('count query returned no rows');
  return { customers: row.customers, orders: row.orders, payments: row.payments };
}

async function insertBatched<T>(
  client: ClientBase,
  sql: string,
  rows: readonly T[],
  columns: ReadonlyArray<(row: T) => unknown>,
): Promise<void> {
  for (let start = 0; start < rows.length; start += BATCH_ROWS) {
    const chunk = rows.slice(start, start + BATCH_ROWS);
    const params = columns.map((col) => chunk.map(col));
    await client.query(sql, params);
  }
}

/**
 * Creates the demo schema (if missing) and fills it deterministically.
 *
 * Idempotent: once seeding has committed, `public.customers` carries a comment
 * marker recording the seed and row counts; later calls with the same options
 * only return the current row counts. Throws if the tables hold other data
 * (no marker, or a marker for different options) rather than mixing datasets.
 *
 * Runs in its own transaction (BEGIN/COMMIT) — do not call it inside an open
 * transaction. Concurrent callers are serialised with a transaction-scoped
 * advisory lock. Ids are written explicitly (OVERRIDING SYSTEM VALUE) and the
 * identity sequences are advanced past them, so ids do not depend on sequence
 * state left behind by earlier, rolled-back attempts.
 */
export async function seedDemoDatabase(
  client: ClientBase,
  options: DemoSeedOptions = {},
): Promise<DemoSeedSummary> {
  const resolved = resolveOptions(options);
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('dbgate-demo-fixture'))`);
    // Look for the marker before any DDL, so a re-check needs no CREATE privilege
    // (e.g. a read-mostly role calling this against an already seeded database).
    const markerRes = await client.query<{ comment: string | null }>(
      `SELECT obj_description(to_regclass('public.customers'), 'pg_class') AS comment`,
    );
    const marker = parseMarker(markerRes.rows[0]?.comment ?? null);
    if (marker !== undefined) {
      if (marker.seed !== resolved.seed || marker.customers !== resolved.customers) {
        throw new Error(
          `demo database already seeded with seed=${marker.seed} customers=${marker.customers}; ` +
            `refusing to reseed with seed=${resolved.seed} customers=${resolved.customers}`,
        );
      }
      const counts = await countRows(client);
      await client.query('COMMIT');
      return counts;
    }

    await client.query(DEMO_SCHEMA_SQL);
    const existing = await countRows(client);
    if (existing.customers + existing.orders + existing.payments > 0) {
      throw new Error(
        'demo tables already contain rows that were not written by seedDemoDatabase; refusing to mix datasets',
      );
    }

    const data = generateDemoData(resolved);

    await insertBatched(
      client,
      `INSERT INTO public.customers (id, name, email, phone, ssn, created_at) OVERRIDING SYSTEM VALUE
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])`,
      data.customers,
      [(c) => c.id, (c) => c.name, (c) => c.email, (c) => c.phone, (c) => c.ssn, (c) => c.createdAt],
    );
    await insertBatched(
      client,
      `INSERT INTO public.orders (id, customer_id, status, total_cents, created_at) OVERRIDING SYSTEM VALUE
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::timestamptz[])`,
      data.orders,
      [(o) => o.id, (o) => o.customerId, (o) => o.status, (o) => o.totalCents, (o) => o.createdAt],
    );
    await insertBatched(
      client,
      `INSERT INTO public.payments (id, order_id, card_number, amount_cents, status, created_at) OVERRIDING SYSTEM VALUE
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])`,
      data.payments,
      [(p) => p.id, (p) => p.orderId, (p) => p.cardNumber, (p) => p.amountCents, (p) => p.status, (p) => p.createdAt],
    );

    // Keep identity sequences ahead of the explicit ids so later INSERTs work.
    for (const table of DEMO_TABLES) {
      await client.query(
        `SELECT setval(pg_get_serial_sequence('public.${table}', 'id'),
                       coalesce((SELECT max(id) FROM public.${table}), 0) + 1, false)`,
      );
    }

    const summary: DemoSeedSummary = {
      customers: data.customers.length,
      orders: data.orders.length,
      payments: data.payments.length,
    };
    const payload: MarkerPayload = { seed: resolved.seed, ...summary };
    const comment = DEMO_FIXTURE_MARKER_PREFIX + JSON.stringify(payload);
    // COMMENT does not take bind parameters; the payload is our own JSON (digits and ASCII keys).
    await client.query(`COMMENT ON TABLE public.customers IS '${comment.replace(/'/g, "''")}'`);
    await client.query('ANALYZE public.customers, public.orders, public.payments');
    await client.query('COMMIT');
    return summary;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch {
      // connection may be broken; surface the original error
    }
    throw err;
  }
}
