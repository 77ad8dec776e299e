/**
 * What of a server error or notice a client whose results are masked gets to see (masking/server-messages.ts): the
 * parts that only repeat its own statement, never a value the statement read.
 */
import { describe, expect, it } from 'vitest';
import { withheldServerMessage } from '../../src/gateway/masking/server-messages.js';

const WITHHELD = /^dbgate: the server's message is withheld/;

describe('server messages answering masked statements', () => {
  it('passes messages that only quote the statement itself, whatever the case', () => {
    for (const [sql, message] of [
      ['select EMIAL from customers', 'column "emial" does not exist'],
      ["select * from customers where id = 'abc'", 'invalid input syntax for type bigint: "abc"'],
      ['select * from custmers', 'relation "custmers" does not exist'],
      ['select 1/0 from customers', 'division by zero'],
    ] as const) {
      expect(withheldServerMessage({ S: 'ERROR', V: 'ERROR', C: '42703', M: message, P: '8' }, sql), sql).toBeUndefined();
    }
  });

  it('withholds a message quoting anything the statement did not contain, keeping the SQLSTATE and position', () => {
    const fields = { S: 'ERROR', V: 'ERROR', C: '22P02', M: 'invalid input syntax for type integer: "kim.lee@example.com"', P: '8', R: 'pg_strtoint32_safe' };
    const withheld = withheldServerMessage(fields, 'select email::int from customers limit 1')!;
    expect(withheld['M']).toMatch(WITHHELD);
    expect(withheld['H']).toContain('22P02');
    expect(withheld).toMatchObject({ S: 'ERROR', V: 'ERROR', C: '22P02', P: '8', R: 'pg_strtoint32_safe' });
    expect(JSON.stringify(withheld)).not.toContain('kim.lee');
  });

  it('withholds what names a value as an object: ::regclass, current_setting(), role lookups', () => {
    for (const message of ['relation "kim.lee@example.com" does not exist', 'unrecognized configuration parameter "545-62-0535"',
      'role "Kim Lee" does not exist']) {
      expect(withheldServerMessage({ C: '42P01', M: message }, 'select email::regclass from customers')!['M']).toMatch(WITHHELD);
    }
  });

  it('withholds raw bytes even when everything quoted is in the statement', () => {
    const fields = { C: '22021', M: 'invalid byte sequence for encoding "UTF8": 0xe2 0x28' };
    expect(withheldServerMessage(fields, "select convert_from(secret, 'UTF8') from customers")!['M']).toMatch(WITHHELD);
  });

  it('always withholds detail, context and internal query: rows, JSON and XML input appear there unquoted', () => {
    const fields = {
      C: '23502', M: 'null value in column "name" of relation "customers" violates not-null constraint',
      D: 'Failing row contains (1, null, kim.lee@example.com, 545-62-0535).', W: 'JSON data, line 1: kim.lee@...',
      q: 'select secret', p: '3', s: 'public', t: 'customers', c: 'name', n: 'customers_name_not_null',
    };
    const withheld = withheldServerMessage(fields, 'update customers set name = null where id = 1')!;
    expect(withheld['M']).toBe(fields.M);
    expect(withheld['D']).toMatch(/^dbgate: the detail and context are withheld/);
    expect(withheld).not.toHaveProperty('W');
    expect(withheld).not.toHaveProperty('q');
    expect(withheld).not.toHaveProperty('p');
    expect(withheld).toMatchObject({ s: 'public', t: 'customers', c: 'name', n: 'customers_name_not_null' });
    expect(JSON.stringify(withheld)).not.toMatch(/kim\.lee|545-62/);
  });

  it('withholds a hint that quotes what the statement did not, and keeps the message', () => {
    const fields = { C: '42703', M: 'column "emial" does not exist', H: 'Perhaps you meant to reference the column "customers.email".' };
    const withheld = withheldServerMessage(fields, 'select emial from customers')!;
    expect(withheld['M']).toBe(fields.M);
    expect(withheld['H']).toMatch(/^dbgate: the server's hint is withheld/);
  });
});
