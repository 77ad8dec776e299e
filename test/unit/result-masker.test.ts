/**
 * ResultMasker: how each result column is treated, and what each mask style sends.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { columnKey, type MaskedColumnKeys } from '../../src/gateway/masking/catalog.js';
import { NO_CATALOG } from '../../src/gateway/policy/target-catalog.js';
import { createMasker, type MaskStyle } from '../../src/gateway/masking/mask.js';
import { MaskingFailure, ResultMasker } from '../../src/gateway/masking/result-masker.js';
import { readDataRowColumns, writeDataRow, type ResultField } from '../../src/gateway/masking/row-messages.js';

const CUSTOMERS = 16_384;
const VIEW = 16_400;
const TEXT = 25;
const INT8 = 20;
const key = randomBytes(32);
const maskers = {
  partial: createMasker('partial', key),
  redact: createMasker('redact', key),
  hash: createMasker('hash', key),
  null: createMasker('null', key),
} as const;

function field(name: string, tableOid: number, attnum: number, typeOid = TEXT): ResultField {
  return { name, tableOid, attnum, typeOid, format: 0 };
}

function keys(styles: Array<[number, MaskStyle]>, derived: Array<[number, number, MaskStyle]> = []): MaskedColumnKeys {
  return {
    masked: new Map(styles.map(([attnum, style]) => [columnKey(CUSTOMERS, attnum), style])),
    derived: new Map(derived.map(([oid, attnum, style]) => [columnKey(oid, attnum), style])),
    plainTables: new Set([CUSTOMERS]),
    viewColumns: new Map(),
    policyCatalog: NO_CATALOG,
    relationNames: null,
    readAt: 0,
    complete: true,
    relations: new Set([CUSTOMERS, VIEW]),
    unknownRelationStyle: 'partial',
  };
}

/** Masks one row and returns its values as text (null for SQL NULL). */
function maskRow(masker: ResultMasker, values: Array<string | null>): Array<string | null> {
  const row = writeDataRow(values.map((v) => (v === null ? null : Buffer.from(v))));
  const masked = masker.maskRow(row.subarray(5));
  return readDataRowColumns((masked ?? row).subarray(5)).map((v) => (v === null ? null : v.toString()));
}

