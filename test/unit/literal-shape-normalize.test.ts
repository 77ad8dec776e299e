/**
 * Property, against the real libpg_query normalize: once normalize has verified a literal shape (turned one text of
 * it into the shape with `$1` … `$n` for its literals), it turns every other text of that shape into the very same
 * normalised text — which is what lets the decision cache skip normalize for them.
 *
 * Each template below is filled many times with random literals: numbers of every kind (small integers, integers
 * around the int32 limit, larger ones, decimals) and strings (with spaces, punctuation, `$`, comment markers, quotes,
 * backslashes and non-ASCII letters). Variants of one template land in the same shape when their literals have the
 * same kinds; the scanner gives up on the others.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadStatementParser, normalizeStatementText } from '../../src/gateway/policy/classify.js';
import { isNormalizationOf, literalShape } from '../../src/gateway/policy/literal-shape.js';

beforeAll(async () => {
  await loadStatementParser();
});

/** `{n}`: a numeric literal; `{s}`: a quoted string literal. */
const TEMPLATES = [
  'SELECT abalance FROM pgbench_accounts WHERE aid = {n};',
  'UPDATE pgbench_accounts SET abalance = abalance + {n} WHERE aid = {n};',
  'UPDATE pgbench_tellers SET tbalance = tbalance + {n} WHERE tid = {n};',
  'UPDATE pgbench_branches SET bbalance = bbalance + {n} WHERE bid = {n};',
  'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({n}, {n}, {n}, {n}, CURRENT_TIMESTAMP);',
  'SELECT id, name, email FROM customers WHERE id IN ({n}, {n}, {n})',
  'SELECT * FROM orders WHERE status = {s} AND total > {n} ORDER BY created_at DESC LIMIT {n}',
  'SELECT * FROM orders ORDER BY id LIMIT {n} OFFSET {n}',
  'SELECT id, email FROM customers ORDER BY {n}',
  'SELECT status, count(*) FROM orders GROUP BY {n}',
  'SELECT x + {n} FROM t GROUP BY x + {n}',
  'SET statement_timeout = {n}',
  'SET application_name = {s}',
  'SET search_path TO {s}, public',
  'FETCH {n} FROM c',
  'SELECT name::varchar({n}) FROM customers WHERE id = {n}',
  'SELECT x::float({n}) FROM t',
  'SELECT now() - interval {s}',
  'SELECT interval {s} second({n})',
  'SELECT {s}\n{s}',
  'SELECT {s} {s}',
  'SELECT * FROM orders WHERE created_at >= date {s}',
  'SELECT * FROM accounts WHERE balance = -{n} OR balance =-{n}',
  'SELECT {s}::int + {n}, x::int FROM t',
  'SELECT ARRAY[{n},{n},{n}]',
  'SELECT {n} * {n}, {n} / 2 - {n}',
  'INSERT INTO customers (name, email) VALUES ({s}, {s}) RETURNING id',
  'UPDATE customers SET name = {s}, email = {s} WHERE id = {n}',
  'DELETE FROM orders WHERE id = {n} AND status <> {s}',
  'SELECT * FROM customers WHERE name LIKE {s} ESCAPE {s}',
  'SELECT coalesce(total, {n}) FROM orders WHERE id BETWEEN {n} AND {n}',
  'SELECT a FROM t FETCH FIRST {n} ROWS ONLY',
  'SELECT substring({s} from {n} for {n})',
  'SELECT * FROM t WHERE a = {n} AND b = true AND c IS NOT NULL',
  'SELECT CASE WHEN total > {n} THEN {s} ELSE {s} END FROM orders',
  'SELECT set_config({s}, {s}, false)',
  'EXPLAIN SELECT * FROM orders WHERE id = {n}',
  'SELECT * FROM t WHERE (a, b) IN (({n}, {s}), ({n}, {s}))',
  'SELECT {n}::numeric(10, 2), numeric(10, 2) {s}',
  'VALUES ({n}, {s}), ({n}, {s})',
  'SELECT * FROM t WHERE a={n}AND b={s}',
  'SELECT * FROM t WHERE tags && ARRAY[{s}, {s}]',
  'CREATE ROLE r PASSWORD {s}',
  'NOTIFY chan, {s}',
  'SELECT * FROM t TABLESAMPLE SYSTEM ({n}) REPEATABLE ({n})',
  'BEGIN; SELECT {n}; COMMIT',
  'SELECT x FROM t WHERE y = {s}||{s}',
  'SELECT {n}.{n}',
  'SELECT * FROM t WHERE id = {n}\r\n',
];

const numbers = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 2_147_483_647 }).map(String) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 99 }).map(String) },
  { weight: 2, arbitrary: fc.constantFrom('2147483647', '2147483648', '02147483647', '0002147483648', '9999999999', '4294967296', '0', '00') },
  { weight: 1, arbitrary: fc.bigInt({ min: 2_147_483_648n, max: 10n ** 30n }).map(String) },
  { weight: 2, arbitrary: fc.tuple(fc.nat(), fc.nat({ max: 999_999 })).map(([whole, fraction]) => `${whole}.${fraction}`) },
);

