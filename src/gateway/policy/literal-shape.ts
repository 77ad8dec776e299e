/**
 * The literal shape of a statement text: the text with each literal token replaced by a marker of its kind, found by
 * one pass over the characters. The decision cache (decision-cache.ts) uses it to find PostgreSQL's normalisation of
 * a text (libpg_query's `normalize`, constants → `$n`) without calling normalize, which costs a few microseconds of
 * WASM per statement: once normalize has turned one text of a shape into exactly "the shape with its markers replaced,
 * in order, by `$1` … `$n`" (the verification), every text of that shape normalises to that very text.
 *
 * Why verification makes the shortcut sound — the PostgreSQL facts it rests on (src/backend/parser/scan.l, gram.y,
 * parser.c; libpg_query's pg_query_normalize.c):
 *
 * 1. Within the accepted subset below, every literal token this scanner finds is exactly one token of PostgreSQL's
 *    scanner, of a kind fixed by the marker:
 *    - digits with an optional `.digits`, not followed by a letter, `_`, `.` or digit, are one numeric token. An
 *      integer is ICONST only when it fits an int32 (`process_integer_literal`: strtoint, leading zeros allowed);
 *      otherwise, like any decimal, it is FCONST. The markers keep the two apart, because the grammar and normalize
 *      treat them differently (`ORDER BY 2147483647` keeps its position, `ORDER BY 2147483648` is a constant).
 *    - `'…'` holding no quote and no backslash is one SCONST whatever `standard_conforming_strings` says (only
 *      backslashes differ between the two settings). A string followed by whitespace containing a newline and then
 *      another quote continues as the same token (`'a'\n'b'` is one SCONST): such texts are refused. A quote after
 *      an identifier character or `&` would start an E'', B'', X'', N'' or U&'' literal: refused too.
 *    The characters between literal tokens are copied verbatim into the key, so two texts with the same key have the
 *    same tokens between their literals (identifiers and keywords by their text, operators by their characters:
 *    no literal starts with an operator character, so no operator token reaches into a literal).
 * 2. Hence two texts with the same key have the same token sequence but for the values of literals of the same
 *    kinds. Bison's decisions and the lookahead in parser.c's `base_yylex` (NOT, NULLS, WITH, FORMAT, …) depend only
 *    on token types and keyword text, so both texts reduce through the same rules to the same raw parse tree but for
 *    constant values. The actions that do look at a value (`float(p)` picks float4 or float8, `FETCH 5` keeps a
 *    count) keep it out of the A_Consts normalize replaces, so no shape with a literal there ever verifies.
 * 3. Normalize replaces the constants it records from that tree (A_Const locations and a few statement fields, all
 *    chosen by node type; the GROUP BY matching compares fingerprints, which leave constants out; ORDER BY and GROUP
 *    BY skip integer constants, by kind), each by the token the scanner finds at its location (with a leading minus
 *    for negative numbers), numbered in the order of the walk. So it replaces the same positions, numbered the same,
 *    in every text of a shape.
 * 4. Verification: the normalised text equals the key with its markers replaced by `$1` … `$n`, each number once,
 *    in whatever order normalize's walk numbered them. The key holds no `$` and every literal starts with a digit
 *    or a quote, so a replacement starting before a literal would put a `$` where the key has none, and one
 *    starting after it would leave that digit or quote where the key says `$`: the k-th replacement starts where
 *    the k-th literal does, and, both being the token the scanner finds there, ends where it does; no digit follows
 *    a marker, so its number ends there. By induction normalize replaced exactly the literal tokens, each with a
 *    number of its own, and changed nothing else. By 2 and 3 it does the same for every text of the shape, numbered
 *    the same way (the walk is the same): the same normalised text. A shape whose normalisation uses a number twice
 *    (a GROUP BY expression matched to a select-list one) does not verify.
 *
 * Shapes that fail verification simply keep calling normalize: negative numbers (`= -1`: normalize replaces `-1`,
 * sign included, so `-$1` ≠ `$1`), booleans and NULL (constants normalize replaces where the key kept the keyword),
 * positions (`ORDER BY 2`), type modifiers (`varchar(10)`), duplicated parameters (a GROUP BY expression that
 * repeats a select-list one), identifiers that SET turns into constants (`SET search_path TO 'a', public` →
 * `SET search_path TO $1, $2`).
 * test/unit/literal-shape-normalize.test.ts checks the property against the real normalize on random literals.
 *
 * @see https://github.com/postgres/postgres/blob/master/src/backend/parser/scan.l
 * @see https://github.com/pganalyze/libpg_query/blob/main/src/pg_query_normalize.c
 */

