/**
 * Which view columns carry masked values, from the views' definitions as pg_get_viewdef prints them (names relative
 * to the catalog connection's search_path), parsed with the real statement grammar.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { loadStatementParser } from '../../src/gateway/policy/classify.js';
import type { MaskStyle } from '../../src/gateway/masking/mask.js';
import { maskViewColumns, relationName, type ViewDefinition, type ViewLineageInput } from '../../src/gateway/masking/view-lineage.js';

const CUSTOMERS = 16_384;
const PAYMENTS = 16_390;
const OTHER_CUSTOMERS = 16_395;

/** customers(id, name, email, phone, ssn, notes): email partial, ssn redact, notes null. payments.card_number hash. */
const MASKED = new Map<number, Map<string, MaskStyle>>([
  [CUSTOMERS, new Map<string, MaskStyle>([['email', 'partial'], ['ssn', 'redact'], ['notes', 'null']])],
  [PAYMENTS, new Map<string, MaskStyle>([['card_number', 'hash']])],
]);

let nextOid = 20_000;

function view(name: string, columns: string[], definition: string | null, schema = 'public'): ViewDefinition {
  return { oid: nextOid++, schema, name, columns: columns.map((column, index) => ({ name: column, attnum: index + 1 })), definition };
}

function input(views: ViewDefinition[], overrides: Partial<ViewLineageInput> = {}): ViewLineageInput {
  const relations = new Map<string, number>([
    [relationName('public', 'customers'), CUSTOMERS],
    [relationName('public', 'payments'), PAYMENTS],
    [relationName('other', 'customers'), OTHER_CUSTOMERS],
  ]);
  for (const v of views) relations.set(relationName(v.schema, v.name), v.oid);
  return { views, maskedColumns: MASKED, relations, searchPath: ['pg_catalog', 'public'], failClosedStyle: 'null', ...overrides };
}

/** The masks of one view as { column: 'style' | 'whole-style' }, attribute 0 as `(row)`. */
function masksOf(result: ReturnType<typeof maskViewColumns>, target: ViewDefinition): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [attnum, mask] of result.get(target.oid) ?? []) {
    const name = attnum === 0 ? '(row)' : target.columns.find((column) => column.attnum === attnum)!.name;
    out[name] = mask.whole ? `whole-${mask.style}` : mask.style;
  }
  return out;
}

