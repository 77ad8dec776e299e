/**
 * `dbgate --help` starts fast because it loads no command's dependencies, and every command's help ends with examples.
 * The load check runs the real executable (bin/dbgate, built into dist/) under a preload that records every module
 * the process loads.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { captureContext } from '../support/capture-context.js';

/** What a bare `dbgate --help` must not pay for: the live view, the SQL parser, the OIDC client, the PostgreSQL client. */
const HEAVY_PACKAGES = ['ink', 'react', 'libpg-query', 'openid-client', 'pg'];


let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'dbgate-help-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** The packages (from HEAVY_PACKAGES) that `node bin/dbgate <args>` loaded. */
async function heavyPackagesLoadedBy(args: string[]): Promise<string[]> {
  const log = join(scratch, `modules-${args.join('-').replace(/\W+/g, '_')}.log`);
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', './test/support/record-module-loads.mjs', 'bin/dbgate', ...args], {
      env: { ...process.env, DBGATE_TEST_MODULE_LOG: log },
      stdio: 'ignore',
    });
    child.once('error', reject);
    child.once('exit', resolve);
  });
  expect(code).toBe(0);
  const loaded = (await readFile(log, 'utf8')).split('\n');
  return HEAVY_PACKAGES.filter((name) => loaded.some((entry) => entry.includes(`/node_modules/${name}/`)));
}

describe('dbgate --help', () => {
  it('loads none of ink, react, libpg-query, openid-client or pg', async () => {
    expect(await heavyPackagesLoadedBy(['--help'])).toEqual([]);
    expect(await heavyPackagesLoadedBy(['--version'])).toEqual([]);
  });

  it('is checked by a recorder that does see them when a command needs them', async () => {
    // Without this the test above could pass because the recorder records nothing.
    expect(await heavyPackagesLoadedBy(['query', '--help'])).toEqual(expect.arrayContaining(['openid-client', 'pg']));
  });

  it('lists every command with its summary, the environment variables and the exit codes', async () => {
    const context = captureContext();
    expect(await main(['--help'], context)).toBe(0);
    const help = context.out();
    for (const command of ['login', 'status|whoami', 'token', 'logout', 'targets', 'connect', 'query', 'completion']) {
      expect(help).toMatch(new RegExp(`^  ${command.replace('|', '\\|')} +\\S`, 'm'));
    }
    expect(help).not.toContain('__complete');
    expect(help).toContain('DBGATE_CREDENTIAL');
    expect(help).toContain('5 denied by policy, 6 pending approval');
  });
});

describe('--help of every command', () => {
  for (const command of ['login', 'status', 'token', 'logout', 'connect', 'targets', 'query', 'completion']) {
    it(`dbgate ${command} --help shows examples that use the command`, async () => {
      const context = captureContext();
      expect(await main([command, '--help'], context)).toBe(0);
      const help = context.out();
      expect(help).toMatch(/^Examples?:$/m);
      expect(help.slice(help.search(/^Examples?:$/m))).toMatch(new RegExp(`dbgate ${command}\\b`));
      expect(context.err()).toBe('');
    });
  }

  it('dbgate help query shows the same help as dbgate query --help', async () => {
    const viaHelp = captureContext();
    const viaFlag = captureContext();
    expect(await main(['help', 'query'], viaHelp)).toBe(0);
    expect(await main(['query', '--help'], viaFlag)).toBe(0);
    expect(viaHelp.out()).toBe(viaFlag.out());
  });

  it('an unknown command is a usage error (exit 2) that suggests the nearest one', async () => {
    const context = captureContext();
    expect(await main(['targts'], context)).toBe(2);
    expect(context.err()).toContain('(Did you mean targets?)');
  });
});
