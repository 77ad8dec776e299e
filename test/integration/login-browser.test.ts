/**
 * `dbgate login` as a person uses it: the real authorization code + PKCE flow against the shared dev gateway's IdP,
 * signed in by headless Chromium on the IdP's real login page; then `status`, `token`, `connect` with nothing but
 * the stored login, renewal before expiry under a running tunnel, logout, and the refusals (wrong state, replayed
 * authorization code, timeout).
 */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/cli/commands/status.js';
import { sharedStack } from '../support/stack.js';
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

const MINUTE = 60_000;

describe('dbgate login (browser: authorization code + PKCE, loopback redirect)', () => {
  let browser: Browser;
  let home: string;
  let configDir: string;
  let authorizationUrl: URL;
  /** The authorization response the IdP sent to the CLI's loopback listener (code, state, iss). */
  let callbackUrl: URL;
  let loginStderr: string;
  let pageText: string;

  beforeAll(async () => {
    browser = await launchChromium();
    home = await mkdtemp(join(tmpdir(), 'dbgate-login-home-'));
    configDir = join(home, 'config', 'dbgate');
    const harness = cliHarness({ HOME: home, DBGATE_CONFIG_DIR: configDir }, {
      openUrl: async (url) => {
        authorizationUrl = new URL(url);
        signedIn = (async () => {
          const page = await browser.newPage();
          page.on('request', (request) => {
            if (/^http:\/\/127\.0\.0\.1:\d+\/callback/.test(request.url())) callbackUrl = new URL(request.url());
          });
          await page.goto(url);
          await signInOnIdpPage(page, 'alice');
          pageText = (await page.textContent('body')) ?? '';
          await page.close();
        })();
      },
    });
    let signedIn: Promise<void> | undefined;
    const code = await dbgate(['login', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage'], harness);
    await signedIn;
    loginStderr = harness.stderr();
    expect(code, loginStderr).toBe(0);
  });

  afterAll(async () => {
    await browser?.close();
    await rm(home, { recursive: true, force: true });
  });

  it('sends an S256 PKCE challenge, state and nonce, with a loopback redirect on an ephemeral port', () => {
    const params = authorizationUrl.searchParams;
    expect(authorizationUrl.origin).toBe(devIdp().issuer);
    expect(params.get('response_type')).toBe('code');
    expect(params.get('client_id')).toBe('dbgate-cli');
    expect(params.get('code_challenge_method')).toBe('S256');
    expect(params.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(params.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(params.get('nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(params.get('scope')!.split(' ')).toEqual(expect.arrayContaining(['openid', 'groups', 'offline_access']));
    const redirect = new URL(params.get('redirect_uri')!);
    expect(redirect.hostname).toBe('127.0.0.1');
    expect(redirect.protocol).toBe('http:');
    expect(Number(redirect.port)).toBeGreaterThan(0);
    expect(redirect.pathname).toBe('/callback');
    expect(callbackUrl.searchParams.get('state')).toBe(params.get('state'));
  });

  it('always prints the URL, even when a browser was opened', () => {
    expect(loginStderr).toContain(authorizationUrl.href);
  });

  it('tells the person in the browser that they are signed in', () => {
    expect(pageText).toContain('Signed in to dbgate as Alice Liddell (alice).');
  });

  it('stores the credential and refresh token in a 0600 file in a 0700 config dir, and nothing secret in config.json', async () => {
    expect((await stat(configDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(configDir, 'secrets-default.json'))).mode & 0o777).toBe(0o600);
    const secrets = await fileSecrets(configDir);
    expect(claimsOf(secrets.credential).sub).toBe('alice');
    expect(secrets.refresh_token).toEqual(expect.any(String));
    const config = await readFile(join(configDir, 'config.json'), 'utf8');
    expect(config).not.toContain(secrets.credential);
    expect(config).not.toContain(secrets.refresh_token);
    expect(loginStderr).toContain(`Secrets are stored in ${join(configDir, 'secrets-default.json')}.`);
  });

  it('status --json shows alice and her groups, as the gateway sees them', async () => {
    const harness = cliHarness({ HOME: home, DBGATE_CONFIG_DIR: configDir });
    expect(await dbgate(['status', '--json'], harness)).toBe(0);
    const report = JSON.parse(harness.stdout()) as StatusReport;
    expect(report).toMatchObject({
      logged_in: true,
      profile: 'default',
      gateway: sharedStack().gateway.apiUrl,
      gateway_name: 'dev',
      gateway_reachable: true,
      identity: { subject: 'alice', email: 'alice@example.com', name: 'Alice Liddell', groups: ['engineering'], kind: 'human', actors: [] },
      session_id: claimsOf((await fileSecrets(configDir)).credential).sid,
      storage: 'file',
      storage_location: join(configDir, 'secrets-default.json'),
      login_method: 'browser',
      renewable: true,
      problem: null,
    });
    expect(report.expires_in_seconds).toBeGreaterThan(55 * 60);
    expect(harness.stdout().split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('status (alias whoami) says who, until when, and where the secrets are', async () => {
    const harness = cliHarness({ HOME: home, DBGATE_CONFIG_DIR: configDir });
    expect(await dbgate(['whoami'], harness)).toBe(0);
    expect(harness.stdout()).toContain(`Logged in to ${sharedStack().gateway.apiUrl} (gateway "dev") as Alice Liddell (alice)`);
    expect(harness.stdout()).toMatch(/credential: {2}valid for (59|58)m/);
    expect(harness.stdout()).toContain('groups:      engineering');
    expect(harness.stdout()).toContain(`secrets:     ${join(configDir, 'secrets-default.json')}`);
  });

  it('connect prod-orders -- psql works with nothing but the stored login (no DBGATE_* overrides)', async () => {
    const result = await runProcess(process.execPath, ['bin/dbgate', 'connect', 'prod-orders', '--', 'psql', '-X', '-At', '-c', 'select 1'], {
      HOME: home,
      DBGATE_CONFIG_DIR: configDir,
      PATH: process.env['PATH'],
    });
    expect(result.stderr).toBe('');
    expect(result).toMatchObject({ code: 0, stdout: '1\n' });
  });

  it('token prints the credential for clients that connect to the gateway directly', async () => {
    const harness = cliHarness({ HOME: home, DBGATE_CONFIG_DIR: configDir });
    expect(await dbgate(['token'], harness)).toBe(0);
    const token = harness.stdout().trim();
    expect(token).toBe((await fileSecrets(configDir)).credential);
    const { gateway } = sharedStack();
    const result = await runProcess('psql', ['-X', '-At', '-c', 'select 2',
      `host=${gateway.pgHost} port=${gateway.pgPort} user=alice dbname=prod-orders sslmode=require`], {
      PATH: process.env['PATH'],
      PGPASSWORD: token,
      PGCONNECT_TIMEOUT: '10',
    });
    expect(result).toMatchObject({ code: 0, stdout: '2\n' });
  });

  describe('a running tunnel across a renewal, then logout', () => {
    let shift = 0;
    let tunnel: ReturnType<typeof cliHarness>;
    let running: Promise<number>;
    let ready: { host: string; port: number; user: string; password: string; database: string };
    let first: pg.Client;
    let second: pg.Client;
    let before: Awaited<ReturnType<typeof fileSecrets>>;
    let after: Awaited<ReturnType<typeof fileSecrets>>;

    beforeAll(async () => {
      tunnel = cliHarness({ HOME: home, DBGATE_CONFIG_DIR: configDir }, { now: () => Date.now() + shift });
      running = dbgate(['connect', 'prod-orders', '--json'], tunnel);
      ready = JSON.parse((await tunnel.waitFor(/^\{.*\}$/m))[0]) as typeof ready;
    });

    afterAll(async () => {
      tunnel?.interrupt();
      await running;
      await first?.end().catch(() => {});
      await second?.end().catch(() => {});
    });

    it('renews the credential for a new connection when less than two minutes are left; open connections keep running', async () => {
      first = new pg.Client({ ...ready, application_name: 'login-renewal-first' });
      first.on('error', () => {});
      await first.connect();
      expect((await first.query('select 1 as one')).rows).toEqual([{ one: 1 }]);

      before = await fileSecrets(configDir);
      // The tunnel's clock jumps to 90 s before the credential's expiry: the next connection triggers a renewal.
      shift = claimsOf(before.credential).exp * 1000 - 90_000 - Date.now();
      second = new pg.Client({ ...ready, application_name: 'login-renewal-second' });
      second.on('error', () => {});
      await second.connect();
      shift = 0;
      after = await fileSecrets(configDir);

      expect(after.credential).not.toBe(before.credential);
      expect(claimsOf(after.credential).sid).not.toBe(claimsOf(before.credential).sid);
      expect(claimsOf(after.credential).exp * 1000 - Date.now()).toBeGreaterThan(55 * MINUTE);
      expect(after.refresh_token).toEqual(expect.any(String));
      expect(after.superseded).toEqual([before.credential]);
      expect((await second.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
      expect((await first.query('select 3 as three')).rows).toEqual([{ three: 3 }]);
    });

    it('logout ends every session of the login at the gateway — the live connections close within 5 s — and deletes the secrets', async () => {
      const closed = (client: pg.Client): Promise<number> => new Promise((resolve) => client.once('end', () => resolve(Date.now())));
      const firstClosed = closed(first);
      const secondClosed = closed(second);
      const harness = cliHarness({ HOME: home, DBGATE_CONFIG_DIR: configDir });
      const start = Date.now();
      expect(await dbgate(['logout'], harness), harness.stderr()).toBe(0);
      expect(harness.stderr()).toContain(`Logged out of ${sharedStack().gateway.apiUrl} (alice): session ended at the gateway`);
      const deadline = new Promise<number>((resolve) => setTimeout(() => resolve(Number.POSITIVE_INFINITY), 6_000));
      expect(await Promise.race([firstClosed, deadline]) - start).toBeLessThan(5_500);
      expect(await Promise.race([secondClosed, deadline]) - start).toBeLessThan(5_500);
      expect(await readdir(configDir)).toEqual(['config.json']);

      const status = cliHarness({ HOME: home, DBGATE_CONFIG_DIR: configDir });
      expect(await dbgate(['status', '--json'], status)).toBe(4);
      expect(JSON.parse(status.stdout())).toMatchObject({ logged_in: false, gateway: sharedStack().gateway.apiUrl });
    });

    it('the revoked credentials are refused by the gateway', async () => {
      for (const credential of [before.credential, after.credential]) {
        const response = await fetch(new URL('/v1/me', sharedStack().gateway.apiUrl), { headers: { authorization: `Bearer ${credential}` } });
        expect(response.status).toBe(401);
        expect(((await response.json()) as { error: string }).error).toBe('revoked');
      }
    });
  });

  describe('refusals', () => {
    let dir: string;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'dbgate-login-refusals-'));
    });

    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('answers a callback with a wrong state with an error page and an error exit, stores nothing, and takes no second callback', async () => {
      const configDir = join(dir, 'wrong-state');
      const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: configDir });
      const login = dbgate(['login', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage', '--no-browser'], harness);
      const url = new URL((await harness.waitFor(/^ {2}(http\S+)$/m))[1]!);
      const redirect = url.searchParams.get('redirect_uri')!;
      const page = await browser.newPage();
      const response = await page.goto(`${redirect}?code=stolen-code&state=forged-state`);
      expect(response?.status()).toBe(400);
      expect(await page.textContent('#message')).toContain('wrong or missing state');
      await page.close();
      expect(await login).toBe(1);
      expect(harness.stderr()).toContain('dbgate: login failed: the sign-in response does not belong to this login (wrong or missing state); nothing was stored');
      // Exactly one callback: the listener is gone, so the right state arriving later cannot complete this login.
      await expect(fetch(`${redirect}?code=x&state=${url.searchParams.get('state')}`)).rejects.toThrow();
      await expect(stat(join(configDir, 'secrets-default.json'))).rejects.toThrow();
    });

    it('refuses a replayed authorization code', async () => {
      const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: join(dir, 'replay') }, {
        // An attacker who captured alice's earlier authorization response replays its code into a new login.
        openUrl: async (url) => {
          const params = new URL(url).searchParams;
          const replay = new URL(params.get('redirect_uri')!);
          replay.searchParams.set('code', callbackUrl.searchParams.get('code')!);
          replay.searchParams.set('state', params.get('state')!);
          replay.searchParams.set('iss', callbackUrl.searchParams.get('iss')!);
          replayed = fetch(replay).then(async (response) => ({ status: response.status, body: await response.text() }));
        },
      });
      let replayed: Promise<{ status: number; body: string }> | undefined;
      expect(await dbgate(['login', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage'], harness)).toBe(1);
      expect(harness.stderr()).toMatch(/dbgate: login failed: the identity provider did not accept the sign-in response: invalid_grant/);
      const page = await replayed!;
      expect(page.status).toBe(400);
      expect(page.body).toContain('invalid_grant');
      await expect(stat(join(dir, 'replay', 'secrets-default.json'))).rejects.toThrow();
    });

    it('gives up with a clear message when no sign-in arrives in time', async () => {
      const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: join(dir, 'timeout') }, { openUrl: async () => {} });
      expect(await dbgate(['login', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage', '--timeout', '1s'], harness)).toBe(1);
      expect(harness.stderr()).toContain('dbgate: login failed: no sign-in arrived within 1s');
      expect(harness.stderr()).toContain('hint: run dbgate login again and finish signing in in the browser (or use dbgate login --device)');
    });

    describe('a login that can no longer be renewed', () => {
      let configDir: string;
      let expiresAt: number;

      beforeAll(async () => {
        configDir = join(dir, 'expired');
        let signedIn: Promise<void> | undefined;
        const harness = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: configDir }, {
          openUrl: async (url) => {
            signedIn = (async () => {
              const page = await browser.newPage();
              await page.goto(url);
              await signInOnIdpPage(page, 'carol');
              await page.close();
            })();
          },
        });
        expect(await dbgate(['login', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage'], harness), harness.stderr()).toBe(0);
        await signedIn;
        // The IdP no longer honours the refresh token (revoked, or the IdP forgot it).
        const secrets = await fileSecrets(configDir);
        expiresAt = claimsOf(secrets.credential).exp * 1000;
        await writeFile(join(configDir, 'secrets-default.json'), JSON.stringify({ ...secrets, refresh_token: 'revoked-refresh-token' }), { mode: 0o600 });
      });

      it('makes commands say "your dbgate login expired - run: dbgate login" and exit 4', async () => {
        const later = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: configDir }, { now: () => expiresAt + MINUTE });
        expect(await dbgate(['token'], later)).toBe(4);
        expect(later.stdout()).toBe('');
        expect(later.stderr()).toContain('dbgate: your dbgate login expired - run: dbgate login\n');
        expect(later.stderr()).toContain('hint: could not renew it: the identity provider refused the refresh token (invalid_grant');
      });

      it('makes a running tunnel refuse new connections with that message, not an opaque socket error', async () => {
        let now = expiresAt - 10 * MINUTE;
        const tunnel = cliHarness({ HOME: dir, DBGATE_CONFIG_DIR: configDir }, { now: () => now });
        const running = dbgate(['connect', 'prod-orders', '--json'], tunnel);
        try {
          const ready = JSON.parse((await tunnel.waitFor(/^\{.*\}$/m))[0]) as { uri: string };
          now = expiresAt + MINUTE;
          const psql = await runProcess('psql', ['-X', '-At', ready.uri, '-c', 'select 1'], { PATH: process.env['PATH'] });
          expect(psql.code).toBe(2);
          expect(psql.stderr).toContain('FATAL:  dbgate: your dbgate login expired - run: dbgate login');
        } finally {
          tunnel.interrupt();
          await running;
        }
      });
    });
  });
});
