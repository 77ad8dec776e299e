/**
 * Masks one result set as it streams. RowDescription decides, per column, whether the column is known to be masked
 * (catalog: table OID + attnum), or of unknown lineage (an expression, a view, a function: scanned by the content
 * detectors), or known clean; each DataRow is then rewritten only if something in it must change. Rows that need no
 * change are forwarded as they are.
 *
 * `maskRow` runs for every row of a masked result (a million-row read is a million calls), so it works on offsets in
 * the bytes as they arrived, decodes only the values it masks, partial-masks ASCII text on the bytes themselves, and
 * builds each replacement row with one allocation.
 */
import { BackendCode } from '../wire/protocol.js';
import { columnKey, NO_MASKED_COLUMNS, type MaskedColumnKeys } from './catalog.js';
import { partialMaskAscii, type BytePartialMask, type Masker, type MaskStyle } from './mask.js';
import type { DerivedOutputs } from '../policy/policy.js';
import type { ResultField } from './row-messages.js';

/** Per column: pass, scan with the detectors, mask in a style (catalog), or mask whole in a style (derived). */
type ColumnPlan = 'pass' | 'scan' | MaskStyle | `derived-${MaskStyle}`;

/** Plain text types: a partial mask of such a column is computed on its bytes (`partialMaskAscii`). */
const PLAIN_TEXT_TYPES = new Set([25, 1043, 1042, 19, 705]);

/**
 * Binary-format results (drivers ask for them: pgjdbc for integers, dates and times once a statement is prepared on
 * the server). Types whose binary format is their text's UTF-8 bytes — text, varchar, char, name, unknown, json — are
 * masked and scanned exactly as in text format.
 */
const TEXT_BINARY_TYPES = new Set([...PLAIN_TEXT_TYPES, 114]);
/**
 * Binary integers, OIDs, floats and numerics, and arrays of those and of text types: decoded to their text for the
 * detectors (a card number can be a bigint or a numeric, an email an element of a text[]).
 */
const NUMBER_BINARY_TYPES = new Set([20, 21, 23, 26, 700, 701, 1700]);
/** Array type OIDs of the decodable element types: int2[], int4[], int8[], oid[], float4[], float8[], numeric[], text[], varchar[], bpchar[], name[]. */
const ARRAY_BINARY_TYPES = new Set([1005, 1007, 1016, 1028, 1021, 1022, 1231, 1009, 1015, 1014, 1003]);
/**
 * Binary types in which no detector can find anything: booleans, dates, times, intervals, UUIDs — and bytea, whose
 * text format (hex) the detectors cannot read either. Scanned columns of these pass in binary format.
 */
const UNSCANNABLE_BINARY_TYPES = new Set([16, 17, 600, 603, 1082, 1083, 1114, 1184, 1186, 1266, 2950]);

/**
 * How a binary-format column that needs work is handled: `null` (masked: sent as NULL, valid in every type — what
 * text format does for types that cannot hold the mask), `number` (scanned as its decoded text, NULL when a detector
 * finds something), `pass` (nothing to scan), `unsupported` (must be scanned, cannot be read: the result is refused).
 * Undefined for columns read as text.
 */
type BinaryHandling = 'null' | 'number' | 'pass' | 'unsupported';

/** A result that cannot be masked: nothing more of it may be sent (the caller ends the connection). */
export class MaskingFailure extends Error {}

export class ResultMasker {
  private readonly plan: ColumnPlan[];
  /** Per column: partial-masked text, done on the bytes. */
  private readonly bytePartial: boolean[];
  /** Per column: how its values are handled when they come in binary format (see BinaryHandling). */
  private readonly binary: Array<BinaryHandling | undefined>;
  /** Per column: whether any of its values was masked (by catalog or by detection). */
  private readonly masked: boolean[];
  /** The result names a relation `maskedKeys` does not know. */
  private namesUnknownRelation = false;
  private readonly anyWork: boolean;

