/**
 * Errors and notices can carry the values a statement read. `select email::int from customers` fails with
 * `invalid input syntax for type integer: "alice@example.com"`; a `::regclass` cast or `current_setting(email)` names
 * the value as a missing object; a constraint violation's DETAIL shows the failing row. For a statement whose results
 * are masked, such a message would hand out the masked value in clear.
 *
 * So for those statements the server's text fields are filtered:
 * - the message (M) and hint (H) are kept when every part PostgreSQL quotes in them (values and names are quoted in
 *   its messages, by its style guide) appears in the statement's own text — the message then only repeats what the
 *   client sent (`column "emial" does not exist`, `invalid input syntax for type bigint: "abc"`) — and they show no
 *   raw bytes (encoding errors print data as `0x..`); otherwise they are withheld;
 * - the detail (D), context (W) and internal query (q, p) are always withheld: they show rows, JSON and XML input,
 *   and function bodies unquoted;
 * - the SQLSTATE, severity, position in the statement, and the catalog names of the object involved (schema, table,
 *   column, data type, constraint) are kept.
 *
 * @see https://www.postgresql.org/docs/current/error-style-guide.html#ERROR-STYLE-GUIDE-QUOTES
 * @see https://www.postgresql.org/docs/current/protocol-error-fields.html
 */
import type { ServerErrorFields } from '../wire/backend-messages.js';

/** Fields that may show values the statement read, whatever they look like. */
const ALWAYS_WITHHELD = ['D', 'W', 'q', 'p'] as const;

const QUOTED = /"([^"]*)"/g;
const RAW_BYTES = /0x[0-9a-f]{2}/i;

/**
 * The fields to send instead of `fields` (a server ErrorResponse or NoticeResponse answering a statement whose results
 * are masked, `statementText`), or undefined when they can be sent as they are.
 */
export function withheldServerMessage(fields: ServerErrorFields, statementText: string): ServerErrorFields | undefined {
  const statement = statementText.toLowerCase();
  const messageSafe = repeatsStatement(fields['M'] ?? '', statement);
  const hintSafe = fields['H'] === undefined || repeatsStatement(fields['H'], statement);
  if (messageSafe && hintSafe && ALWAYS_WITHHELD.every((field) => fields[field] === undefined)) return undefined;
  const kept: ServerErrorFields = { ...fields };
  for (const field of ALWAYS_WITHHELD) delete kept[field];
  if (!messageSafe) {
    kept['M'] = 'dbgate: the server\'s message is withheld: this statement reads columns that are masked for you, and the message could show their values';
    kept['H'] = `its SQLSTATE (${fields['C'] ?? '?'}) says what kind of error it was; run the statement without the masked columns to see the server's message`;
  } else if (!hintSafe) kept['H'] = 'dbgate: the server\'s hint is withheld (it could show masked values)';
  if (fields['D'] !== undefined || fields['W'] !== undefined) kept['D'] = 'dbgate: the detail and context are withheld (they could show masked values)';
  return kept;
}

/** Whether every quoted part of `text` appears in the statement (lower-cased) and `text` shows no raw bytes. */
function repeatsStatement(text: string, statement: string): boolean {
  if (RAW_BYTES.test(text)) return false;
  for (const [, quoted] of text.matchAll(QUOTED)) {
    if (!statement.includes(quoted!.toLowerCase())) return false;
  }
  return true;
}
