/**
 * RFC 4180 CSV: CRLF line ends, a header line, and fields quoted (with `"` doubled) when they hold a comma, a quote,
 * CR or LF. NULL is written as an empty unquoted field and the empty string as `""`, as PostgreSQL's own CSV format
 * does, so the two stay distinguishable.
 * @see https://www.rfc-editor.org/rfc/rfc4180
 */

const NEEDS_QUOTES = /[",\r\n]/;

/** One CSV field. */
export function csvField(value: string | null): string {
  if (value === null) return '';
  if (value === '' || NEEDS_QUOTES.test(value)) return `"${value.replace(/"/g, '""')}"`;
  return value;
}

/** The whole document: the header line, then one line per row, each ended by CRLF. */
export function toCsv(columns: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | null>>): string {
  const lines = [columns.map(csvField), ...rows.map((row) => row.map(csvField))];
  return lines.map((fields) => `${fields.join(',')}\r\n`).join('');
}
