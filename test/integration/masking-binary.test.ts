/**
 * Masked results in binary format. pgjdbc, once a statement is prepared on the server (its 5th execution by default),
 * asks for integers, numerics, dates and times in binary: masked results must stay readable then. Masked columns of
 * text types are masked as in text format; masked columns of other types are NULL; columns of unknown lineage are
 * scanned on their decoded values, which must read exactly as PostgreSQL prints them.
 *
 * Real pgjdbc (Debian's libpostgresql-jdbc-java, run with the JDK's source launcher) against the shared dev gateway,
 * and the decoder against PostgreSQL's own binary output (read unmasked through the same gateway).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaryValueTexts } from '../../src/gateway/masking/result-masker.js';
import { parseRowDescription, readDataRowColumns } from '../../src/gateway/masking/row-messages.js';
import { RawClient } from '../support/raw-client.js';
import { mintCredential, sharedStack } from '../support/stack.js';

const run = promisify(execFile);
const JDBC_JAR = '/usr/share/java/postgresql.jar';
const PROGRAM = fileURLToPath(new URL('../support/jdbc/PreparedReads.java', import.meta.url));

/** Runs `sql` `times` times through pgjdbc as `user`; each output line split into its tab-separated fields. */
async function throughPgjdbc(user: string, groups: string[], sql: string, times: number): Promise<string[][]> {
  const { gateway } = sharedStack();
  const credential = await mintCredential(user, { groups });
  const url = `jdbc:postgresql://${gateway.pgHost}:${gateway.pgPort}/prod-orders?sslmode=disable&prepareThreshold=3`;
  const { stdout } = await run('java', ['-cp', JDBC_JAR, PROGRAM, url, user, credential, String(times), sql], { timeout: 60_000 });
  return stdout.trim().split('\n').map((line) => line.split('\t'));
}

describe('masked results in binary format', () => {
  it('has pgjdbc and a JDK to run it (installed by .ci/run)', () => {
    expect(existsSync(JDBC_JAR)).toBe(true);
  });

  it('pgjdbc reads masked results before and after it switches to binary, the same as an unmasked reader', async () => {
    const sql = 'select id, email, ssn, created_at, round(id * 1.5, 2) as ratio, array[name] as names, length(email) as n ' +
      'from customers where id = ?';
    const [masked, clear] = await Promise.all([
      throughPgjdbc('alice', ['engineering'], sql, 6),
      throughPgjdbc('bob', ['dba'], sql, 6),
    ]);
    expect(masked).toHaveLength(6);
    expect(clear).toHaveLength(6);
    masked.forEach((row, index) => {
      expect(row[1]).not.toMatch(/^ERROR/);
      const [, id, email, ssn, createdAt, ratio, names, length] = row;
      const [, clearId, clearEmail, , clearCreatedAt, clearRatio, clearNames] = clear[index]!;
      expect(email).toMatch(/^[a-z]\*\*\*@/);
      expect(email).not.toBe(clearEmail);
      expect(ssn).toMatch(/^\*\*\*\*\d{4}$/);
      expect(length).toBe('null');
      // What is not masked reads exactly as without masking, in binary as in text.
      expect([id, createdAt, ratio, names]).toEqual([clearId, clearCreatedAt, clearRatio, clearNames]);
      expect(ratio).toBe((Number(id) * 1.5).toFixed(2));
    });
  });

  describe('decoding binary values as PostgreSQL prints them', () => {
    // bob's results are not masked: the gateway forwards PostgreSQL's bytes as they are.
    let client: RawClient;

    beforeAll(async () => {
      const { gateway } = sharedStack();
      client = await RawClient.login({
        host: gateway.pgHost, port: gateway.pgPort, user: 'bob', database: 'prod-orders',
        password: await mintCredential('bob', { groups: ['dba'] }),
      });
    });

    afterAll(() => {
      client?.close();
    });

    /** Each value of `sql`'s first column in binary (its bytes, with its type) and as PostgreSQL's text. */
    async function bothWays(sql: string): Promise<Array<{ type: number; binary: Buffer; text: string }>> {
      const binary = await client.send([
        serialize.parse({ text: sql }), serialize.bind({ binary: true }), serialize.describe({ type: 'P' }),
        serialize.execute({}), serialize.sync(),
      ]);
      expect(binary.errors).toEqual([]);
      const type = parseRowDescription(binary.messages.find((message) => message.type === 'T')!.body)[0]!.typeOid;
      const values = binary.messages.filter((message) => message.type === 'D').map((message) => readDataRowColumns(message.body)[0]!);
      const text = await client.query(`select v::text from (${sql}) q(v)`);
      return values.map((value, index) => ({ type, binary: value!, text: text.rows[index]![0]! }));
    }

    it.each([
      ['numeric', `select v from unnest(array[0, 1, -1, 12345.678, 0.0001, -0.000123, 10000, 99990000, 4111111111111111,
        123456789012345678901234567890.5, 1e-20, 'NaN', 'Infinity', '-Infinity', 100.00, 0.10]::numeric[]) v`],
      ['bigint', 'select v from unnest(array[0, -1, 9223372036854775807, -9223372036854775808, 4111111111111111]::int8[]) v'],
      ['integer', 'select v from unnest(array[0, -2147483648, 2147483647, 123456789]::int4[]) v'],
      ['smallint', 'select v from unnest(array[0, -32768, 32767]::int2[]) v'],
      ['oid', 'select v from unnest(array[0, 4294967295]::oid[]) v'],
    ])('%s', async (_type, sql) => {
      for (const { type, binary, text } of await bothWays(sql)) {
        expect(binaryValueTexts(binary, 0, binary.length, type)).toEqual([text]);
      }
    });

    it('arrays: the texts of their elements, NULLs skipped, in every dimension', async () => {
      const cases: Array<[string, string[]]> = [
        ["select array['ada@example.com', null, 'x']::text[]", ['ada@example.com', 'x']],
        ["select array['a'::varchar, 'b']", ['a', 'b']],
        ['select array[[1, 2], [3, 4]]::int4[]', ['1', '2', '3', '4']],
        ['select array[1.50, null, -2]::numeric[]', ['1.50', '-2']],
        ["select '{}'::int8[]", []],
      ];
      for (const [sql, expected] of cases) {
        const [{ type, binary }] = (await bothWays(sql)) as unknown as [{ type: number; binary: Buffer }];
        expect(binaryValueTexts(binary, 0, binary.length, type)).toEqual(expected);
      }
    });

    it('floats: the same numbers', async () => {
      for (const { type, binary, text } of await bothWays("select v from unnest(array[0, 1.5, -2.25, 4111111111111111, 1e-5]::float8[]) v")) {
        expect(Number(binaryValueTexts(binary, 0, binary.length, type)[0])).toBe(Number(text));
      }
    });
  });
});