  // Per-row scratch for maskRow, reused (one masker per result; rows are handled one at a time).
  private readonly editStarts: number[] = [];
  private readonly editEnds: number[] = [];
  private readonly editBytes: number[] = [];
  /** The replacement: text (null = SQL NULL), then source bytes [editFrom, editTo) when it was masked on bytes. */
  private readonly editValues: Array<string | null> = [];
  private readonly editFrom: number[] = [];
  private readonly editTo: number[] = [];
  private readonly bytes: BytePartialMask = { head: '', from: 0, to: 0 };

  constructor(
    private readonly fields: ResultField[],
    maskedKeys: MaskedColumnKeys,
    /** The masker of each style; `partial` also scans values of unknown lineage. */
    private readonly maskers: Readonly<Record<MaskStyle, Masker>>,
    /** The statement's result columns computed from masked columns, from its parse tree (policy.ts). */
    derived?: DerivedOutputs,
  ) {
    const fromMasked = derivedPositions(derived, fields.length);
    this.plan = fields.map((field, index): ColumnPlan => {
      if (field.tableOid !== 0) {
        const key = columnKey(field.tableOid, field.attnum);
        const style = maskedKeys.masked.get(key);
        if (style) return style;
        // A view column computed from masked columns (the view's definition says so), or a whole row holding some.
        const whole = maskedKeys.derived.get(key);
        if (whole) return `derived-${whole}`;
      }
      // Any other column of a plain table holds its own stored values: clean by policy. (Attribute number 0 is the
      // whole row, `SELECT c FROM customers c`: not a column, it holds them all.)
      if (maskedKeys.plainTables.has(field.tableOid) && field.attnum > 0) return 'pass';
      // A value PostgreSQL attributes to no table column, from a masked column: a masked column's own value (through
      // a scalar subquery or UNION) is masked as the column would be; a computed one is masked whole.
      const lineage = field.tableOid === 0 || field.attnum <= 0 ? fromMasked[index] : undefined;
      if (lineage && derived) return lineage === 'value' ? derived.style : `derived-${derived.style}`;
      if (field.tableOid !== 0 && maskedKeys.unknownRelationStyle !== null && !maskedKeys.relations.has(field.tableOid)) {
        // A relation created after the catalog was read (a view made directly on the database): what its columns
        // carry is not known yet. Fail closed: masked whole, and the caller has the catalog read again.
        this.namesUnknownRelation = true;
        return `derived-${maskedKeys.unknownRelationStyle}`;
      }
      // Anything else (other expressions, other view columns, functions) has lineage not proven here: scanned.
      return 'scan';
    });
    this.bytePartial = this.plan.map((step, index) => step === 'partial' && PLAIN_TEXT_TYPES.has(fields[index]!.typeOid));
    this.binary = this.plan.map((step, index): BinaryHandling | undefined => {
      const { format, typeOid } = fields[index]!;
      if (step === 'pass' || format === 0 || TEXT_BINARY_TYPES.has(typeOid)) return undefined;
      if (step !== 'scan') return 'null';
      if (NUMBER_BINARY_TYPES.has(typeOid) || ARRAY_BINARY_TYPES.has(typeOid)) return 'number';
      return UNSCANNABLE_BINARY_TYPES.has(typeOid) ? 'pass' : 'unsupported';
    });
    this.masked = fields.map(() => false);
    this.anyWork = this.plan.some((step) => step !== 'pass');
  }

  /**
   * For rows that arrive without a RowDescription (Execute without Describe): no column is attributed to a table and
   * no type is known, so the columns the statement's lineage derives from masked columns are sent as NULL, and every
   * other value is scanned by the detectors as text.
   */
  static scanAll(dataRowBody: Buffer, maskers: Readonly<Record<MaskStyle, Masker>>, derived?: DerivedOutputs): ResultMasker {
    const count = dataRowBody.readInt16BE(0);
    const fields: ResultField[] = Array.from({ length: count }, (_, index) => ({
      name: `column ${index + 1}`,
      tableOid: 0,
      attnum: 0,
      // Unknown: a value masked whole is then NULL, the one value every type accepts.
      typeOid: 0,
      format: 0,
    }));
    return new ResultMasker(fields, NO_MASKED_COLUMNS, maskers, derived);
  }

