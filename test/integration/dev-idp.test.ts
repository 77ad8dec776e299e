/**
 * The embedded dev IdP as the CLI, an agent and the gateway meet it: a real oidc-provider over real HTTP, with
 * openid-client as the relying party and jose verifying tokens through the published JWKS — the same path the
 * gateway takes for any IdP. The login page is driven with plain HTTP (fetch, a cookie jar, manual redirects); the
 * browser test of `dbgate login` lives with the CLI.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import {
  ACCESS_TOKEN_TYPE,
  DEV_CLI_REDIRECT_URI,
  ID_TOKEN_TYPE,
  TOKEN_EXCHANGE_GRANT_TYPE,
  startDevIdp,
  type DevIdp,
} from '../../src/dev/dev-idp.js';
import {
  DEV_AGENT_CLIENT_ID,
  DEV_CLI_CLIENT_ID,
  DEV_GATEWAY_AUDIENCE,
  DEV_PASSWORD,
} from '../../src/dev/dev-identities.js';

const CLI_SCOPE = 'openid email profile groups offline_access';

interface HtmlForm {
  action: string;
  fields: Record<string, string>;
}

function decodeEntities(text: string): string {
  return text
    .replace(/&#(\d+);/g, (_match, code: string) => String.fromCharCode(Number(code)))
    .replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

function attributes(tag: string): Record<string, string> {
  const found: Record<string, string> = {};
  for (const [, name, value] of tag.matchAll(/([a-zA-Z_:.-]+)(?:="([^"]*)")?/g)) {
    if (name) found[name.toLowerCase()] = decodeEntities(value ?? '');
  }
  return found;
}

/** The first form of a page (or the one with `id`), with the values of its inputs. */
function formOf(html: string, id?: string): HtmlForm {
  for (const [, open, inner] of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)) {
    const formAttributes = attributes(open ?? '');
    if (id !== undefined && formAttributes['id'] !== id) continue;
    const fields: Record<string, string> = {};
    for (const [input] of (inner ?? '').matchAll(/<input\b[^>]*>/g)) {
      const { name, value } = attributes(input);
      if (name) fields[name] = value ?? '';
    }
    return { action: formAttributes['action'] ?? '', fields };
  }
  throw new Error(`no form${id ? ` #${id}` : ''} in page:\n${html}`);
}

type BrowseResult =
  | { kind: 'page'; status: number; url: URL; html: string }
  | { kind: 'left-idp'; location: URL };

/**
 * Just enough of a browser for the IdP's pages: keeps cookies (by name and path), follows redirects inside the IdP
 * and stops at the first redirect that leaves it — the loopback callback the CLI would be listening on.
 */
class TestBrowser {
  private readonly cookies = new Map<string, { name: string; value: string; path: string }>();

  constructor(private readonly origin: string) {}

  async open(url: URL | string): Promise<BrowseResult> {
    return this.request(new URL(url), { method: 'GET' });
  }

  async submit(page: URL, form: HtmlForm, values: Record<string, string> = {}): Promise<BrowseResult> {
    const body = new URLSearchParams({ ...form.fields, ...values });
    return this.request(new URL(form.action, page), {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  }

  private async request(url: URL, init: { method: string; body?: URLSearchParams; headers?: Record<string, string> }): Promise<BrowseResult> {
    let current = url;
    let next: typeof init = init;
    for (let hops = 0; hops < 20; hops++) {
      const response = await fetch(current, {
        ...next,
        redirect: 'manual',
        headers: { ...next.headers, cookie: this.cookieHeader(current) },
      });
      this.store(response, current);
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        const target = new URL(location, current);
        if (target.origin !== this.origin) return { kind: 'left-idp', location: target };
        current = target;
        next = { method: 'GET' };
        continue;
      }
      return { kind: 'page', status: response.status, url: current, html: await response.text() };
    }
    throw new Error('too many redirects');
  }

  private store(response: Response, url: URL): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair = '', ...attributeParts] = header.split(';');
      const separator = pair.indexOf('=');
      const name = pair.slice(0, separator).trim();
      const value = pair.slice(separator + 1).trim();
      let path = url.pathname.replace(/\/[^/]*$/, '') || '/';
      let expired = value === '';
      for (const part of attributeParts) {
        const [key = '', attributeValue = ''] = part.split('=').map((piece) => piece.trim());
        if (key.toLowerCase() === 'path') path = attributeValue;
        if (key.toLowerCase() === 'expires' && Date.parse(attributeValue) <= Date.now()) expired = true;
        if (key.toLowerCase() === 'max-age' && Number(attributeValue) <= 0) expired = true;
      }
      const key = `${name};${path}`;
      if (expired) this.cookies.delete(key);
      else this.cookies.set(key, { name, value, path });
    }
  }

  private cookieHeader(url: URL): string {
    return [...this.cookies.values()]
      .filter(({ path }) => path === '/' || url.pathname === path || url.pathname.startsWith(`${path}/`))
      .map(({ name, value }) => `${name}=${value}`)
      .join('; ');
  }
}