describe('ResultMasker', () => {
  it('masks catalogued columns in their style, passes the table’s other columns, scans expressions and views', () => {
    const masker = new ResultMasker(
      [field('id', CUSTOMERS, 1, INT8), field('name', CUSTOMERS, 2), field('email', CUSTOMERS, 3), field('lower', 0, 0), field('contact', VIEW, 2)],
      keys([[3, 'partial']]),
      maskers,
    );
    expect(maskRow(masker, ['7', 'Ann Lee', 'ann.lee@example.com', 'ann.lee@example.com', 'call +1-555-123-4567'])).toEqual([
      '7', 'Ann Lee', 'a***@example.com', 'a***@example.com', 'call ****4567',
    ]);
    expect([...masker.maskedColumns].sort()).toEqual(['contact', 'email', 'lower']);
  });

  it('leaves a row with nothing to mask byte for byte as it was (no copy)', () => {
    const masker = new ResultMasker([field('name', CUSTOMERS, 2), field('note', 0, 0)], keys([[3, 'partial']]), maskers);
    const row = writeDataRow([Buffer.from('Ann Lee'), Buffer.from('no contact data here')]);
    expect(masker.maskRow(row.subarray(5))).toBeNull();
  });

  it('redacts, hashes deterministically (equal values stay equal, so joins line up) or sends NULL, per rule', () => {
    const masker = new ResultMasker(
      [field('a', CUSTOMERS, 3), field('b', CUSTOMERS, 4), field('c', CUSTOMERS, 5), field('d', CUSTOMERS, 6, INT8)],
      keys([[3, 'redact'], [4, 'hash'], [5, 'null'], [6, 'partial']]),
      maskers,
    );
    const first = maskRow(masker, ['123-45-6789', 'ann.lee@example.com', '4111111111111111', '42']);
    const second = maskRow(masker, ['987-65-4321', 'ann.lee@example.com', '5555555555554444', '43']);
    expect(first[0]).toBe('[redacted]');
    expect(first[1]).toMatch(/^h:[0-9a-f]{16}$/);
    expect(second[1]).toBe(first[1]);
    expect(first[2]).toBeNull();
    // A masked column of a non-text type cannot hold a masked string: NULL keeps the row parseable.
    expect(first[3]).toBeNull();
  });

  it('scans every column of rows that arrive without a RowDescription', () => {
    const row = writeDataRow([Buffer.from('ann.lee@example.com'), Buffer.from('plain')]);
    const masker = ResultMasker.scanAll(row.subarray(5), maskers);
    expect(maskRow(masker, ['ann.lee@example.com', 'plain'])).toEqual(['a***@example.com', 'plain']);
  });

  it('masks binary-format results: text types as in text format, other masked types as NULL', () => {
    const ts = Buffer.alloc(8);
    ts.writeBigInt64BE(789_000_000n);
    const id = Buffer.alloc(8);
    id.writeBigInt64BE(42n);
    const masker = new ResultMasker([
      { ...field('id', CUSTOMERS, 1, INT8), format: 1 },
      { ...field('email', CUSTOMERS, 3), format: 1 },
      { ...field('created_at', CUSTOMERS, 6, 1184), format: 1 },
    ], keys([[3, 'partial'], [6, 'partial']]), maskers);
    expect(masker.unsupportedBinaryColumns).toEqual([]);
    const row = writeDataRow([id, Buffer.from('ann.lee@example.com'), ts]);
    const columns = readDataRowColumns(masker.maskRow(row.subarray(5))!.subarray(5));
    expect(columns[0]).toEqual(id);
    expect(columns[1]!.toString()).toBe('a***@example.com');
    expect(columns[2]).toBeNull();
  });

  it('scans binary integers as their decimal text, and passes binary types no detector reads', () => {
    const card = Buffer.alloc(8);
    card.writeBigInt64BE(4111111111111111n);
    const small = Buffer.alloc(4);
    small.writeInt32BE(7);
    const flag = Buffer.from([1]);
    const masker = new ResultMasker([
      { ...field('card', 0, 0, INT8), format: 1 },
      { ...field('n', 0, 0, 23), format: 1 },
      { ...field('flag', 0, 0, 16), format: 1 },
    ], keys([]), maskers);
    expect(masker.unsupportedBinaryColumns).toEqual([]);
    const columns = readDataRowColumns(masker.maskRow(writeDataRow([card, small, flag]).subarray(5))!.subarray(5));
    expect(columns).toEqual([null, small, flag]);
    expect(masker.maskRow(writeDataRow([Buffer.alloc(8), small, flag]).subarray(5))).toBeNull();
  });

  it('reports binary columns it would have to scan but cannot read, and refuses their rows', () => {
    const masker = new ResultMasker([
      { ...field('id', CUSTOMERS, 1, INT8), format: 1 },
      { ...field('span', 0, 0, 3904), format: 1 },
    ], keys([[3, 'partial']]), maskers);
    expect(masker.unsupportedBinaryColumns).toEqual(['span']);
    expect(() => masker.maskRow(writeDataRow([Buffer.alloc(8), Buffer.alloc(8)]).subarray(5))).toThrow(MaskingFailure);
    // A binary value whose length does not fit its type is not a value of it.
    const bad = new ResultMasker([{ ...field('n', 0, 0, 23), format: 1 }], keys([]), maskers);
    expect(() => bad.maskRow(writeDataRow([Buffer.alloc(3)]).subarray(5))).toThrow(MaskingFailure);
  });

  it('rewrites a row in place inside a larger buffer: NULLs, multi-byte text, values growing and shrinking', () => {
    const masker = new ResultMasker(
      [field('name', CUSTOMERS, 2), field('email', CUSTOMERS, 3), field('phone', CUSTOMERS, 4), field('ssn', CUSTOMERS, 5),
        field('note', 0, 0)],
      keys([[3, 'partial'], [4, 'partial'], [5, 'redact']]),
      maskers,
    );
    const values = ['Zoë Ñúñez', 'zoë@exämple.com', null, '123-45-6789', 'mail zoe@example.com ✓'];
    const row = writeDataRow(values.map((v) => (v === null ? null : Buffer.from(v))));
    // The DataRow body sits between other bytes, as it does inside a chunk read from the server.
    const chunk = Buffer.concat([Buffer.from('before'), row, Buffer.from('after')]);
    const masked = masker.maskRow(chunk, 6 + 5, 6 + row.length);
    expect(masked).not.toBeNull();
    expect(masked!.readInt32BE(1)).toBe(masked!.length - 1);
    expect(readDataRowColumns(masked!.subarray(5)).map((v) => (v === null ? null : v.toString()))).toEqual([
      'Zoë Ñúñez', '****.com', null, '[redacted]', 'mail z***@example.com ✓',
    ]);
    expect(masker.maskedColumns).toEqual(['email', 'ssn', 'note']);
  });

  it('refuses a row that does not fit its RowDescription instead of passing it', () => {
    const masker = new ResultMasker([field('email', CUSTOMERS, 3)], keys([[3, 'partial']]), maskers);
    const two = writeDataRow([Buffer.from('a@example.com'), Buffer.from('x')]);
    expect(() => masker.maskRow(two.subarray(5))).toThrow(MaskingFailure);
    const truncated = writeDataRow([Buffer.from('a@example.com')]);
    expect(() => masker.maskRow(truncated.subarray(5, truncated.length - 2))).toThrow(MaskingFailure);
  });

  it('masks whole the columns computed from masked ones, in the syntax of their type, by position around stars', () => {
    const JSON_TYPE = 114;
    const INT4 = 23;
    // SELECT *, length(email), row_to_json(c) … where * expanded to id, name (attributed by PostgreSQL).
    const fields = [field('id', CUSTOMERS, 1, INT8), field('name', CUSTOMERS, 2), field('length', 0, 0, INT4),
      field('row_to_json', 0, 0, JSON_TYPE), field('now', 0, 0)];
    const derived = { columns: [{ masked: false, star: true, computed: false }, { masked: true, star: false, computed: true }, { masked: true, star: false, computed: true },
      { masked: false, star: false, computed: false }], style: 'partial' as const };
    const masker = new ResultMasker(fields, keys([[3, 'partial']]), maskers, derived);
    expect(maskRow(masker, ['7', 'Ann Lee', '19', '{"email":"ann.lee@example.com"}', '2026-11-26 07:00'])).toEqual([
      '7', 'Ann Lee', null, '"****"', '2026-11-26 07:00',
    ]);
    const redacting = new ResultMasker([field('r', 0, 0), field('a', 0, 0, 1009)], keys([]), maskers,
      { columns: [{ masked: true, star: false, computed: true }, { masked: true, star: false, computed: true }], style: 'redact' });
    expect(maskRow(redacting, ['9876-54-321', '{a,b}'])).toEqual(['[redacted]', '{"[redacted]"}']);
  });

  it('treats a whole-row column of a plain table (attribute 0) as computed, not as a clean column', () => {
    const RECORD = 2249;
    const masker = new ResultMasker([field('c', CUSTOMERS, 0, RECORD)], keys([[3, 'partial']]), maskers,
      { columns: [{ masked: true, star: false, computed: true }], style: 'partial' });
    expect(maskRow(masker, ['(1,"Ann Lee",ann.lee@example.com)'])).toEqual(['("****")']);
    // Without lineage (no decision about it), it is at least scanned, never passed.
    const scanning = new ResultMasker([field('c', CUSTOMERS, 0, RECORD)], keys([[3, 'partial']]), maskers);
    expect(maskRow(scanning, ['(1,"Ann Lee",ann.lee@example.com)'])).toEqual(['(1,"Ann Lee",a***@example.com)']);
  });

  it('masks view columns as the catalog resolved them: passed through in style, computed ones whole, others scanned', () => {
    // A view (id, r = reverse(ssn), email, notes) and its whole row, as catalog.ts records them.
    const viewKeys = keys([[3, 'partial']], [[VIEW, 2, 'redact'], [VIEW, 0, 'redact']]);
    const withView: MaskedColumnKeys = { ...viewKeys, masked: new Map([...viewKeys.masked, [columnKey(VIEW, 3), 'partial']]) };
    const masker = new ResultMasker(
      [field('id', VIEW, 1, INT8), field('r', VIEW, 2), field('email', VIEW, 3), field('notes', VIEW, 4), field('v', VIEW, 0, 2249)],
      withView,
      maskers,
    );
    expect(maskRow(masker, ['7', '9876-54-321', 'ann.lee@example.com', 'call 555-123-4567', '(7,9876-54-321)'])).toEqual([
      '7', '[redacted]', 'a***@example.com', 'call ****4567', '("[redacted]")',
    ]);
    expect(masker.staleCatalog).toBe(false);
  });

  it('masks whole every column of a relation the catalog does not know yet, and says the catalog is stale', () => {
    const NEW_VIEW = 16_500;
    const masker = new ResultMasker([field('id', NEW_VIEW, 1, INT8), field('r', NEW_VIEW, 2), field('name', CUSTOMERS, 2)],
      keys([[3, 'partial']]), maskers);
    expect(maskRow(masker, ['7', '9876-54-321', 'Ann Lee'])).toEqual([null, '****', 'Ann Lee']);
    expect(masker.staleCatalog).toBe(true);
    // Known relations, and results without any relation, do not.
    expect(new ResultMasker([field('contact', VIEW, 2), field('now', 0, 0)], keys([[3, 'partial']]), maskers).staleCatalog).toBe(false);
    // Nothing masked on the target: nothing to protect, nothing to re-read.
    const nothingMasked: MaskedColumnKeys = { ...keys([]), unknownRelationStyle: null };
    const scanning = new ResultMasker([field('r', NEW_VIEW, 2)], nothingMasked, maskers);
    expect(maskRow(scanning, ['9876-54-321'])).toEqual(['9876-54-321']);
    expect(scanning.staleCatalog).toBe(false);
  });

  it('sends NULL for computed masked columns of rows without a RowDescription (their type is unknown)', () => {
    const row = writeDataRow([Buffer.from('7'), Buffer.from('9876-54-321')]);
    const masker = ResultMasker.scanAll(row.subarray(5), maskers,
      { columns: [{ masked: false, star: false, computed: false }, { masked: true, star: false, computed: true }], style: 'partial' });
    expect(maskRow(masker, ['7', '9876-54-321'])).toEqual(['7', null]);
  });

  it("masks a masked column's own value that PostgreSQL does not attribute (scalar subquery, UNION) in the rule's style", () => {
    const masker = new ResultMasker([field('email', 0, 0), field('n', 0, 0, 23)], keys([]), maskers,
      { columns: [{ masked: true, star: false, computed: false }, { masked: true, star: false, computed: true }], style: 'partial' });
    expect(maskRow(masker, ['ann.lee@example.com', '19'])).toEqual(['a***@example.com', null]);
  });
});