  /** The result names a relation the catalog snapshot does not know: the snapshot is stale. */
  get staleCatalog(): boolean {
    return this.namesUnknownRelation;
  }

  /** Whether any column needs work at all; when not, DataRows can stream untouched. */
  get needed(): boolean {
    return this.anyWork;
  }

  /**
   * Binary-format columns that must be scanned and whose binary format dbgate does not read (numeric, arrays, records,
   * jsonb…): the caller must refuse such a result before any of its rows leaves.
   */
  get unsupportedBinaryColumns(): string[] {
    return this.fields.filter((_, index) => this.binary[index] === 'unsupported').map((field) => field.name);
  }

  /** Names of the columns whose values were masked so far, for the audit record. */
  get maskedColumns(): string[] {
    return this.fields.filter((_, index) => this.masked[index]).map((field) => field.name);
  }

  /**
   * Masks the DataRow whose body is `source[start, end)`. Returns the replacement DataRow message (type and length
   * included), or null when the row can be forwarded unchanged.
   */
  maskRow(source: Buffer, start = 0, end = source.length): Buffer | null {
    const count = source.readInt16BE(start);
    if (count !== this.plan.length) {
      // A row that does not fit its RowDescription cannot be planned: nothing of it may leave unmasked.
      throw new MaskingFailure(`a result row has ${count} columns where its description has ${this.plan.length}`);
    }
    let edits = 0;
    let offset = start + 2;
    for (let index = 0; index < count; index += 1) {
      const length = source.readInt32BE(offset);
      offset += 4;
      if (length < 0) continue;
      const valueStart = offset;
      offset += length;
      if (offset > end) throw new MaskingFailure('a result row is shorter than its column lengths say');
      const step = this.plan[index]!;
      if (step === 'pass') continue;
      let replacement: string | null | undefined;
      let from = 0;
      let to = 0;
      const binary = this.binary[index];
      if (binary !== undefined) {
        if (binary === 'pass') continue;
        if (binary === 'unsupported') throw new MaskingFailure(`column ${this.fields[index]!.name} is in a binary format dbgate cannot scan`);
        if (binary === 'number') {
          const texts = binaryValueTexts(source, valueStart, length, this.fields[index]!.typeOid);
          if (texts.every((text) => this.maskers.partial.maskDetected(text) === undefined)) continue;
        }
        replacement = null;
      } else if (this.bytePartial[index] && partialMaskAscii(source, valueStart, offset, this.bytes)) {
        replacement = this.bytes.head;
        from = this.bytes.from;
        to = this.bytes.to;
      } else {
        const text = source.toString('utf8', valueStart, offset);
        if (step === 'scan') {
          replacement = this.maskers.partial.maskDetected(text);
          if (replacement === undefined) continue;
        } else if (step.startsWith('derived-')) {
          replacement = this.maskers[step.slice(8) as MaskStyle].maskWhole(text, this.fields[index]!.typeOid);
        } else {
          replacement = this.maskers[step as MaskStyle].maskValue(text, this.fields[index]!.typeOid);
        }
      }
      this.masked[index] = true;
      this.editStarts[edits] = valueStart;
      this.editEnds[edits] = offset;
      this.editValues[edits] = replacement;
      this.editFrom[edits] = from;
      this.editTo[edits] = to;
      edits += 1;
    }
    if (offset !== end) throw new MaskingFailure('a result row is longer than its column lengths say');
    return edits === 0 ? null : this.rewrite(source, start, end, edits);
  }