/** A statement text with its literal tokens replaced by markers, and how many there are. */
export interface LiteralShape {
  key: string;
  literals: number;
}

/**
 * The markers: control characters, which the accepted subset refuses everywhere, so a marker in a key is always a
 * literal.
 */
const INTEGER_MARKER = '\u0001';
const OTHER_NUMERIC_MARKER = '\u0002';
const STRING_MARKER = '\u0003';
const INTEGER_MARKER_CODE = INTEGER_MARKER.charCodeAt(0);
const OTHER_NUMERIC_MARKER_CODE = OTHER_NUMERIC_MARKER.charCodeAt(0);
const STRING_MARKER_CODE = STRING_MARKER.charCodeAt(0);

const enum Char {
  Tab = 0x09,
  LineFeed = 0x0a,
  CarriageReturn = 0x0d,
  Space = 0x20,
  DoubleQuote = 0x22,
  Dollar = 0x24,
  Quote = 0x27,
  LeftParenthesis = 0x28,
  Asterisk = 0x2a,
  Comma = 0x2c,
  Minus = 0x2d,
  Dot = 0x2e,
  Slash = 0x2f,
  Zero = 0x30,
  Nine = 0x39,
  LessThan = 0x3c,
  Equals = 0x3d,
  GreaterThan = 0x3e,
  UpperA = 0x41,
  UpperZ = 0x5a,
  LeftBracket = 0x5b,
  Backslash = 0x5c,
  Underscore = 0x5f,
  LowerA = 0x61,
  LowerZ = 0x7a,
  VerticalBar = 0x7c,
  Tilde = 0x7e,
  /** Characters from here on are not ASCII. */
  FirstNonAscii = 0x80,
}

/** What the scanner does with a character outside string literals. */
const enum CharClass {
  /** Leaves the subset: control and non-ASCII characters, `"` (quoted identifiers), `$`, `\`. */
  Refused,
  /** Copied into the key: whitespace, operators, punctuation. */
  Verbatim,
  /** Starts an identifier or keyword (letters and `_`); with digits, continues one. */
  Letter,
  Digit,
  Quote,
  /** `-` and `/`: copied into the key, unless they start a comment (`--`, `/*`). */
  CommentStart,
}

/** The class of each ASCII character (tab, newline, carriage return and printable ones; the rest is refused). */
const CHAR_CLASSES = (() => {
  const classes = new Uint8Array(Char.FirstNonAscii).fill(CharClass.Refused);
  for (const c of [Char.Tab, Char.LineFeed, Char.CarriageReturn]) classes[c] = CharClass.Verbatim;
  classes.fill(CharClass.Verbatim, Char.Space, Char.Tilde + 1);
  classes.fill(CharClass.Letter, Char.UpperA, Char.UpperZ + 1);
  classes.fill(CharClass.Letter, Char.LowerA, Char.LowerZ + 1);
  classes[Char.Underscore] = CharClass.Letter;
  classes.fill(CharClass.Digit, Char.Zero, Char.Nine + 1);
  classes[Char.Quote] = CharClass.Quote;
  for (const c of [Char.DoubleQuote, Char.Dollar, Char.Backslash]) classes[c] = CharClass.Refused;
  classes[Char.Minus] = CharClass.CommentStart;
  classes[Char.Slash] = CharClass.CommentStart;
  return classes;
})();

