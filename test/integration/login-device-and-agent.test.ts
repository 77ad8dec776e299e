/**
 * The other ways in, against the shared dev gateway's real IdP: the device flow (RFC 8628) confirmed in headless
 * Chromium, an agent's client credentials, and an agent acting for a person through token exchange (RFC 8693) —
 * whose credential, and every audit record it causes, names both.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as oidc from 'openid-client';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/cli/commands/status.js';
import { directClient, eventually, sharedStack } from '../support/stack.js';
import {
  claimsOf,
  cliHarness,
  dbgate,
  devIdp,
  fileSecrets,
  launchChromium,
  runProcess,
  signInOnIdpPage,
} from '../support/login.js';

let browser: Browser;
let dir: string;

beforeAll(async () => {
  browser = await launchChromium();
  dir = await mkdtemp(join(tmpdir(), 'dbgate-login-device-'));
});

afterAll(async () => {
  await browser?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Starts `dbgate login --device` in-process; resolves with the printed URL, user code and the running login. */
async function startDeviceLogin(configDir: string) {
  const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: configDir });
  const login = dbgate(['login', '--device', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage'], harness);
  const [, url] = await harness.waitFor(/To sign in, open this URL on any device:\n {2}(http\S+)\n/);
  const [, userCode] = await harness.waitFor(/confirm that it shows the code: (\S+)\n/);
  return { harness, login, url: url!, userCode: userCode! };
}

async function status(configDir: string, env: NodeJS.ProcessEnv = {}): Promise<StatusReport> {
  const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: configDir, ...env });
  expect(await dbgate(['status', '--json'], harness), harness.stderr()).toBe(0);
  return JSON.parse(harness.stdout()) as StatusReport;
}

describe('dbgate login --device', () => {
  it('prints the verification URL and the code; confirmed in a browser, it signs bob in', async () => {
    const configDir = join(dir, 'device');
    const { harness, login, url, userCode } = await startDeviceLogin(configDir);
    expect(url).toBe(`${devIdp().issuer}/device?user_code=${userCode}`);
    expect(harness.stderr()).toContain(`(or open ${devIdp().issuer}/device and enter the code)`);

    const page = await browser.newPage();
    await page.goto(url);
    // The confirmation page shows the code the terminal printed; only then does the person continue.
    expect(await page.textContent('code')).toBe(userCode);
    await Promise.all([page.waitForNavigation(), page.click('button:not([name=abort])')]);
    await signInOnIdpPage(page, 'bob');
    expect(await page.textContent('body')).toContain('You are signed in');
    await page.close();

    expect(await login, harness.stderr()).toBe(0);
    expect(harness.stderr()).toContain('Logged in to');
    expect(await status(configDir)).toMatchObject({
      logged_in: true,
      identity: { subject: 'bob', groups: ['dba'], kind: 'human', actors: [] },
      login_method: 'device',
      storage: 'file',
      renewable: true,
    });
  });

  it('ends with a clear message when the person aborts on the confirmation page (access_denied)', async () => {
    const configDir = join(dir, 'device-denied');
    const { harness, login, url } = await startDeviceLogin(configDir);
    const page = await browser.newPage();
    await page.goto(url);
    await Promise.all([page.waitForNavigation(), page.click('button[name=abort]')]);
    await page.close();
    expect(await login).toBe(1);
    expect(harness.stderr()).toContain('dbgate: login failed: the sign-in was denied in the browser');
  });
});

describe('dbgate login --client-credentials (agents)', () => {
  const agentEnv = (): NodeJS.ProcessEnv => ({
    DBGATE_CLIENT_ID: devIdp().agentClientId,
    DBGATE_CLIENT_SECRET: devIdp().agentClientSecret,
  });

  it('logs report-bot in as an agent', async () => {
    const configDir = join(dir, 'agent');
    const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: configDir, ...agentEnv() });
    expect(await dbgate(['login', '--client-credentials', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage'], harness), harness.stderr()).toBe(0);
    expect(await status(configDir, agentEnv())).toMatchObject({
      logged_in: true,
      identity: { subject: 'report-bot', kind: 'agent', groups: ['agents'], actors: [] },
      login_method: 'client_credentials',
      renewable: true,
    });
    // Without its secrets in the environment, the agent's login cannot renew itself; status says so.
    expect((await status(configDir)).renewable).toBe(false);
  });

  it('renews an agent login by logging the agent in again when the credential is about to expire', async () => {
    const configDir = join(dir, 'agent');
    const before = await fileSecrets(configDir);
    const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: configDir, ...agentEnv() }, {
      now: () => claimsOf(before.credential).exp * 1000 - 60_000,
    });
    expect(await dbgate(['token'], harness), harness.stderr()).toBe(0);
    const renewed = harness.stdout().trim();
    expect(renewed).not.toBe(before.credential);
    expect(claimsOf(renewed).sub).toBe('report-bot');
    expect((await fileSecrets(configDir)).credential).toBe(renewed);
  });

  it('refuses a wrong client secret with the IdP\'s reason', async () => {
    const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: join(dir, 'agent-wrong'), DBGATE_CLIENT_ID: 'report-bot', DBGATE_CLIENT_SECRET: 'wrong-secret' });
    expect(await dbgate(['login', '--client-credentials', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage'], harness)).toBe(1);
    expect(harness.stderr()).toContain('dbgate: login failed: the identity provider refused client credentials for report-bot: invalid_client');
  });

  it('asks for DBGATE_CLIENT_ID and DBGATE_CLIENT_SECRET rather than taking secrets as flags', async () => {
    const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: join(dir, 'agent-none') });
    expect(await dbgate(['login', '--client-credentials', '--gateway', sharedStack().gateway.apiUrl], harness)).toBe(2);
    expect(harness.stderr()).toContain('dbgate: --client-credentials needs DBGATE_CLIENT_ID and DBGATE_CLIENT_SECRET in the environment');
  });

  it('logout deletes the login locally even when the gateway is unreachable, says the revocation did not reach it, and exits 1', async () => {
    const configDir = join(dir, 'agent');
    const configPath = join(configDir, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { profiles: Record<string, { gateway: string }> };
    // The gateway has moved away (nothing listens on port 9, the discard port).
    config.profiles['default']!.gateway = 'http://127.0.0.1:9';
    await writeFile(configPath, JSON.stringify(config));
    const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: configDir });
    expect(await dbgate(['logout'], harness)).toBe(1);
    expect(harness.stderr()).toContain(`dbgate: deleted your login from ${join(configDir, 'secrets-default.json')}, but the revocation did not reach the gateway: cannot reach the gateway at http://127.0.0.1:9`);
    expect(harness.stderr()).toMatch(/hint: the credential stays valid at the gateway until \S+ \(session [0-9a-f-]+\)/);
    await expect(readFile(join(configDir, 'secrets-default.json'))).rejects.toThrow();
  });
});

