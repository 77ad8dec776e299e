/**
 * The dev gateway's certificate and key are created as one pair even when several dev stacks start at once on a
 * new state dir (parallel CI jobs, two terminals): whichever finishes first wins, the others keep its pair.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureTlsPair } from '../../src/dev/dev-stack.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function stateDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dbgate-tls-pair-'));
  dirs.push(dir);
  await mkdir(join(dir, 'tls'), { mode: 0o700 });
  return dir;
}

async function expectOnePair(dir: string): Promise<void> {
  const certificate = new X509Certificate(await readFile(join(dir, 'tls', 'gateway.crt')));
  expect(certificate.checkPrivateKey(createPrivateKey(await readFile(join(dir, 'tls', 'gateway.key'))))).toBe(true);
  expect(((await stat(join(dir, 'tls', 'gateway.key'))).mode & 0o777).toString(8)).toBe('600');
  expect(((await stat(join(dir, 'tls'))).mode & 0o777).toString(8)).toBe('700');
  expect((await readdir(dir)).sort()).toEqual(['tls']);
}

describe('the dev TLS pair', () => {
  it('is one pair after eight dev stacks created it at once', async () => {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const dir = await stateDir();
      await Promise.all(Array.from({ length: 8 }, () => ensureTlsPair(dir)));
      await expectOnePair(dir);
    }
  });

  it('is kept as it is once it exists', async () => {
    const dir = await stateDir();
    await ensureTlsPair(dir);
    const before = await readFile(join(dir, 'tls', 'gateway.crt'), 'utf8');
    await ensureTlsPair(dir);
    expect(await readFile(join(dir, 'tls', 'gateway.crt'), 'utf8')).toBe(before);
  });

  it('is made again when half of it is missing', async () => {
    const dir = await stateDir();
    await writeFile(join(dir, 'tls', 'gateway.crt'), 'a certificate whose key was deleted');
    await ensureTlsPair(dir);
    await expectOnePair(dir);
  });
});