const STRING_CHARACTERS = [
  ...'abcXYZ019 ,;:()[]=<>|!?*+-/%$"_.@#&\t', '--', '/*', '\n', "'", '\\', 'é', 'ß', 'Ж', '日',
];
const strings = fc
  .array(fc.constantFrom(...STRING_CHARACTERS), { maxLength: 10 })
  .map((parts) => `'${parts.join('').replaceAll("'", "''")}'`);

function fill(template: string, values: { n: string[]; s: string[] }): string {
  let nextNumber = 0;
  let nextString = 0;
  return template.replace(/\{([ns])\}/g, (_, kind: string) =>
    kind === 'n' ? values.n[nextNumber++]! : values.s[nextString++]!);
}

function normalizeOrError(sql: string): string | Error {
  try {
    return normalizeStatementText(sql);
  } catch (error) {
    return error as Error;
  }
}

describe('literal shapes against libpg_query normalize', () => {
  it('normalizes every text of a verified shape to the verified normalisation', () => {
    const verifiedTemplates = new Set<string>();
    let comparisons = 0;
    for (const template of TEMPLATES) {
      const holes = { n: template.split('{n}').length - 1, s: template.split('{s}').length - 1 };
      const literals = fc.record({
        n: fc.array(numbers, { minLength: holes.n, maxLength: holes.n }),
        s: fc.array(strings, { minLength: holes.s, maxLength: holes.s }),
      });
      const variants = fc.array(literals, { minLength: 2, maxLength: 12 });
      fc.assert(
        fc.property(variants, (valueSets) => {
          /** Per shape key: the first variant normalize verified, and its normalised text. */
          const verified = new Map<string, { sql: string; normalized: string }>();
          const texts = valueSets.map((values) => fill(template, values));
          for (const sql of texts) {
            const shape = literalShape(sql);
            if (shape === undefined || verified.has(shape.key)) continue;
            const normalized = normalizeOrError(sql);
            if (typeof normalized === 'string' && isNormalizationOf(normalized, shape)) verified.set(shape.key, { sql, normalized });
          }
          for (const sql of texts) {
            const shape = literalShape(sql);
            const reference = shape === undefined ? undefined : verified.get(shape.key);
            if (reference === undefined || reference.sql === sql) continue;
            expect(normalizeOrError(sql), `${JSON.stringify(sql)} has the shape of ${JSON.stringify(reference.sql)}`)
              .toBe(reference.normalized);
            comparisons += 1;
            verifiedTemplates.add(template);
          }
        }),
        { numRuns: 200 },
      );
    }
    // The property must not hold vacuously: most templates verify, the pgbench ones always do.
    expect(comparisons).toBeGreaterThan(10_000);
    expect(verifiedTemplates.size).toBeGreaterThan(25);
    for (const pgbench of TEMPLATES.slice(0, 5)) expect(verifiedTemplates).toContain(pgbench);
    // Numbered by normalize out of text order (`LIMIT $2 OFFSET $1`), verified all the same.
    expect(verifiedTemplates).toContain('SELECT * FROM orders ORDER BY id LIMIT {n} OFFSET {n}');
  });

  it('finds the shapes normalize cannot verify, which keep calling normalize', () => {
    const verifies = (sql: string): boolean => {
      const shape = literalShape(sql);
      const normalized = normalizeOrError(sql);
      return shape !== undefined && typeof normalized === 'string' && isNormalizationOf(normalized, shape);
    };
    expect(verifies('SELECT abalance FROM pgbench_accounts WHERE aid = 4711;')).toBe(true);
    expect(verifies("SELECT * FROM orders WHERE status = 'paid' AND total > 10.5")).toBe(true);
    expect(verifies('SELECT id FROM customers ORDER BY 2147483648')).toBe(true);
    // Normalize folds the sign into the constant: `-$1`.
    expect(verifies('SELECT * FROM accounts WHERE balance = -1')).toBe(false);
    // Positions, type modifiers and FETCH counts are not constants to normalize.
    expect(verifies('SELECT id FROM customers ORDER BY 2')).toBe(false);
    expect(verifies('SELECT name::varchar(10) FROM customers')).toBe(false);
    expect(verifies('FETCH 5 FROM c')).toBe(false);
    // Numbered in the order of the parse tree walk, not of the text: verified all the same.
    expect(normalizeStatementText('SELECT * FROM orders LIMIT 10 OFFSET 5')).toBe('SELECT * FROM orders LIMIT $2 OFFSET $1');
    expect(verifies('SELECT * FROM orders LIMIT 10 OFFSET 5')).toBe(true);
    // One parameter for two constants (GROUP BY matched to the select list by fingerprint): not verified.
    expect(normalizeStatementText('SELECT x + 1 FROM t GROUP BY x + 2')).toBe('SELECT x + $1 FROM t GROUP BY x + $1');
    expect(verifies('SELECT x + 1 FROM t GROUP BY x + 2')).toBe(false);
    // Booleans are constants the shape kept as keywords.
    expect(verifies('SELECT * FROM t WHERE a = 1 AND b = true')).toBe(false);
  });
});