/** The largest ICONST: PostgreSQL scans a larger integer as FCONST. */
const INT32_MAX_DIGITS = '2147483647';

/**
 * The literal shape of `sql`, or undefined when the text has no literal or leaves the subset this scanner is sure
 * to tokenize as PostgreSQL does (see the module comment): then the caller asks normalize.
 */
export function literalShape(sql: string): LiteralShape | undefined {
  const length = sql.length;
  let key = '';
  let copiedUpTo = 0;
  let literals = 0;
  let i = 0;
  while (i < length) {
    const c = sql.charCodeAt(i);
    switch (classOf(c)) {
      case CharClass.Verbatim:
        i += 1;
        break;
      case CharClass.Letter:
        // Keywords and identifiers, digits included (`a1` is one identifier, not `a` and a number).
        i += 1;
        while (i < length && isIdentifierPart(sql.charCodeAt(i))) i += 1;
        break;
      case CharClass.Digit: {
        // `.5` is a number the subset leaves out; after an identifier character a digit belongs to the identifier.
        if (i > 0 && (sql.charCodeAt(i - 1) === Char.Dot || isIdentifierPart(sql.charCodeAt(i - 1)))) return undefined;
        const start = i;
        i = skipDigits(sql, i);
        let integer = true;
        if (sql.charCodeAt(i) === Char.Dot) {
          // `1.` and `1..2` are left out; `1.5` is one FCONST.
          if (!isDigit(sql.charCodeAt(i + 1))) return undefined;
          i = skipDigits(sql, i + 1);
          integer = false;
        }
        // Exponents, hexadecimal, underscores, trailing junk (`1e5`, `0x1F`, `1_000`, `123abc`), `1.5.3`: left out.
        if (isIdentifierPart(sql.charCodeAt(i)) || sql.charCodeAt(i) === Char.Dot) return undefined;
        const marker = integer && fitsInt32(sql, start, i) ? INTEGER_MARKER : OTHER_NUMERIC_MARKER;
        key += sql.slice(copiedUpTo, start) + marker;
        copiedUpTo = i;
        literals += 1;
        break;
      }
      case CharClass.Quote: {
        // After an identifier character or `&` a quote opens E'', B'', X'', N'' or U&'': left out.
        if (i > 0 && !mayPrecedeString(sql.charCodeAt(i - 1))) return undefined;
        const start = i;
        i += 1;
        while (i < length && sql.charCodeAt(i) !== Char.Quote) {
          if (!mayBeInString(sql.charCodeAt(i))) return undefined;
          i += 1;
        }
        if (i === length) return undefined; // unterminated
        i += 1;
        // `''` inside a string (`'it''s'`) and a continuation on the next line (`'a'\n'b'`) make a longer token.
        if (sql.charCodeAt(i) === Char.Quote || continuesOnNextLine(sql, i)) return undefined;
        key += sql.slice(copiedUpTo, start) + STRING_MARKER;
        copiedUpTo = i;
        literals += 1;
        break;
      }
      case CharClass.CommentStart: {
        // A comment may also sit inside what PostgreSQL takes for an operator (`*/* … */`): left out wherever it is.
        const next = sql.charCodeAt(i + 1);
        if ((c === Char.Minus && next === Char.Minus) || (c === Char.Slash && next === Char.Asterisk)) return undefined;
        i += 1;
        break;
      }
      default:
        return undefined;
    }
  }
  if (literals === 0) return undefined;
  return { key: key + sql.slice(copiedUpTo), literals };
}

/**
 * Whether `normalized` is what normalize gives for a text of this shape when it replaces exactly its literal tokens:
 * the key with each marker replaced by a parameter `$k`, every k from 1 to the number of literals once, in any order
 * (normalize numbers in the order of its tree walk, which the shape fixes: `LIMIT 10 OFFSET 5` → `LIMIT $2 OFFSET
 * $1`). Such a normalised text verifies the shape (see the module comment).
 */
