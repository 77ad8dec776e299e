/**
 * The README quickstart's first command, `npm run demo` (= `dbgate-gateway demo`), as a new user meets it: the dev
 * stack starts on its embedded PostgreSQL, alice signs in on the IdP's page in a real browser, psql runs through
 * `dbgate connect prod-orders` and sees masked data, and `\q` stops everything.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, signInOnIdpPage } from '../support/login.js';
import { eventually } from '../support/stack.js';

describe('npm run demo', () => {
  let browser: Browser;
  let stateDir: string;

  beforeAll(async () => {
    browser = await launchChromium();
    stateDir = await mkdtemp(join(tmpdir(), 'dbgate-demo-'));
  });

  afterAll(async () => {
    await browser?.close();
    await rm(stateDir, { recursive: true, force: true });
    // As root the embedded server's data lives beside the state dir, named after it (src/dev/embedded-postgres.ts).
    await rm(join(tmpdir(), `dbgate-dev-postgres-${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}`), { recursive: true, force: true });
  });

  it('signs alice in through the browser and opens psql on prod-orders with her PII masked', async () => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG') && !name.startsWith('DBGATE_')));
    const demo = spawn(process.execPath, ['bin/dbgate-gateway', 'demo', '--state', stateDir, '--browser'], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    demo.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    demo.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => demo.once('exit', resolve));
    try {
      expect(await eventually(async () => /http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/.test(stderr), 60_000), stderr).toBe(true);
      const url = /http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/.exec(stderr)![0];
      const page = await browser.newPage();
      await page.goto(url);
      await signInOnIdpPage(page, 'alice');
      await page.close();

      expect(await eventually(async () => stderr.includes('and \\q to finish'), 30_000), stderr).toBe(true);
      demo.stdin.end('select current_user as who, (select email from customers order by id limit 1) as email;\n\\q\n');
      expect(await exited).toBe(0);
      expect(stdout).toMatch(/dbgate_service \| k\*\*\*@example\.com/);
      expect(stdout).not.toContain('kimberly.lee1@example.com');
      expect(stderr).toContain('Sign in to dbgate in your browser');
    } finally {
      demo.kill('SIGKILL');
    }
  }, 180_000);
});
