/**
 * `dbgate login` in a browser: OAuth 2.0 authorization code with PKCE (RFC 7636, S256) for a native app, the
 * authorization response arriving on a loopback redirect (RFC 8252 §7.3) at `http://127.0.0.1:<ephemeral port>`.
 *
 * The loopback listener accepts exactly one authorization response: after the first request to the callback path
 * it stops listening, whatever that request held. A response with a wrong or missing `state` is refused with an
 * error page and the login fails (RFC 9700 §4.7: CSRF protection); `nonce` binds the ID token to this login.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';
import { writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { formatDuration } from '../../shared/duration.js';
import { loginFailed } from '../cli-errors.js';
import { openUrlOf } from '../context-services.js';
import { oauthErrorText, scopeParameter, type IdentityProviderSettings } from './identity-provider.js';

export interface BrowserLoginOptions {
  /** false: only print the URL (`--no-browser`). */
  openBrowser: boolean;
  /** How long to wait for the authorization response. */
  timeoutMs: number;
}

/** What a finished login hands to the gateway exchange. */
export interface IdpTokens {
  /** The token the gateway exchanges: the ID token for people, the JWT access token for agents. */
  subjectToken: string;
  /** The nonce the ID token must carry (browser login only). */
  nonce?: string;
  refreshToken?: string;
}

/**
 * The loopback end of the redirect. `next()` resolves with the first request to the callback path; the server
 * then stops accepting connections. Its response is held open until the caller knows how the login ended, so the
 * browser page tells the truth ("signed in as alice", or why not).
 */
class LoopbackReceiver {
  private readonly server: Server;
  private settle: ((value: { url: URL; response: ServerResponse }) => void) | undefined;
  private received = false;

  constructor(private readonly callbackPath: string) {
    this.server = createServer((request, response) => this.onRequest(request, response));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      // 127.0.0.1 literally, not "localhost" (RFC 8252 §7.3, §8.3): no resolver or IPv6 surprise, and no other host.
      this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as AddressInfo).port));
    });
  }

  next(): Promise<{ url: URL; response: ServerResponse }> {
    return new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  close(): void {
    this.server.close();
    this.server.closeIdleConnections();
  }

  private onRequest(request: IncomingMessage, response: ServerResponse): void {
    // A fixed base: the Host header is the client's to choose and must not break (or steer) URL parsing.
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    if (request.method !== 'GET' || url.pathname !== this.callbackPath || this.received) {
      // Not the authorization response (a favicon, a scanner): it consumes nothing.
      sendPage(response, 404, 'Not found', 'This address only receives the sign-in response of dbgate login.');
      return;
    }
    this.received = true;
    // Exactly one authorization response: no second request reaches this login, valid or not.
    this.server.close();
    this.settle?.({ url, response });
  }
}

/** Runs the browser login; resolves with the IdP's tokens. */
export async function browserLogin(
  configuration: oidc.Configuration,
  idp: IdentityProviderSettings,
  context: CommandContext,
  options: BrowserLoginOptions,
): Promise<IdpTokens & { nonce: string; complete(page: { ok: boolean; message: string }): void }> {
  const callbackPath = idp.loopbackPathSuffix ? `/callback/${randomBytes(16).toString('base64url')}` : '/callback';
  const receiver = new LoopbackReceiver(callbackPath);
  const port = await receiver.listen();
  const redirectUri = `http://127.0.0.1:${port}${callbackPath}`;

  const codeVerifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const authorizationUrl = oidc.buildAuthorizationUrl(configuration, {
    redirect_uri: redirectUri,
    scope: scopeParameter(idp.scopes),
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...(idp.resource ? { resource: idp.resource } : {}),
  });

  // Always print the URL: `open` resolves even when no browser started (no display, SSH).
  writeLine(context.stderr, 'Sign in to dbgate in your browser. If it does not open, open this URL:');
  writeLine(context.stderr, `  ${authorizationUrl.href}`);
  writeLine(context.stderr, `Waiting up to ${formatDuration(options.timeoutMs)} for the sign-in (Ctrl-C to cancel)...`);
  if (options.openBrowser) {
    await openUrlOf(context)(authorizationUrl.href).catch((error: unknown) => {
      writeLine(context.stderr, `dbgate: could not open a browser (${(error as Error).message}); open the URL above`);
    });
  }

  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), options.timeoutMs);
  let callback: { url: URL; response: ServerResponse };
  try {
    callback = await Promise.race([
      receiver.next(),
      new Promise<never>((_resolve, reject) => {
        const signal = AbortSignal.any([timeout.signal, context.signal]);
        signal.addEventListener('abort', () => reject(context.signal.aborted
          ? loginFailed('cancelled')
          : loginFailed(`no sign-in arrived within ${formatDuration(options.timeoutMs)}`, {
            hint: 'run dbgate login again and finish signing in in the browser (or use dbgate login --device)',
          })), { once: true });
      }),
    ]);
  } catch (error) {
    receiver.close();
    throw error;
  } finally {
    clearTimeout(timer);
  }

  const complete = (page: { ok: boolean; message: string }): void => {
    if (page.ok) sendPage(callback.response, 200, 'Signed in', page.message);
    else sendPage(callback.response, 400, 'Sign-in failed', page.message);
    receiver.close();
  };

  const params = callback.url.searchParams;
  try {
    if (params.get('state') !== state) {
      throw loginFailed('the sign-in response does not belong to this login (wrong or missing state); nothing was stored', {
        hint: 'this can be a cross-site request forgery attempt, or an old browser tab: run dbgate login again',
      });
    }
    const error = params.get('error');
    if (error) {
      const description = params.get('error_description');
      throw loginFailed(`the identity provider refused the sign-in: ${error}${description ? `: ${description}` : ''}`);
    }
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(configuration, new URL(`${redirectUri}${callback.url.search}`), {
        pkceCodeVerifier: codeVerifier,
        expectedState: state,
        expectedNonce: nonce,
        idTokenExpected: true,
      }, idp.resource ? { resource: idp.resource } : undefined);
    } catch (grantError) {
      throw loginFailed(`the identity provider did not accept the sign-in response: ${oauthErrorText(grantError)}`, { cause: grantError });
    }
    if (!tokens.id_token) throw loginFailed('the identity provider returned no ID token (is "openid" among the scopes?)');
    return {
      subjectToken: tokens.id_token,
      nonce,
      ...(tokens.refresh_token ? { refreshToken: tokens.refresh_token } : {}),
      complete,
    };
  } catch (error) {
    complete({ ok: false, message: (error as Error).message });
    throw error;
  }
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** A self-contained page: no script, no external resources, not cacheable, not frameable. */
function sendPage(response: ServerResponse, status: number, title: string, message: string): void {
  if (response.headersSent) return;
  response.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    'referrer-policy': 'no-referrer',
    connection: 'close',
  });
  response.end(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dbgate: ${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}</style></head>
<body><h1>dbgate: ${escapeHtml(title)}</h1><p id="message"${status >= 400 ? ' role="alert"' : ''}>${escapeHtml(message)}</p>
<p>You can close this window and return to your terminal.</p></body></html>
`);
}