describe('view lineage', () => {
  beforeAll(async () => {
    await loadStatementParser();
  });

  it('masks a masked column a view passes through in its own style, and leaves the others alone', () => {
    const v = view('contacts', ['id', 'name', 'email', 'ssn'],
      ' SELECT customers.id,\n    customers.name,\n    customers.email,\n    customers.ssn\n   FROM customers;');
    expect(masksOf(maskViewColumns(input([v])), v)).toEqual({ email: 'partial', ssn: 'redact', '(row)': 'whole-redact' });
  });

  it('masks whole a column computed from a masked column: reverse(ssn), length(email), email || \'\'', () => {
    const v = view('computed', ['id', 'r', 'l', 'e'],
      " SELECT customers.id,\n    reverse(customers.ssn) AS r,\n    length(customers.email) AS l,\n    (customers.email || ''::text) AS e\n   FROM customers;");
    expect(masksOf(maskViewColumns(input([v])), v)).toEqual({
      r: 'whole-redact', l: 'whole-partial', e: 'whole-partial', '(row)': 'whole-redact',
    });
  });

  it('masks whole a column drawing on several masked columns, in the strictest style involved', () => {
    const v = view('mixed', ['both'], ' SELECT (customers.email || customers.notes) AS both\n   FROM customers;');
    expect(masksOf(maskViewColumns(input([v])), v)).toEqual({ both: 'whole-null', '(row)': 'whole-null' });
  });

  it('masks whole a whole-row value (row_to_json(c.*)) of a table with masked columns', () => {
    const v = view('documents', ['id', 'j'], ' SELECT c.id,\n    row_to_json(c.*) AS j\n   FROM customers c;');
    expect(masksOf(maskViewColumns(input([v])), v)).toEqual({ j: 'whole-null', '(row)': 'whole-null' });
  });

  it('resolves views over views, whichever order they are listed in', () => {
    const inner = view('inner_v', ['id', 'r', 'email'],
      ' SELECT customers.id,\n    reverse(customers.ssn) AS r,\n    customers.email\n   FROM customers;');
    const outer = view('outer_v', ['r', 'email', 'l', 'id'],
      ' SELECT inner_v.r,\n    inner_v.email,\n    length(inner_v.email) AS l,\n    inner_v.id\n   FROM inner_v;');
    const whole = view('rows_v', ['inner_v'], ' SELECT inner_v.*::inner_v AS inner_v\n   FROM inner_v;');
    const result = maskViewColumns(input([whole, outer, inner]));
    // A computed column passed through stays masked whole; a masked column passed through keeps its style.
    expect(masksOf(result, outer)).toEqual({ r: 'whole-redact', email: 'partial', l: 'whole-partial', '(row)': 'whole-redact' });
    expect(masksOf(result, whole)).toEqual({ inner_v: 'whole-redact', '(row)': 'whole-redact' });
  });

  it('resolves unqualified names through the search_path, qualified ones as written', () => {
    const theirs = view('theirs', ['email'], ' SELECT customers.email\n   FROM other.customers;');
    const ours = view('ours', ['email'], ' SELECT customers.email\n   FROM customers;', 'other');
    const result = maskViewColumns(input([theirs, ours]));
    // other.customers has no masked columns; an unqualified customers is public.customers (first on the path).
    expect(masksOf(result, theirs)).toEqual({});
    expect(masksOf(result, ours)).toEqual({ email: 'partial', '(row)': 'whole-partial' });
    const otherFirst = maskViewColumns(input([ours], { searchPath: ['pg_catalog', 'other', 'public'] }));
    expect(masksOf(otherFirst, ours)).toEqual({});
  });

  it('follows lineage through subqueries, CTEs and set operations', () => {
    const v = view('layered', ['email', 'r', 'u'],
      ' WITH x AS (\n         SELECT customers.email, customers.ssn FROM customers\n        )\n SELECT s.email,\n    s.r,\n    u.u\n   ' +
      'FROM (SELECT x.email, reverse(x.ssn) AS r FROM x) s,\n    (SELECT payments.card_number AS u FROM payments\n        UNION ALL\n         SELECT \'x\'::text) u;');
    // u is card_number's own value through UNION ALL: masked in its style, like the column.
    expect(masksOf(maskViewColumns(input([v])), v)).toEqual({
      email: 'partial', r: 'whole-redact', u: 'hash', '(row)': 'whole-redact',
    });
    const merged = view('merged', ['contact'],
      ' SELECT customers.email AS contact\n   FROM customers\nUNION ALL\n SELECT customers.ssn AS contact\n   FROM customers;');
    expect(masksOf(maskViewColumns(input([merged])), merged)).toEqual({ contact: 'whole-redact', '(row)': 'whole-redact' });
  });

  it('records nothing for a view that reads no masked column', () => {
    const v = view('names', ['id', 'name'], ' SELECT customers.id,\n    upper(customers.name) AS name\n   FROM customers;');
    expect(maskViewColumns(input([v])).has(v.oid)).toBe(false);
  });

  it('masks every column whole when the definition cannot be analysed (fail closed)', () => {
    const unparsable = view('broken', ['id', 'name'], 'SELECT FROM WHERE');
    const gone = view('gone', ['id'], null);
    const opaque = view('opaque', ['id', 'secret'], ' SELECT customers.id,\n    my_lookup(customers.id) AS secret\n   FROM customers;');
    const miscounted = view('miscounted', ['id', 'name', 'extra'], ' SELECT customers.id,\n    customers.name\n   FROM customers;');
    const result = maskViewColumns(input([unparsable, gone, opaque, miscounted]));
    expect(masksOf(result, unparsable)).toEqual({ id: 'whole-null', name: 'whole-null', '(row)': 'whole-null' });
    expect(masksOf(result, gone)).toEqual({ id: 'whole-null', '(row)': 'whole-null' });
    // A function dbgate cannot see into could read any masked table.
    expect(masksOf(result, opaque)).toEqual({ id: 'whole-null', secret: 'whole-null', '(row)': 'whole-null' });
    expect(masksOf(result, miscounted)).toEqual({ id: 'whole-null', name: 'whole-null', extra: 'whole-null', '(row)': 'whole-null' });
  });

  it('does not loop on views that reach each other (a catalog changed under the read): fail closed', () => {
    const a = view('a', ['x'], ' SELECT b.x\n   FROM b;');
    const b = view('b', ['x'], ' SELECT a.x\n   FROM a;');
    const result = maskViewColumns(input([a, b]));
    expect(masksOf(result, a)).toEqual({ x: 'whole-null', '(row)': 'whole-null' });
    expect(masksOf(result, b)).toEqual({ x: 'whole-null', '(row)': 'whole-null' });
  });

  it('applies the policy to a view column it names itself, and still masks it whole when it is computed', () => {
    const v = view('named', ['id', 'r'], ' SELECT customers.id,\n    reverse(customers.ssn) AS r\n   FROM customers;');
    const maskedColumns = new Map(MASKED);
    maskedColumns.set(v.oid, new Map<string, MaskStyle>([['id', 'hash'], ['r', 'partial']]));
    expect(masksOf(maskViewColumns(input([v], { maskedColumns })), v)).toEqual({ id: 'hash', r: 'whole-redact', '(row)': 'whole-redact' });
  });
});
