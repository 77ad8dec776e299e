/**
 * Which view columns carry masked values, from the views' definitions as pg_get_viewdef prints them (names relative
 * to the catalog connection's search_path), parsed with the real statement grammar.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyStatements, loadStatementParser, type StatementOutputs } from '../../src/gateway/policy/classify.js';
import type { MaskStyle } from '../../src/gateway/masking/mask.js';
import {
  cursorOverMaskedViewColumns, derivedThroughViews, maskViewColumns, relationName, type ColumnMask, type MaskedViewColumns, type ViewDefinition,
  type ViewLineageInput,
} from '../../src/gateway/masking/view-lineage.js';

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

describe('statement lineage through masked view columns', () => {
  /** The view `contacts` (email passed through, r computed, whole row masked), as the catalog lists it by name. */
  const VIEW_COLUMNS: MaskedViewColumns = new Map([
    ['contacts', [{
      schema: 'public',
      columns: new Map<string, ColumnMask>([
        ['email', { style: 'partial', whole: false }], ['r', { style: 'redact', whole: true }], ['*', { style: 'redact', whole: true }],
      ]),
    }]],
  ]);
  const clean = { masked: false, star: false, computed: false };

  function outputsOf(sql: string): Array<StatementOutputs | null> {
    const classification = classifyStatements(sql);
    expect(classification.parseError).toBeNull();
    return classification.statements.map((statement) => statement.outputs);
  }

  beforeAll(async () => {
    await loadStatementParser();
  });

  it('marks the result columns a statement computes from masked view columns, in the strictest style', () => {
    expect(derivedThroughViews(undefined, outputsOf('select id, reverse(email), length(r), upper(name) from contacts'), VIEW_COLUMNS)).toEqual({
      columns: [clean, { masked: true, star: false, computed: true }, { masked: true, star: false, computed: true }, clean],
      style: 'redact',
    });
    // A whole-row reference, and a qualified name in the view's schema.
    expect(derivedThroughViews(undefined, outputsOf('select row_to_json(c) from public.contacts c'), VIEW_COLUMNS)?.columns)
      .toEqual([{ masked: true, star: false, computed: true }]);
  });

  it("keeps a view column's own value (through a scalar subquery) maskable in its style, unless the view masks it whole", () => {
    expect(derivedThroughViews(undefined, outputsOf('select (select email from contacts limit 1), (select r from contacts limit 1)'), VIEW_COLUMNS))
      .toEqual({ columns: [{ masked: true, star: false, computed: false }, { masked: true, star: false, computed: true }], style: 'redact' });
  });

  it('adds to what the policy derived from table columns, column by column', () => {
    const policy = { columns: [{ masked: true, star: false, computed: true }, clean, clean], style: 'partial' as const };
    expect(derivedThroughViews(policy, outputsOf('select reverse(c.ssn), reverse(v.email), (select email from contacts) from customers c, contacts v'), VIEW_COLUMNS))
      .toEqual({
        columns: [{ masked: true, star: false, computed: true }, { masked: true, star: false, computed: true }, { masked: true, star: false, computed: false }],
        style: 'partial',
      });
    // Nothing through views: the policy's as they were.
    expect(derivedThroughViews(policy, outputsOf('select reverse(ssn), name from customers'), VIEW_COLUMNS)).toBe(policy);
  });

  it('masks every unattributed column when several statements return rows (their results cannot be told apart)', () => {
    expect(derivedThroughViews(undefined, outputsOf('select 1; select reverse(email) from contacts'), VIEW_COLUMNS))
      .toEqual({ columns: [{ masked: true, star: true, computed: true }], style: 'partial' });
  });

  it('leaves columns of views in other schemas, and of views it does not list, alone', () => {
    expect(derivedThroughViews(undefined, outputsOf('select reverse(email) from other.contacts'), VIEW_COLUMNS)).toBeUndefined();
    expect(derivedThroughViews(undefined, outputsOf('select reverse(email) from other_view'), VIEW_COLUMNS)).toBeUndefined();
  });

  it('finds cursors over masked view values PostgreSQL would not attribute, not cursors that pass them through', () => {
    expect(cursorOverMaskedViewColumns(outputsOf('declare c cursor for select reverse(email) from contacts'), VIEW_COLUMNS)).toBe(true);
    expect(cursorOverMaskedViewColumns(outputsOf('declare c cursor for select email from contacts union all select \'x\''), VIEW_COLUMNS)).toBe(true);
    expect(cursorOverMaskedViewColumns(outputsOf('declare c cursor for select email, r from contacts'), VIEW_COLUMNS)).toBe(false);
    expect(cursorOverMaskedViewColumns(outputsOf('select reverse(email) from contacts'), VIEW_COLUMNS)).toBe(false);
  });
});