  /** The row with its first `edits` recorded values replaced: unchanged runs copied, replacements encoded in place. */
  private rewrite(source: Buffer, start: number, end: number, edits: number): Buffer {
    let size = 1 + 4 + (end - start);
    for (let edit = 0; edit < edits; edit += 1) {
      const value = this.editValues[edit]!;
      const bytes = value === null
        ? 0
        : (asciiLength(value) ?? Buffer.byteLength(value, 'utf8')) + this.editTo[edit]! - this.editFrom[edit]!;
      this.editBytes[edit] = bytes;
      size += bytes - (this.editEnds[edit]! - this.editStarts[edit]!);
    }
    const out = Buffer.allocUnsafe(size);
    out[0] = BackendCode.DataRow;
    out.writeInt32BE(size - 1, 1);
    let written = 5;
    let copied = start; // source bytes before this are in `out`
    for (let edit = 0; edit < edits; edit += 1) {
      // Everything up to this value's length field, unchanged.
      written = copyBytes(source, copied, this.editStarts[edit]! - 4, out, written);
      const value = this.editValues[edit]!;
      if (value === null) {
        written = out.writeInt32BE(-1, written);
      } else {
        written = out.writeInt32BE(this.editBytes[edit]!, written);
        const tail = this.editTo[edit]! - this.editFrom[edit]!;
        if (this.editBytes[edit]! - tail === value.length) {
          for (let i = 0; i < value.length; i += 1) out[written + i] = value.charCodeAt(i);
          written += value.length;
        } else {
          written += out.write(value, written, 'utf8');
        }
        written = copyBytes(source, this.editFrom[edit]!, this.editTo[edit]!, out, written);
      }
      copied = this.editEnds[edit]!;
    }
    copyBytes(source, copied, end, out, written);
    return out;
  }
}

/**
 * The texts in a binary value of NUMBER_BINARY_TYPES or ARRAY_BINARY_TYPES, as the detectors read them: the value's
 * text, or its elements' (NULL elements have none).
 *
 * @see https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/utils/adt/arrayfuncs.c (array_send)
 */
export function binaryValueTexts(source: Buffer, at: number, length: number, typeOid: number): string[] {
  if (!ARRAY_BINARY_TYPES.has(typeOid)) return [binaryScalarText(source, at, length, typeOid)];
  const end = at + length;
  if (length < 12) throw new MaskingFailure(`a binary array of type ${typeOid} has ${length} bytes`);
  const dimensions = source.readInt32BE(at);
  const elementType = source.readUInt32BE(at + 8);
  let offset = at + 12;
  let elements = dimensions === 0 ? 0 : 1;
  for (let dimension = 0; dimension < dimensions; dimension += 1) {
    if (offset + 8 > end) throw new MaskingFailure('a binary array ends inside its dimensions');
    elements *= source.readInt32BE(offset);
    offset += 8;
  }
  const texts: string[] = [];
  for (let element = 0; element < elements; element += 1) {
    if (offset + 4 > end) throw new MaskingFailure('a binary array ends inside its elements');
    const size = source.readInt32BE(offset);
    offset += 4;
    if (size < 0) continue;
    if (offset + size > end) throw new MaskingFailure('a binary array element ends outside it');
    texts.push(TEXT_BINARY_TYPES.has(elementType)
      ? source.toString('utf8', offset, offset + size)
      : binaryScalarText(source, offset, size, elementType));
    offset += size;
  }
  if (offset !== end) throw new MaskingFailure('a binary array is longer than its elements');
  return texts;
}

/** The text of a binary integer, OID, float or numeric value, as PostgreSQL would print it (for the detectors). */
function binaryScalarText(source: Buffer, at: number, length: number, typeOid: number): string {
  if (typeOid === 1700) return binaryNumericText(source, at, length);
  const expected = typeOid === 20 || typeOid === 701 ? 8 : typeOid === 21 ? 2 : 4;
  if (length !== expected || !NUMBER_BINARY_TYPES.has(typeOid)) {
    throw new MaskingFailure(`a binary value of type ${typeOid} has ${length} bytes`);
  }
  switch (typeOid) {
    case 20: return source.readBigInt64BE(at).toString();
    case 21: return String(source.readInt16BE(at));
    case 23: return String(source.readInt32BE(at));
    case 26: return String(source.readUInt32BE(at));
    case 700: return String(source.readFloatBE(at));
    default: return String(source.readDoubleBE(at));
  }
}