export function isNormalizationOf(normalized: string, shape: LiteralShape): boolean {
  const { key, literals } = shape;
  const numbered = new Uint8Array(literals + 1);
  let at = 0;
  for (let i = 0; i < key.length; i += 1) {
    const c = key.charCodeAt(i);
    if (c !== INTEGER_MARKER_CODE && c !== OTHER_NUMERIC_MARKER_CODE && c !== STRING_MARKER_CODE) {
      if (normalized.charCodeAt(at) !== c) return false;
      at += 1;
      continue;
    }
    if (normalized.charCodeAt(at) !== Char.Dollar || normalized.charCodeAt(at + 1) === Char.Zero) return false;
    at += 1;
    let number = 0;
    const start = at;
    while (isDigit(normalized.charCodeAt(at)) && at - start < 6) number = number * 10 + normalized.charCodeAt(at++) - Char.Zero;
    // Nothing in a key follows a marker with a digit (module comment, 4), so the number ends here.
    if (at === start || isDigit(normalized.charCodeAt(at)) || number > literals || numbered[number] === 1) return false;
    numbered[number] = 1;
  }
  return at === normalized.length;
}

/** The class of a character code; NaN (past the end of the text) and non-ASCII codes are refused. */
function classOf(c: number): CharClass {
  return c < Char.FirstNonAscii ? (CHAR_CLASSES[c] as CharClass) : CharClass.Refused;
}

function isDigit(c: number): boolean {
  return c >= Char.Zero && c <= Char.Nine;
}

function isIdentifierPart(c: number): boolean {
  const charClass = classOf(c);
  return charClass === CharClass.Letter || charClass === CharClass.Digit;
}

/** Inside a string literal: printable ASCII, space, tab, newline and carriage return, but no backslash. */
function mayBeInString(c: number): boolean {
  return (
    ((c >= Char.Space && c <= Char.Tilde) || c === Char.Tab || c === Char.LineFeed || c === Char.CarriageReturn) &&
    c !== Char.Backslash
  );
}

function isWhitespace(c: number): boolean {
  return c === Char.Space || c === Char.Tab || c === Char.LineFeed || c === Char.CarriageReturn;
}

/** Characters after which a quote can only open a plain string constant. */
function mayPrecedeString(c: number): boolean {
  return (
    isWhitespace(c) ||
    c === Char.LeftParenthesis ||
    c === Char.Comma ||
    c === Char.Equals ||
    c === Char.LessThan ||
    c === Char.GreaterThan ||
    c === Char.VerticalBar ||
    c === Char.LeftBracket
  );
}

function skipDigits(sql: string, from: number): number {
  let i = from;
  while (i < sql.length && isDigit(sql.charCodeAt(i))) i += 1;
  return i;
}

/** Whether the integer `sql[start, end)` is at most 2147483647 (scan.l makes it ICONST then, FCONST otherwise). */
function fitsInt32(sql: string, start: number, end: number): boolean {
  let first = start;
  while (first < end - 1 && sql.charCodeAt(first) === Char.Zero) first += 1;
  const digits = end - first;
  if (digits !== INT32_MAX_DIGITS.length) return digits < INT32_MAX_DIGITS.length;
  // Digit strings of the same length compare as their values do.
  return sql.slice(first, end) <= INT32_MAX_DIGITS;
}

/**
 * Whether a string constant ending before `from` continues: scan.l's `quotecontinue` joins two quoted strings
 * separated by whitespace that includes a newline (`\n` or `\r`) into one token. Comments, which may also sit in
 * that whitespace, are refused by the scanner anyway.
 */
function continuesOnNextLine(sql: string, from: number): boolean {
  let newline = false;
  let i = from;
  while (i < sql.length && isWhitespace(sql.charCodeAt(i))) {
    const c = sql.charCodeAt(i);
    if (c === Char.LineFeed || c === Char.CarriageReturn) newline = true;
    i += 1;
  }
  return newline && sql.charCodeAt(i) === Char.Quote;
}
