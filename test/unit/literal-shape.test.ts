/**
 * The literal-shape scanner: it marks literal tokens only where it is sure PostgreSQL's scanner sees the same token of
 * the same kind, and gives up on everything else (the decision cache then asks libpg_query's normalize).
 */
import { describe, expect, it } from 'vitest';
import { isNormalizationOf, literalShape } from '../../src/gateway/policy/literal-shape.js';

const INT = '\u0001';
const NUM = '\u0002';
const STR = '\u0003';

describe('literalShape', () => {
  it.each([
    ['SELECT abalance FROM pgbench_accounts WHERE aid = 4711;', `SELECT abalance FROM pgbench_accounts WHERE aid = ${INT};`],
    ["SELECT 'abc', 1.5, 2147483647, 2147483648, 007, 0", `SELECT ${STR}, ${NUM}, ${INT}, ${NUM}, ${INT}, ${INT}`],
    ['SELECT 0002147483647, 0002147483648, 9999999999, 10000000000', `SELECT ${INT}, ${NUM}, ${NUM}, ${NUM}`],
    ['SELECT a1, t2.c3 FROM t2 WHERE c3 = 1', `SELECT a1, t2.c3 FROM t2 WHERE c3 = ${INT}`],
    ["'a'", STR],
    ["SELECT ('a'),'b',x='c',x<'d',x>'e',x||'f',ARRAY['g']", `SELECT (${STR}),${STR},x=${STR},x<${STR},x>${STR},x||${STR},ARRAY[${STR}]`],
    ["SELECT\t'a',\n'b',\r'c'", `SELECT\t${STR},\n${STR},\r${STR}`],
    ["SELECT 'a $1 \"b\" -- c /* d */ e;', ''", `SELECT ${STR}, ${STR}`],
    ["SELECT 'a' 'b'", `SELECT ${STR} ${STR}`],
    ['SELECT * FROM t WHERE x = -1', `SELECT * FROM t WHERE x = -${INT}`],
    ["SELECT '1'::int, x::varchar(10)", `SELECT ${STR}::int, x::varchar(${INT})`],
    ["SELECT ARRAY[1,2], interval '1 day', date '2020-01-01'", `SELECT ARRAY[${INT},${INT}], interval ${STR}, date ${STR}`],
    [
      'SELECT 1 - 1 * 2 / 3 % 4 ^ 5, 6!, ~7, @8, a <> 9 ? b # c & d {} : e ` f',
      `SELECT ${INT} - ${INT} * ${INT} / ${INT} % ${INT} ^ ${INT}, ${INT}!, ~${INT}, @${INT}, a <> ${INT} ? b # c & d {} : e \` f`,
    ],
  ])('marks the literals of %j', (sql, key) => {
    const shape = literalShape(sql);
    expect(shape?.key).toBe(key);
    expect(shape?.literals).toBe([...key].filter((c) => c <= STR).length);
  });

  it.each([
    ['no literal at all', 'SELECT a FROM t'],
    ['an empty text', ''],
    ['a non-ASCII character in a string', "SELECT 'é'"],
    ['a non-ASCII identifier', 'SELECT 1 AS é'],
    ['DEL', 'SELECT 1\u007f'],
    ['NUL', 'SELECT 1\u0000'],
    ['a form feed', 'SELECT\f1'],
    ['a vertical tab', 'SELECT\v1'],
    ['a control character that would look like a marker', `SELECT 1, ${INT}`],
    ['a parameter', 'SELECT $1, 2'],
    ['a dollar-quoted string', 'SELECT $$a$$, 1'],
    ['a tagged dollar-quoted string', 'SELECT $q$a$q$, 1'],
    ['a dollar inside an identifier', 'SELECT a$b, 1'],
    ['a quoted identifier', 'SELECT "a", 1'],
    ['a backslash in a string', "SELECT 'a\\b'"],
    ['a backslash outside a string', 'SELECT 1 \\gset'],
    ['a line comment', 'SELECT 1 -- c'],
    ['a block comment', 'SELECT /* c */ 1'],
    ['a block comment glued to an operator', 'SELECT 2 */* c */ 1'],
    ['a number starting with a dot', 'SELECT .5'],
    ['a number ending with a dot', 'SELECT 1.'],
    ['a range-like number', 'SELECT 1..2'],
    ['a number after a dot', 'SELECT t.1'],
    ['an exponent', 'SELECT 1e5'],
    ['an upper-case exponent', 'SELECT 1.5E5'],
    ['a hexadecimal integer', 'SELECT 0x1F'],
    ['an octal integer', 'SELECT 0o17'],
    ['a binary integer', 'SELECT 0b101'],
    ['an underscore in a number', 'SELECT 1_000'],
    ['two dots in a number', 'SELECT 1.5.3'],
    ['trailing junk after a number', 'SELECT 123abc'],
    ['a doubled quote in a string', "SELECT 'it''s'"],
    ['a string followed by a quote', "SELECT ''''"],
    ['an escape string', "SELECT E'a'"],
    ['a bit string', "SELECT B'101'"],
    ['a hexadecimal bit string', "SELECT X'1F'"],
    ['a national string', "SELECT N'a'"],
    ['a Unicode-escape string', "SELECT U&'a'"],
    ['a typed literal without a space', "SELECT date'2020-01-01'"],
    ['a string right after a number', "SELECT 1'a'"],
    ['a string after a colon', "SELECT x:'a'"],
    ['a string after a closing parenthesis', "SELECT (x)'a'"],
    ['an unterminated string', "SELECT 'a"],
    ['a string continued on the next line', "SELECT 'a'\n'b'"],
    ['a string continued after a carriage return', "SELECT 'a'\r'b'"],
    ['a string continued after spaces and a newline', "SELECT 'a'  \n\t 'b'"],
  ])('gives up on %s', (_why, sql) => {
    expect(literalShape(sql)).toBeUndefined();
  });

  it('gives texts that differ only in literal values of the same kind the same key', () => {
    const keys = (literals: string[]): Set<string | undefined> =>
      new Set(literals.map((literal) => literalShape(`SELECT * FROM t WHERE a = ${literal}`)?.key));
    expect(keys(['1', '2147483647', '007']).size).toBe(1);
    expect(keys(['2147483648', '99999999999999999999', '0.5']).size).toBe(1);
    expect(keys(["'x'", "''", "'hello, -- world'"]).size).toBe(1);
    expect(keys(['1'])).not.toContain(undefined);
  });

  it('gives different keys to different layouts and to integer, other numeric and string literals', () => {
    const texts = [
      'SELECT * FROM t WHERE a = 1',
      'SELECT * FROM t WHERE a =  1',
      'SELECT * FROM t WHERE a =\n1',
      'SELECT * FROM t WHERE a = 1 ',
      'SELECT * FROM t WHERE a = 2147483648',
      "SELECT * FROM t WHERE a = '1'",
    ];
    const keys = texts.map((sql) => literalShape(sql)?.key);
    expect(keys).not.toContain(undefined);
    expect(new Set(keys).size).toBe(texts.length);
    // An integer too large for int32 is FCONST, like a decimal: one kind.
    expect(literalShape('SELECT * FROM t WHERE a = 1.5')?.key).toBe(literalShape('SELECT * FROM t WHERE a = 2147483648')?.key);
    expect(literalShape("SELECT 'a' 'b'")?.key).not.toBe(literalShape("SELECT 'a'\n'b'")?.key);
  });
});