/**
 * A binary numeric as text: Int16 ndigits, Int16 weight (of the first base-10000 digit), UInt16 sign, Int16 dscale
 * (digits after the point), then the base-10000 digits.
 *
 * @see https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/utils/adt/numeric.c (numeric_send)
 */
function binaryNumericText(source: Buffer, at: number, length: number): string {
  if (length < 8) throw new MaskingFailure(`a binary numeric has ${length} bytes`);
  const digits = source.readInt16BE(at);
  const weight = source.readInt16BE(at + 2);
  const sign = source.readUInt16BE(at + 4);
  const scale = source.readInt16BE(at + 6);
  if (digits < 0 || scale < 0 || length !== 8 + 2 * digits) throw new MaskingFailure('a binary numeric does not fit its length');
  if (sign === 0xc000) return 'NaN';
  if (sign === 0xd000) return 'Infinity';
  if (sign === 0xf000) return '-Infinity';
  const digit = (index: number): number => (index >= 0 && index < digits ? source.readInt16BE(at + 8 + 2 * index) : 0);
  let whole = '';
  for (let index = 0; index <= weight; index += 1) whole += index === 0 ? String(digit(index)) : String(digit(index)).padStart(4, '0');
  let fraction = '';
  for (let group = 1; fraction.length < scale; group += 1) fraction += String(digit(weight + group)).padStart(4, '0');
  return `${sign === 0x4000 ? '-' : ''}${whole || '0'}${scale > 0 ? `.${fraction.slice(0, scale)}` : ''}`;
}

/** The UTF-8 length of an ASCII string (= its length), or undefined when it holds anything else. */
function asciiLength(value: string): number | undefined {
  for (let i = 0; i < value.length; i += 1) if (value.charCodeAt(i) >= 0x80) return undefined;
  return value.length;
}

/** Copies `source[from, to)` into `target` at `at`; returns the end offset. Short runs by hand (Buffer#copy has a
 * fixed cost that dominates a few bytes). */
function copyBytes(source: Buffer, from: number, to: number, target: Buffer, at: number): number {
  const length = to - from;
  if (length > 64) return at + source.copy(target, at, from, to);
  for (let i = 0; i < length; i += 1) target[at + i] = source[from + i]!;
  return at + length;
}

/**
 * Which of `count` result columns carry a masked column's value as it is ('value') or computed from it ('computed'). Entries before the first star map to the first
 * columns, entries after the last star to the last ones; the columns in between (what the stars expand to, and any
 * entries between stars) are masked when any star or entry there is.
 */
function derivedPositions(derived: DerivedOutputs | undefined, count: number): Array<'value' | 'computed' | undefined> {
  const positions = new Array<'value' | 'computed' | undefined>(count).fill(undefined);
  if (!derived) return positions;
  const entries = derived.columns.map((entry) => ({
    star: entry.star,
    masked: entry.masked ? (entry.computed ? 'computed' as const : 'value' as const) : undefined,
  }));
  const firstStar = entries.findIndex((entry) => entry.star);
  if (firstStar < 0) {
    entries.forEach((entry, index) => {
      if (index < count) positions[index] = entry.masked;
    });
    // More columns than entries cannot happen without a star; should it, the extra columns are not attributed.
    return positions;
  }
  let lastStar = firstStar;
  entries.forEach((entry, index) => {
    if (entry.star) lastStar = index;
  });
  const head = entries.slice(0, firstStar);
  const tail = entries.slice(lastStar + 1);
  head.forEach((entry, index) => {
    if (index < count) positions[index] = entry.masked;
  });
  tail.forEach((entry, index) => {
    const position = count - tail.length + index;
    if (position >= 0) positions[position] = entry.masked;
  });
  const middle = entries.slice(firstStar, lastStar + 1);
  const middleMasked = middle.some((entry) => entry.masked === 'computed')
    ? 'computed'
    : middle.some((entry) => entry.masked === 'value') ? 'value' : undefined;
  for (let position = head.length; position < count - tail.length; position += 1) positions[position] = middleMasked;
  return positions;
}