/**
 * The OAuth error code of a failed openid-client call: from the JSON body (400), or from the WWW-Authenticate
 * challenge that a 401 for failed client authentication carries instead.
 */
function oauthError(error: unknown): string | undefined {
  if (error instanceof client.ResponseBodyError) return error.error;
  if (error instanceof client.WWWAuthenticateChallengeError) return error.cause[0]?.parameters.error;
  return undefined;
}

async function expectOauthError(request: Promise<unknown>, expected: string): Promise<void> {
  const outcome = await request.then(() => undefined, (error: unknown) => error);
  expect(outcome, 'the request should have failed').toBeInstanceOf(Error);
  expect(oauthError(outcome)).toBe(expected);
}

function expectPage(result: BrowseResult): Extract<BrowseResult, { kind: 'page' }> {
  if (result.kind !== 'page') throw new Error(`expected a page, the IdP redirected to ${result.location.href}`);
  return result;
}

function expectLeftIdp(result: BrowseResult): URL {
  if (result.kind !== 'left-idp') throw new Error(`expected a redirect out of the IdP, got ${result.status}:\n${result.html}`);
  return result.location;
}

describe('dev IdP', () => {
  let stateDir: string;
  let idp: DevIdp;
  const logLines: string[] = [];
  const consoleSpies: MockInstance[] = [];
  let cli: client.Configuration;
  let agent: client.Configuration;
  let gatewayKeys: ReturnType<typeof createRemoteJWKSet>;

  /** What the gateway does with an access token: verify it against the IdP's published JWKS. */
  async function verifyGatewayToken(token: string): Promise<JWTPayload> {
    const { payload, protectedHeader } = await jwtVerify(token, gatewayKeys, { issuer: idp.issuer, audience: DEV_GATEWAY_AUDIENCE });
    expect(protectedHeader.typ).toBe('at+jwt');
    return payload;
  }

  async function discoverCli(issuer: string): Promise<client.Configuration> {
    return client.discovery(new URL(issuer), DEV_CLI_CLIENT_ID, undefined, client.None(), { execute: [client.allowInsecureRequests] });
  }

  async function discoverAgent(secret: string): Promise<client.Configuration> {
    return client.discovery(new URL(idp.issuer), DEV_AGENT_CLIENT_ID, undefined, client.ClientSecretBasic(secret), {
      execute: [client.allowInsecureRequests],
    });
  }

  /** Authorization code + PKCE as `dbgate login` runs it, with a person typing their password into the login page. */
  async function signIn(login: string, redirectUri = 'http://127.0.0.1:49731/callback', browser = new TestBrowser(idp.issuer)) {
    const codeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const authorizationUrl = client.buildAuthorizationUrl(cli, {
      redirect_uri: redirectUri,
      scope: CLI_SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    const loginPage = expectPage(await browser.open(authorizationUrl));
    let result = await browser.submit(loginPage.url, formOf(loginPage.html), { login, password: DEV_PASSWORD });
    if (result.kind === 'page' && result.html.includes('<noscript>')) {
      // Switching people ends the previous person's IdP session first: oidc-provider answers with a self-submitting
      // form whose <noscript> button does the same without JavaScript. Press it.
      result = await browser.submit(result.url, formOf(result.html));
    }
    const callback = expectLeftIdp(result);
    expect(`${callback.origin}${callback.pathname}`).toBe(redirectUri);
    return client.authorizationCodeGrant(cli, callback, { pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce });
  }

  beforeAll(async () => {
    for (const method of ['info', 'warn', 'error', 'log'] as const) consoleSpies.push(vi.spyOn(console, method));
    stateDir = await mkdtemp(join(tmpdir(), 'dbgate-dev-idp-'));
    idp = await startDevIdp({ port: 0, stateDir, log: (line) => logLines.push(line) });
    cli = await discoverCli(idp.issuer);
    agent = await discoverAgent(idp.agentClientSecret);
    gatewayKeys = createRemoteJWKSet(new URL(cli.serverMetadata().jwks_uri!));
  });

  afterAll(async () => {
    await idp?.close();
    await rm(stateDir, { recursive: true, force: true });
    for (const spy of consoleSpies) spy.mockRestore();
  });

  it('serves discovery whose issuer is exactly http://127.0.0.1:<port>, with the dev grants and JWKS', () => {
    expect(idp.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const metadata = cli.serverMetadata();
    expect(metadata.issuer).toBe(idp.issuer);
    expect(metadata.grant_types_supported).toEqual(expect.arrayContaining([
      'authorization_code', 'refresh_token', 'client_credentials',
      'urn:ietf:params:oauth:grant-type:device_code', TOKEN_EXCHANGE_GRANT_TYPE,
    ]));
    expect(metadata.code_challenge_methods_supported).toEqual(['S256']);
    expect(metadata.scopes_supported).toEqual(expect.arrayContaining(['openid', 'email', 'profile', 'groups', 'offline_access']));
    expect(metadata.device_authorization_endpoint).toBe(`${idp.issuer}/device/auth`);
  });

  it('persists its signing keys, cookie keys and the agent secret as 0600 files, reused by the next start', async () => {
    const secrets = join(stateDir, 'secrets');
    expect((await readdir(secrets)).sort()).toEqual(['idp-cookie-keys.json', 'idp-jwks.json', 'idp-report-bot-secret']);
    for (const file of await readdir(secrets)) expect((await stat(join(secrets, file))).mode & 0o777).toBe(0o600);

    const { access_token: issuedBefore } = await client.clientCredentialsGrant(agent);
    const restarted = await startDevIdp({ port: 0, stateDir, log: (line) => logLines.push(line) });
    try {
      expect(restarted.agentClientSecret).toBe(idp.agentClientSecret);
      const restartedKeys = createRemoteJWKSet(new URL(`${restarted.issuer}/jwks`));
      // A token of the first instance verifies with the keys the second one publishes.
      await expect(jwtVerify(issuedBefore, restartedKeys, { issuer: idp.issuer })).resolves.toBeTruthy();
    } finally {
      await restarted.close();
    }
    await expect(fetch(`${restarted.issuer}/.well-known/openid-configuration`)).rejects.toThrow();
  });

  describe('client credentials (report-bot)', () => {
    it('issues a JWT access token for the gateway: sub report-bot, groups [agents], dbgate_kind agent', async () => {
      const tokens = await client.clientCredentialsGrant(agent);
      expect(tokens.token_type.toLowerCase()).toBe('bearer');
      const claims = await verifyGatewayToken(tokens.access_token);
      expect(claims).toMatchObject({ sub: DEV_AGENT_CLIENT_ID, aud: DEV_GATEWAY_AUDIENCE, groups: ['agents'], dbgate_kind: 'agent' });
    });

    it('refuses a wrong client secret with invalid_client', async () => {
      const impostor = await discoverAgent('not-the-secret');
      await expectOauthError(client.clientCredentialsGrant(impostor), 'invalid_client');
    });
  });

  describe('authorization code + PKCE (dbgate login)', () => {
    it('signs alice in: ID token with her email and groups, a gateway JWT, and a working refresh token', async () => {
      const tokens = await signIn('alice');
      expect(tokens.claims()).toMatchObject({
        iss: idp.issuer, aud: DEV_CLI_CLIENT_ID, sub: 'alice', email: 'alice@example.com', name: 'Alice Liddell', groups: ['engineering'],
      });
      expect(await verifyGatewayToken(tokens.access_token)).toMatchObject({
        sub: 'alice', email: 'alice@example.com', groups: ['engineering'], dbgate_kind: 'human',
      });
      expect(tokens.refresh_token).toEqual(expect.any(String));

      const refreshed = await client.refreshTokenGrant(cli, tokens.refresh_token!);
      expect(await verifyGatewayToken(refreshed.access_token)).toMatchObject({ sub: 'alice', dbgate_kind: 'human' });
      expect(refreshed.claims()).toMatchObject({ sub: 'alice', email: 'alice@example.com' });
      // Public clients get a new refresh token on every use; the old one is spent.
      expect(refreshed.refresh_token).toEqual(expect.any(String));
      expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    });

    it('accepts the loopback callback on any port, but only at the registered host and path', async () => {
      await expect(signIn('carol', 'http://127.0.0.1:61234/callback')).resolves.toBeTruthy();
      expect(DEV_CLI_REDIRECT_URI).toBe('http://127.0.0.1/callback');

      for (const redirectUri of ['http://127.0.0.1:61234/callback/abc', 'http://localhost:61234/callback', 'http://127.0.0.1:61234/other']) {
        const url = client.buildAuthorizationUrl(cli, {
          redirect_uri: redirectUri, scope: CLI_SCOPE, code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
          code_challenge_method: 'S256', state: client.randomState(),
        });
        const refused = expectPage(await new TestBrowser(idp.issuer).open(url));
        expect(refused.status).toBe(400);
        expect(refused.html).toContain('invalid_redirect_uri');
      }
    });

    it('asks who is signing in on every authorization, so one browser can switch from alice to bob', async () => {
      const browser = new TestBrowser(idp.issuer);
      expect((await signIn('alice', undefined, browser)).claims()?.sub).toBe('alice');
      expect((await signIn('bob', undefined, browser)).claims()?.sub).toBe('bob');
    });

    it('sends the person back to the CLI with access_denied when they cancel', async () => {
      const state = client.randomState();
      const url = client.buildAuthorizationUrl(cli, {
        redirect_uri: 'http://127.0.0.1:49733/callback', scope: CLI_SCOPE,
        code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()), code_challenge_method: 'S256',
        state,
      });
      const browser = new TestBrowser(idp.issuer);
      const loginPage = expectPage(await browser.open(url));
      const cancelHref = /<a href="([^"]+\/abort)"/.exec(loginPage.html)?.[1];
      expect(cancelHref).toBeDefined();
      const callback = expectLeftIdp(await browser.open(new URL(cancelHref!, loginPage.url)));
      expect(callback.searchParams.get('error')).toBe('access_denied');
      expect(callback.searchParams.get('state')).toBe(state);
    });

    it('shows the login page again, with a clear message and status 200, after a wrong password', async () => {
      const url = client.buildAuthorizationUrl(cli, {
        redirect_uri: 'http://127.0.0.1:49732/callback', scope: CLI_SCOPE,
        code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()), code_challenge_method: 'S256',
        state: client.randomState(),
      });
      const browser = new TestBrowser(idp.issuer);
      const loginPage = expectPage(await browser.open(url));
      expect(loginPage.status).toBe(200);
      expect(Object.keys(formOf(loginPage.html).fields).sort()).toEqual(['login', 'password']);
      expect(loginPage.html.match(/<button\b/g)).toHaveLength(1);
      expect(loginPage.html).not.toContain('<script');

      const again = expectPage(await browser.submit(loginPage.url, formOf(loginPage.html), { login: 'alice', password: 'wrong' }));
      expect(again.status).toBe(200);
      expect(again.html).toContain('Wrong login or password');
      expect(again.html).not.toMatch(/\bat .+\.js:\d+/);
      expect(Object.keys(formOf(again.html).fields).sort()).toEqual(['login', 'password']);
      // The same sign-in can still succeed.
      expectLeftIdp(await browser.submit(again.url, formOf(again.html), { login: 'alice', password: DEV_PASSWORD }));
    });
  });

  it('device flow: bob confirms the user code and signs in over plain HTML, then polling returns his tokens', async () => {
    const device = await client.initiateDeviceAuthorization(cli, { scope: CLI_SCOPE });
    const browser = new TestBrowser(idp.issuer);
    const codePage = expectPage(await browser.open(device.verification_uri));
    expect(codePage.html).not.toContain('<script');
    const wrongCode = expectPage(await browser.submit(codePage.url, formOf(codePage.html, 'op.deviceInputForm'), { user_code: 'BCDF-GHJK' }));
    expect(wrongCode.status).toBe(200);
    expect(wrongCode.html).toContain('That code is not valid');
    const confirmPage = expectPage(await browser.submit(wrongCode.url, formOf(wrongCode.html, 'op.deviceInputForm'), { user_code: device.user_code }));
    expect(confirmPage.html).toContain(device.user_code);
    const loginPage = expectPage(await browser.submit(confirmPage.url, formOf(confirmPage.html, 'op.deviceConfirmForm')));
    expect(loginPage.url.pathname).toMatch(/^\/interaction\//);
    const done = expectPage(await browser.submit(loginPage.url, formOf(loginPage.html), { login: 'bob', password: DEV_PASSWORD }));
    expect(done.status).toBe(200);
    expect(done.html).toContain('You are signed in');

    const tokens = await client.pollDeviceAuthorizationGrant(cli, device);
    expect(tokens.claims()).toMatchObject({ sub: 'bob', email: 'bob@example.com', groups: ['dba'] });
    expect(await verifyGatewayToken(tokens.access_token)).toMatchObject({ sub: 'bob', dbgate_kind: 'human' });
    expect(tokens.refresh_token).toEqual(expect.any(String));
  });

  describe('token exchange (report-bot on behalf of a person)', () => {
    const exchange = (subjectToken: string, subjectTokenType = ACCESS_TOKEN_TYPE) =>
      client.genericGrantRequest(agent, TOKEN_EXCHANGE_GRANT_TYPE, { subject_token: subjectToken, subject_token_type: subjectTokenType });

    it("turns alice's access token into a gateway JWT for alice with act.sub report-bot and dbgate_kind agent", async () => {
      const alice = await signIn('alice');
      const exchanged = await exchange(alice.access_token);
      expect(exchanged).toMatchObject({ issued_token_type: ACCESS_TOKEN_TYPE, expires_in: expect.any(Number) });
      expect(exchanged.token_type.toLowerCase()).toBe('bearer');
      expect(await verifyGatewayToken(exchanged.access_token)).toMatchObject({
        sub: 'alice', email: 'alice@example.com', groups: ['engineering'], dbgate_kind: 'agent', act: { sub: DEV_AGENT_CLIENT_ID },
      });

      // Exchanging a delegated token again nests the earlier actor (RFC 8693 §4.1).
      const again = await exchange(exchanged.access_token);
      expect(decodeJwt(again.access_token)['act']).toEqual({ sub: DEV_AGENT_CLIENT_ID, act: { sub: DEV_AGENT_CLIENT_ID } });

      // The person's ID token is an accepted subject token too.
      const fromIdToken = await exchange(alice.id_token!, ID_TOKEN_TYPE);
      expect(decodeJwt(fromIdToken.access_token)).toMatchObject({ sub: 'alice', act: { sub: DEV_AGENT_CLIENT_ID } });
    });

    it('refuses a tampered subject token with invalid_grant', async () => {
      const alice = await signIn('alice');
      const [header, payload, signature] = alice.access_token.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
      const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'bob' })).toString('base64url');
      await expectOauthError(exchange(`${header}.${forged}.${signature}`), 'invalid_grant');
    });

    it("refuses an agent's own token (no person in it) and unsupported token types", async () => {
      const { access_token: agentToken } = await client.clientCredentialsGrant(agent);
      await expectOauthError(exchange(agentToken), 'invalid_grant');
      await expectOauthError(exchange(agentToken, 'urn:ietf:params:oauth:token-type:saml2'), 'invalid_request');
    });
  });

  it("keeps oidc-provider's notices off the console (the dev stack's --json stdout has exactly one line)", () => {
    for (const spy of consoleSpies) {
      const fromProvider = spy.mock.calls.filter((call) => String(call[0]).includes('oidc-provider'));
      expect(fromProvider).toEqual([]);
    }
    const lts = process.release.lts;
    // Node 20 ("Iron") gets oidc-provider's unsupported-runtime warning; it reaches the log instead.
    if (lts && lts < 'Jod') expect(logLines).toContainEqual(expect.stringContaining('Unsupported runtime'));
    expect(logLines.filter((line) => line.includes('internal error'))).toEqual([]);
  });
});
