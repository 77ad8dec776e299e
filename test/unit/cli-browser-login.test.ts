/**
 * The loopback end of the browser login (RFC 8252 §7.3): which path it listens on, and that it takes exactly one
 * authorization response — anything else on the port consumes nothing. The full flow against the real IdP and
 * Chromium is test/integration/login-browser.test.ts; here the IdP is never contacted (the response is refused
 * before any token request).
 */
import { Writable } from 'node:stream';
import * as oidc from 'openid-client';
import { describe, expect, it } from 'vitest';
import { browserLogin } from '../../src/cli/login/browser-login.js';
import type { IdentityProviderSettings } from '../../src/cli/login/identity-provider.js';
import type { CommandContext } from '../../src/shared/cli-runtime.js';
import { DbgateError } from '../../src/shared/errors.js';

const ISSUER = 'http://127.0.0.1:6590';

function configuration(): oidc.Configuration {
  const config = new oidc.Configuration({
    issuer: ISSUER,
    authorization_endpoint: `${ISSUER}/auth`,
    token_endpoint: `${ISSUER}/token`,
  }, 'dbgate-cli', undefined, oidc.None());
  config[oidc.customFetch] = async () => {
    throw new Error('the IdP must not be contacted');
  };
  oidc.allowInsecureRequests(config);
  return config;
}

function idp(loopbackPathSuffix: boolean): IdentityProviderSettings {
  return { issuer: ISSUER, clientId: 'dbgate-cli', scopes: ['openid'], resource: undefined, loopbackPathSuffix };
}

/** Runs a browser login whose "browser" is `respond`, given the authorization URL. */
async function loginWith(suffix: boolean, respond: (authorizationUrl: URL) => Promise<void>): Promise<{ error: DbgateError; stderr: string }> {
  let stderr = '';
  let responded: Promise<void> | undefined;
  const context: CommandContext = {
    stdout: new Writable({ write(_chunk, _encoding, done) { done(); } }),
    stderr: new Writable({ write(chunk, _encoding, done) { stderr += String(chunk); done(); } }),
    stdoutIsTTY: false,
    env: {},
    signal: new AbortController().signal,
    onSignal: () => () => {},
    now: Date.now,
    openUrl: async (url) => {
      responded = respond(new URL(url));
    },
  };
  try {
    await browserLogin(configuration(), idp(suffix), context, { openBrowser: true, timeoutMs: 10_000 });
  } catch (error) {
    await responded;
    if (error instanceof DbgateError) return { error, stderr };
    throw error;
  }
  return expect.fail('the login succeeded');
}

describe('browser login: the loopback redirect', () => {
  it('listens on http://127.0.0.1:<ephemeral>/callback when the IdP compares paths exactly', async () => {
    let redirect!: URL;
    await loginWith(false, async (url) => {
      redirect = new URL(url.searchParams.get('redirect_uri')!);
      await fetch(`${redirect.href}?state=wrong`);
    });
    expect(redirect.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(redirect.pathname).toBe('/callback');
  });

  it('adds an unguessable path segment when the IdP accepts path suffixes', async () => {
    let redirect!: URL;
    await loginWith(true, async (url) => {
      redirect = new URL(url.searchParams.get('redirect_uri')!);
      // Guessing the port is not enough: the plain /callback is not this login's address.
      const guessed = await fetch(new URL('/callback?code=x&state=y', redirect));
      expect(guessed.status).toBe(404);
      await fetch(`${redirect.href}?state=wrong`);
    });
    expect(redirect.pathname).toMatch(/^\/callback\/[A-Za-z0-9_-]{22}$/);
  });

  it('lets other requests (favicon, scanners) through without consuming the one callback', async () => {
    const { error } = await loginWith(false, async (url) => {
      const redirect = new URL(url.searchParams.get('redirect_uri')!);
      expect((await fetch(new URL('/favicon.ico', redirect))).status).toBe(404);
      expect((await fetch(redirect, { method: 'POST' })).status).toBe(404);
      const page = await fetch(`${redirect.href}?code=x`);
      expect(page.status).toBe(400);
      expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(await page.text()).toContain('wrong or missing state');
    });
    expect(error.message).toContain('(wrong or missing state)');
  });

  it('passes on the IdP\'s error from the authorization response (state matching)', async () => {
    const { error } = await loginWith(false, async (url) => {
      const redirect = new URL(url.searchParams.get('redirect_uri')!);
      const page = await fetch(`${redirect.href}?error=access_denied&error_description=the+person+cancelled&state=${url.searchParams.get('state')}`);
      expect(page.status).toBe(400);
    });
    expect(error.message).toBe('login failed: the identity provider refused the sign-in: access_denied: the person cancelled');
  });
});
