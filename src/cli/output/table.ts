/**
 * Tables for people (`dbgate targets` in a terminal, `dbgate query`), drawn with cli-table3.
 *
 * cli-table3 colours header and borders by itself (through @colors/colors, which does not know about our context),
 * so its own styling is always switched off and the header is styled with the caller's chalk instance instead: one
 * decision about colour (terminal-style.ts) for everything the CLI prints.
 */
import Table from 'cli-table3';
import type { ChalkInstance } from 'chalk';

export type ColumnAlignment = 'left' | 'right';

export interface TableData {
  head: readonly string[];
  rows: ReadonlyArray<readonly string[]>;
  /** Per column; default left. */
  align?: readonly ColumnAlignment[] | undefined;
}

/** The table as text, without a trailing newline. */
export function renderTable(data: TableData, style: ChalkInstance): string {
  const table = new Table({
    head: data.head.map((name) => style.bold(name)),
    style: { head: [], border: [], compact: true },
    ...(data.align ? { colAligns: [...data.align] } : {}),
  });
  for (const row of data.rows) table.push([...row]);
  return table.toString();
}