describe('dbgate login --client-credentials --on-behalf-of (token exchange)', () => {
  let aliceAccessToken: string;
  let configDir: string;

  beforeAll(async () => {
    // alice signs in with the device flow; her IdP access token (a JWT for the gateway audience) is what she hands
    // the agent. Here it comes from her refresh token, as an agent platform holding her grant would obtain it.
    const aliceDir = join(dir, 'alice-for-agent');
    const { login, url } = await startDeviceLogin(aliceDir);
    const page = await browser.newPage();
    await page.goto(url);
    await Promise.all([page.waitForNavigation(), page.click('button:not([name=abort])')]);
    await signInOnIdpPage(page, 'alice');
    await page.close();
    expect(await login).toBe(0);
    const configuration = await oidc.discovery(new URL(devIdp().issuer), 'dbgate-cli', undefined, oidc.None(), {
      execute: [oidc.allowInsecureRequests],
    });
    const tokens = await oidc.refreshTokenGrant(configuration, (await fileSecrets(aliceDir)).refresh_token!);
    aliceAccessToken = tokens.access_token;
    configDir = join(dir, 'agent-for-alice');
  });

  it('gives report-bot a credential for alice with report-bot as the actor', async () => {
    const env = {
      HOME: dir,
      DBGATE_CONFIG_DIR: configDir,
      DBGATE_CLIENT_ID: devIdp().agentClientId,
      DBGATE_CLIENT_SECRET: devIdp().agentClientSecret,
      DBGATE_SUBJECT_TOKEN: aliceAccessToken,
    };
    const harness = cliHarness(env);
    expect(await dbgate(['login', '--client-credentials', '--on-behalf-of', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage'], harness), harness.stderr()).toBe(0);
    expect(harness.stderr()).toContain('as Alice Liddell (alice), with report-bot acting (agent)');
    expect(await status(configDir)).toMatchObject({
      logged_in: true,
      identity: { subject: 'alice', groups: ['engineering'], kind: 'agent', actors: ['report-bot'] },
      login_method: 'token_exchange',
    });
  });

  it('names both alice and report-bot in the audit records of what the agent does', async () => {
    const result = await runProcess(process.execPath, ['bin/dbgate', 'connect', 'prod-orders', '--', 'psql', '-X', '-At', '-c', 'select 42'], {
      HOME: dir,
      DBGATE_CONFIG_DIR: configDir,
      PATH: process.env['PATH'],
    });
    expect(result).toMatchObject({ code: 0, stdout: '42\n' });
    const sessionId = claimsOf((await fileSecrets(configDir)).credential).sid;
    const state = await directClient('dbgate_state');
    try {
      let rows: Array<{ subject: string; actors: string[]; statement: string | null }> = [];
      await eventually(async () => {
        ({ rows } = await state.query('select subject, actors, statement from dbgate_audit_events where session_id = $1 order by id', [sessionId]));
        return rows.some((row) => row.statement?.includes('42'));
      });
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) expect(row).toMatchObject({ subject: 'alice', actors: ['report-bot'] });
    } finally {
      await state.end();
    }
  });

  it('refuses a subject token that is not a current token of the IdP', async () => {
    const harness = cliHarness({
      HOME: dir,
      DBGATE_CONFIG_DIR: join(dir, 'agent-bad-subject'),
      DBGATE_CLIENT_ID: devIdp().agentClientId,
      DBGATE_CLIENT_SECRET: devIdp().agentClientSecret,
      DBGATE_SUBJECT_TOKEN: `${aliceAccessToken.slice(0, -4)}AAAA`,
    });
    expect(await dbgate(['login', '--client-credentials', '--on-behalf-of', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage'], harness)).toBe(1);
    expect(harness.stderr()).toContain('dbgate: login failed: the identity provider refused the token exchange for report-bot: invalid_grant');
  });
});
