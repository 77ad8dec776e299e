/**
 * Readers and writers for the two result messages masking works on.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html (RowDescription 'T', DataRow 'D')
 */
import { BackendCode } from '../wire/protocol.js';

/** One column of a RowDescription. */
export interface ResultField {
  name: string;
  /** OID of the table the column comes from, or 0 when it is an expression. */
  tableOid: number;
  /** The column's attribute number in that table, or 0. */
  attnum: number;
  typeOid: number;
  /** 0 = text, 1 = binary. */
  format: number;
}

/** RowDescription body: Int16 count, then per field: name (C string), Int32 table OID, Int16 attnum, Int32 type OID,
 * Int16 type size, Int32 type modifier, Int16 format code. */
export function parseRowDescription(body: Buffer): ResultField[] {
  const count = body.readInt16BE(0);
  const fields: ResultField[] = [];
  let offset = 2;
  for (let i = 0; i < count; i += 1) {
    const end = body.indexOf(0, offset);
    if (end < 0) throw new Error('malformed RowDescription');
    const name = body.toString('utf8', offset, end);
    offset = end + 1;
    const tableOid = body.readUInt32BE(offset);
    const attnum = body.readInt16BE(offset + 4);
    const typeOid = body.readUInt32BE(offset + 6);
    // skip type size (Int16) and type modifier (Int32)
    const format = body.readInt16BE(offset + 16);
    fields.push({ name, tableOid, attnum, typeOid, format });
    offset += 18;
  }
  return fields;
}

/**
 * `fields` with the result formats a Bind asked for: none = all text, one = all in that format, else one per column
 * (PostgreSQL refuses any other count).
 */
export function withResultFormats(fields: readonly ResultField[], formats: readonly number[]): ResultField[] {
  return fields.map((field, index) => ({ ...field, format: formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : formats[index] ?? 0 }));
}

/** DataRow body: Int16 column count, then per column Int32 length (-1 = NULL) and that many bytes. */
export function readDataRowColumns(body: Buffer): Array<Buffer | null> {
  const count = body.readInt16BE(0);
  const columns: Array<Buffer | null> = [];
  let offset = 2;
  for (let i = 0; i < count; i += 1) {
    const length = body.readInt32BE(offset);
    offset += 4;
    if (length < 0) {
      columns.push(null);
      continue;
    }
    columns.push(body.subarray(offset, offset + length));
    offset += length;
  }
  return columns;
}

/** A complete DataRow message ('D' + length + body) from column values. */
export function writeDataRow(columns: ReadonlyArray<Buffer | null>): Buffer {
  let size = 4 + 2;
  for (const column of columns) size += 4 + (column ? column.length : 0);
  const out = Buffer.allocUnsafe(1 + size);
  out[0] = BackendCode.DataRow;
  out.writeInt32BE(size, 1);
  out.writeInt16BE(columns.length, 5);
  let offset = 7;
  for (const column of columns) {
    if (column === null) {
      out.writeInt32BE(-1, offset);
      offset += 4;
      continue;
    }
    out.writeInt32BE(column.length, offset);
    column.copy(out, offset + 4);
    offset += 4 + column.length;
  }
  return out;
}