describe('isNormalizationOf', () => {
  const shape = { key: `SELECT ${INT}, ${NUM}, ${STR} FROM t`, literals: 3 };

  it('accepts the key with one parameter of its own for each marker, in any order', () => {
    expect(isNormalizationOf('SELECT $1, $2, $3 FROM t', shape)).toBe(true);
    expect(isNormalizationOf('SELECT $3, $1, $2 FROM t', shape)).toBe(true);
    const eleven = literalShape(`SELECT ${Array.from({ length: 11 }, (_, i) => i).join(', ')}`)!;
    expect(isNormalizationOf('SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11', eleven)).toBe(true);
    expect(isNormalizationOf('SELECT $11, $2, $3, $4, $5, $6, $7, $8, $9, $10, $1', eleven)).toBe(true);
  });

  it.each([
    ['a number used twice', 'SELECT $1, $1, $3 FROM t'],
    ['a number out of range', 'SELECT $1, $2, $4 FROM t'],
    ['$0 and leading zeros', 'SELECT $0, $1, $2 FROM t'],
    ['a leading zero', 'SELECT $01, $2, $3 FROM t'],
    ['a literal left in place', "SELECT $1, $2, 'x' FROM t"],
    ['a parameter where the key has text', 'SELECT $1, $2, $3 FROM $4'],
    ['other text', 'SELECT $1, $2, $3 FROM u'],
    ['a missing tail', 'SELECT $1, $2, $3'],
    ['an extra tail', 'SELECT $1, $2, $3 FROM t;'],
    ['a sign folded into the constant', 'SELECT $1, $2, -$3 FROM t'],
  ])('rejects %s', (_, normalized) => {
    expect(isNormalizationOf(normalized, shape)).toBe(false);
  });
});
