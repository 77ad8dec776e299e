/**
 * Masks one result set as it streams. RowDescription decides, per column, whether the column is known to be masked
 * (catalog: table OID + attnum), or of unknown lineage (an expression, a view, a function: scanned by the content
 * detectors), or known clean; each DataRow is then rewritten only if something in it must change. Rows that need no
 * change are forwarded as they are.
 */
import { columnKey, NO_MASKED_COLUMNS, type MaskedColumnKeys } from './catalog.js';
import type { Masker, MaskStyle } from './mask.js';
import { readDataRowColumns, writeDataRow, type ResultField } from './row-messages.js';

type ColumnPlan = 'pass' | 'scan' | MaskStyle;

export class ResultMasker {
  private readonly plan: ColumnPlan[];
  /** Column names that were masked (by catalog or by detection), for the audit record. */
  readonly maskedColumns = new Set<string>();

  constructor(
    private readonly fields: ResultField[],
    maskedKeys: MaskedColumnKeys,
    /** The masker of each style; `partial` also scans values of unknown lineage. */
    private readonly maskers: Readonly<Record<MaskStyle, Masker>>,
  ) {
    this.plan = fields.map((field) => {
      const style = field.tableOid !== 0 ? maskedKeys.masked.get(columnKey(field.tableOid, field.attnum)) : undefined;
      if (style) return style;
      // Any other column of a plain table holds its own stored values: clean by policy. Anything else
      // (expressions, views, functions over masked columns) has lineage we do not prove here: scanned.
      if (maskedKeys.plainTables.has(field.tableOid)) return 'pass';
      return 'scan';
    });
  }

  /**
   * For rows that arrive without a RowDescription (Execute without Describe): nothing is known about the columns,
   * so every value is scanned by the detectors as text.
   */
  static scanAll(dataRowBody: Buffer, maskers: Readonly<Record<MaskStyle, Masker>>): ResultMasker {
    const count = dataRowBody.readInt16BE(0);
    const fields: ResultField[] = Array.from({ length: count }, (_, index) => ({
      name: `column ${index + 1}`,
      tableOid: 0,
      attnum: 0,
      typeOid: 25,
      format: 0,
    }));
    return new ResultMasker(fields, NO_MASKED_COLUMNS, maskers);
  }

  /** Whether any column needs work at all; when not, DataRows can stream untouched. */
  get needed(): boolean {
    return this.plan.some((step) => step !== 'pass');
  }

  /** Binary-format columns cannot be scanned or masked as text: the caller must refuse such a result. */
  get hasBinaryColumnsToMask(): boolean {
    return this.plan.some((step, index) => step !== 'pass' && this.fields[index]!.format !== 0);
  }

  /** Returns a replacement DataRow message, or null when the row can be forwarded unchanged. */
  maskRow(body: Buffer): Buffer | null {
    const columns = readDataRowColumns(body);
    let changed = false;
    for (let index = 0; index < columns.length; index += 1) {
      const step = this.plan[index];
      const value = columns[index];
      if (step === undefined || step === 'pass' || value === null || value === undefined) continue;
      const field = this.fields[index]!;
      const text = value.toString('utf8');
      if (step !== 'scan') {
        const masked = this.maskers[step].maskValue(text, field.typeOid);
        columns[index] = masked === null ? null : Buffer.from(masked, 'utf8');
        changed = true;
        this.maskedColumns.add(field.name);
        continue;
      }
      const detected = this.maskers.partial.maskDetected(text);
      if (detected !== undefined) {
        columns[index] = Buffer.from(detected, 'utf8');
        changed = true;
        this.maskedColumns.add(field.name);
      }
    }
    return changed ? writeDataRow(columns) : null;
  }
}
