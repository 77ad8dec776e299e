/**
 * The embedded OpenID Provider of `dbgate-gateway dev`: oidc-provider 9 on 127.0.0.1 serving the demo people and
 * agent of dev-identities.ts. The gateway trusts it exactly as it trusts Okta or Keycloak — OIDC discovery and
 * JWKS — so nothing dev-specific sits in the gateway's verification path.
 *
 * What it offers:
 * - `dbgate-cli`, a public native client: authorization code + PKCE S256 with loopback redirects
 *   (`http://127.0.0.1:<any port>/callback`, RFC 8252 §7.3), the device grant (RFC 8628), refresh tokens with
 *   `offline_access`.
 * - `report-bot`, a confidential agent: client credentials, and token exchange (RFC 8693) to act for a person,
 *   which puts `act: { sub: 'report-bot' }` into the token.
 * - Access tokens for the gateway are JWTs (`aud: dbgate-gateway`, `typ: at+jwt`) with `email`, `name`, `groups`
 *   and `dbgate_kind`; ID tokens carry `email`, `name` and `groups`.
 * - A plain HTML login page (inputs `login` and `password`, one submit button) that asks who you are on every
 *   sign-in, so one browser can switch between alice, bob and carol; consent is implicit for the dev clients.
 *
 * Signing keys, cookie keys and the agent's secret persist under `<stateDir>/secrets` (mode 0600), so tokens and
 * the agent's configuration survive a restart. Grants, sessions and refresh tokens live in memory: after a restart,
 * `dbgate login` again.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  type JWK,
  type JWTPayload,
} from 'jose';
import { DbgateError } from '../shared/errors.js';
import {
  DEV_AGENT_CLIENT_ID,
  DEV_CLI_CLIENT_ID,
  DEV_GATEWAY_AUDIENCE,
  DEV_GATEWAY_RESOURCE,
  DEV_GROUPS_CLAIM,
  DEV_KIND_CLAIM,
  DEV_PASSWORD,
  DEV_PEOPLE,
  findDevAgent,
  findDevPerson,
  type DevIdentityKind,
  type DevPerson,
} from './dev-identities.js';

export interface DevIdpOptions {
  /** TCP port on 127.0.0.1; 0 picks a free one (the issuer then carries the real port). */
  port: number;
  /** Persists `secrets/idp-jwks.json`, `secrets/idp-cookie-keys.json` and `secrets/idp-report-bot-secret` (0600). */
  stateDir: string;
  /** Receives oidc-provider's own notices and internal errors, one line each; default: discarded. */
  log?: (line: string) => void;
}

export interface DevIdp {
  /** `http://127.0.0.1:<port>`, exactly as discovery and every token's `iss` spell it (no trailing slash). */
  issuer: string;
  /** The client secret of `report-bot` (client_secret_basic or client_secret_post). */
  agentClientSecret: string;
  /** Stops listening and closes every connection, keep-alive ones included. */
  close(): Promise<void>;
}

export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';
export const TOKEN_EXCHANGE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 8693 §3 token type identifiers. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';

/** The one registered redirect URI of `dbgate-cli`; any port is accepted for it (native client, RFC 8252 §7.3). */
export const DEV_CLI_REDIRECT_URI = 'http://127.0.0.1/callback';
/** Every scope the dev IdP knows; `groups` releases the `groups` claim. */
const OIDC_SCOPES = ['openid', 'offline_access', 'email', 'profile', DEV_GROUPS_CLAIM] as const;
/** What the gateway resource server accepts; the scope of gateway access tokens is a subset. */
const GATEWAY_SCOPE = `openid email profile ${DEV_GROUPS_CLAIM}`;
const SIGNING_ALG = 'RS256';
/** RFC 8628 §3.2 `interval`: oidc-provider sends none, so clients would wait their 5 s default between polls. */
const DEVICE_POLL_INTERVAL_SECONDS = 1;
const MAX_FORM_BYTES = 16 * 1024;

const TTL_SECONDS = {
  AccessToken: 15 * 60,
  AuthorizationCode: 60,
  ClientCredentials: 15 * 60,
  DeviceCode: 10 * 60,
  IdToken: 15 * 60,
  Interaction: 60 * 60,
  RefreshToken: 14 * 24 * 60 * 60,
  Session: 14 * 24 * 60 * 60,
  Grant: 14 * 24 * 60 * 60,
} as const;

// ---------------------------------------------------------------------------------------------------------------
// The subset of oidc-provider 9 used here. The package ships no type declarations, so its surface is typed where it
// is loaded (loadOidcProvider) and nowhere else.

interface ProviderClient {
  clientId: string;
  clientName?: string;
}

/** A Koa context as oidc-provider hands it to configuration functions, grant handlers and middleware. */
interface ProviderContext {
  method: string;
  path: string;
  querystring: string;
  status: number;
  body: unknown;
  oidc?: {
    route?: string;
    client?: ProviderClient;
    params?: Record<string, unknown>;
    result?: { login?: unknown };
  };
}

interface ProviderToken {
  kind: string;
  clientId: string;
  accountId?: string;
  scope?: string;
}

interface ProviderAccessToken extends ProviderToken {
  readonly expiration: number;
  save(): Promise<string>;
}

interface ProviderGrant {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}

interface ResourceServerInfo {
  scope: string;
  audience: string;
  accessTokenTTL: number;
  accessTokenFormat: 'jwt';
  jwt: { sign: { alg: string } };
}

interface InteractionDetails {
  uid: string;
  prompt: {
    name: string;
    details: {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
  };
  params: Record<string, unknown>;
  session?: { accountId: string };
  grantId?: string;
}

interface ProviderInstance {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    options?: { mergeWithLastSubmission: boolean },
  ): Promise<void>;
  pathFor(routeName: string): string;
  registerGrantType(name: string, handler: (ctx: ProviderContext) => Promise<void>, params: readonly string[]): void;
  use(middleware: (ctx: ProviderContext, next: () => Promise<void>) => Promise<void>): void;
  on(event: 'server_error', listener: (ctx: ProviderContext, error: Error) => void): void;
  on(event: 'error', listener: (error: Error) => void): void;
  Grant: {
    new (init: { accountId: string; clientId: string }): ProviderGrant;
    find(id: string): Promise<ProviderGrant | undefined>;
  };
  AccessToken: new (init: {
    accountId: string;
    client: ProviderClient;
    gty: string;
    scope: string;
    resourceServer: object;
  }) => ProviderAccessToken;
  ResourceServer: new (identifier: string, info: ResourceServerInfo) => object;
}

type OidcErrorClass = new (description?: string) => Error;

interface OidcProviderModule {
  default: new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance;
  errors: {
    InvalidRequest: OidcErrorClass;
    InvalidTarget: OidcErrorClass;
    SessionNotFound: OidcErrorClass;
    InvalidScope: new (description: string, scope: string) => Error;
    CustomOIDCProviderError: new (error: string, description: string) => Error;
  };
  interactionPolicy: {
    base(): Array<{ name: string; checks: unknown[] }>;
    Check: new (reason: string, description: string, check: (ctx: ProviderContext) => boolean) => unknown;
  };
}

/**
 * oidc-provider prints notices with console.info/console.warn (stdout/stderr): at import time on Node 20 ("Unsupported
 * runtime", it works fine) and when a default it wants replaced is used. The configuration below replaces every
 * default the dev flows reach; what remains — the import-time warning — goes to `log`, so `dbgate-gateway dev --json`
 * keeps exactly one line on stdout. Only lines that start with oidc-provider's prefix are taken; anything else
 * written meanwhile passes through untouched.
 */
async function withOidcProviderConsoleRouted<T>(log: (line: string) => void, work: () => Promise<T> | T): Promise<T> {
  const { info, warn } = console;
  const route = (original: (...args: unknown[]) => void) => (...args: unknown[]): void => {
    const first = args[0];
    // oidc-provider colours its notices when the stream is a TTY.
    const plain = typeof first === 'string' ? first.replace(/\x1b\[[0-9;]*m/g, '') : undefined;
    if (plain?.startsWith('oidc-provider ')) log(plain);
    else original.apply(console, args);
  };
  console.info = route(info);
  console.warn = route(warn);
  try {
    return await work();
  } finally {
    console.info = info;
    console.warn = warn;
  }
}

async function loadOidcProvider(log: (line: string) => void): Promise<OidcProviderModule> {
  return withOidcProviderConsoleRouted(log, async () =>
    // @ts-expect-error -- oidc-provider 9 ships no type declarations; OidcProviderModule types what is used.
    (await import('oidc-provider')) as OidcProviderModule);
}

// ---------------------------------------------------------------------------------------------------------------
// Persisted secrets

/** The file's content, or `create()`'s written to it (owner-only); when two processes race, the first file wins. */
export async function readOrCreateSecretFile(path: string, create: () => Promise<string> | string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const content = await create();
  try {
    // 'wx': if another process created it meanwhile, theirs wins and we read it back.
    await writeFile(path, content, { mode: 0o600, flag: 'wx' });
    return content;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return readFile(path, 'utf8');
  }
}

function corruptStateFile(path: string, cause?: unknown): DbgateError {
  return new DbgateError('CONFIG_INVALID', `dev IdP state file is damaged: ${path}`, {
    hint: 'delete it and restart dbgate-gateway dev (existing dev logins end; run dbgate login again)',
    cause,
  });
}

/** The IdP's signing key set: one RS256 key, generated once, so tokens stay verifiable across restarts. */
async function loadSigningJwks(path: string): Promise<{ keys: JWK[] }> {
  const text = await readOrCreateSecretFile(path, async () => {
    const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true, modulusLength: 2048 });
    const jwk = await exportJWK(privateKey);
    const key = { ...jwk, kid: await calculateJwkThumbprint(jwk), alg: SIGNING_ALG, use: 'sig' };
    return `${JSON.stringify({ keys: [key] }, null, 2)}\n`;
  });
  let jwks: unknown;
  try {
    jwks = JSON.parse(text);
  } catch (error) {
    throw corruptStateFile(path, error);
  }
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw corruptStateFile(path);
  for (const key of keys as JWK[]) {
    if (key.kty !== 'RSA' || typeof key.d !== 'string' || typeof key.kid !== 'string') throw corruptStateFile(path);
  }
  return { keys: keys as JWK[] };
}

function publicJwk(jwk: JWK): JWK {
  const { kty, n, e, kid, alg, use } = jwk;
  return { kty, n, e, kid, alg, use } as JWK;
}

async function loadCookieKeys(path: string): Promise<string[]> {
  const text = await readOrCreateSecretFile(path, () => `${JSON.stringify([randomBytes(32).toString('base64url')])}\n`);
  let keys: unknown;
  try {
    keys = JSON.parse(text);
  } catch (error) {
    throw corruptStateFile(path, error);
  }
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((key) => typeof key === 'string' && key.length >= 32)) {
    throw corruptStateFile(path);
  }
  return keys as string[];
}

async function loadAgentSecret(path: string): Promise<string> {
  const secret = (await readOrCreateSecretFile(path, () => `${randomBytes(32).toString('base64url')}\n`)).trim();
  if (secret.length < 32) throw corruptStateFile(path);
  return secret;
}

// ---------------------------------------------------------------------------------------------------------------
// Storage: oidc-provider's own in-memory adapter prints a warning, so the dev IdP brings an equivalent one.

interface StoredPayload {
  grantId?: string;
  userCode?: string;
  uid?: string;
  consumed?: number;
  [key: string]: unknown;
}

interface StoredEntry {
  payload: StoredPayload;
  expiresAt: number;
}

/**
 * In-memory storage for oidc-provider models (the adapter interface: upsert, find, findByUid, findByUserCode,
 * consume, destroy, revokeByGrantId). One store per IdP, so two IdPs in one process stay apart.
 */
function createMemoryAdapterFactory(): (model: string) => object {
  const entries = new Map<string, StoredEntry>();
  const now = (): number => Date.now();
  const live = (key: string): StoredEntry | undefined => {
    const entry = entries.get(key);
    if (entry && entry.expiresAt <= now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  };
  // Expired entries are dropped when read, and swept now and then so a long dev session does not accumulate them.
  let writes = 0;
  const sweep = (): void => {
    for (const key of entries.keys()) live(key);
  };
  return (model: string) => {
    const keyOf = (id: string): string => `${model}:${id}`;
    return {
      async upsert(id: string, payload: StoredPayload, expiresIn?: number): Promise<void> {
        const expiresAt = typeof expiresIn === 'number' ? now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
        entries.set(keyOf(id), { payload: structuredClone(payload), expiresAt });
        if (++writes % 100 === 0) sweep();
      },
      async find(id: string): Promise<StoredPayload | undefined> {
        const entry = live(keyOf(id));
        return entry ? structuredClone(entry.payload) : undefined;
      },
      async findByUid(uid: string): Promise<StoredPayload | undefined> {
        for (const key of entries.keys()) {
          const entry = key.startsWith(`${model}:`) ? live(key) : undefined;
          if (entry?.payload.uid === uid) return structuredClone(entry.payload);
        }
        return undefined;
      },
      async findByUserCode(userCode: string): Promise<StoredPayload | undefined> {
        for (const key of entries.keys()) {
          const entry = key.startsWith(`${model}:`) ? live(key) : undefined;
          if (entry?.payload.userCode === userCode) return structuredClone(entry.payload);
        }
        return undefined;
      },
      async consume(id: string): Promise<void> {
        const entry = live(keyOf(id));
        if (entry) entry.payload.consumed = Math.floor(now() / 1000);
      },
      async destroy(id: string): Promise<void> {
        entries.delete(keyOf(id));
      },
      async revokeByGrantId(grantId: string): Promise<void> {
        for (const [key, entry] of entries) {
          if (entry.payload.grantId === grantId) entries.delete(key);
        }
      },
    };
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Pages. Plain HTML, no script, no external resources: the login page must work in any browser, offline.

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · dbgate dev IdP</title>
<style>
body{font-family:system-ui,sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box;font-size:1rem}
button{margin-top:1rem;padding:.5rem 1rem;font-size:1rem}.error{color:#b00020;font-weight:600}.hint{color:#666;font-size:.9rem}
code{font-size:1.4rem;letter-spacing:.1rem}
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>
`;
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
  res.end(html);
}

const DEV_USERS_HINT = `<p class="hint">Dev users: ${DEV_PEOPLE.map((person) =>
  `<strong>${escapeHtml(person.id)}</strong> (${escapeHtml(person.groups.join(', '))})`).join(', ')}.
Password: <strong>${escapeHtml(DEV_PASSWORD)}</strong>. Dev only.</p>`;

function loginPage(uid: string, clientId: string, login: string, error: string | undefined): string {
  const action = `/interaction/${encodeURIComponent(uid)}`;
  return page('Sign in to dbgate', `<p>to continue to <strong>${escapeHtml(clientId)}</strong></p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${action}">
<label for="login">Login</label>
<input id="login" name="login" autocomplete="username" required${login ? ` value="${escapeHtml(login)}"` : ' autofocus'}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required${login ? ' autofocus' : ''}>
<button type="submit">Sign in</button>
</form>
${DEV_USERS_HINT}
<p><a href="${action}/abort">Cancel sign-in</a></p>`);
}

/**
 * The device flow's pages (RFC 8628 §3.3). oidc-provider supplies the forms (with their xsrf field); the buttons sit
 * outside them and point at them with the `form` attribute, which needs no script.
 */
const deviceFlowPages = {
  async userCodeInputSource(ctx: ProviderContext, form: string, _out: unknown, error?: Error & { userCode?: string }) {
    let message = '<p>Enter the code shown in your terminal.</p>';
    if (error?.userCode !== undefined || error?.name === 'NoCodeError') {
      message = '<p class="error" role="alert">That code is not valid (or it expired). Check your terminal and try again.</p>';
    } else if (error?.name === 'AbortedError') {
      message = '<p class="error" role="alert">The sign-in was cancelled. Start again from your terminal.</p>';
    } else if (error) {
      message = '<p class="error" role="alert">That did not work. Start again from your terminal.</p>';
    }
    ctx.body = page('Sign in a device', `${message}\n${form}\n<button type="submit" form="op.deviceInputForm">Continue</button>`);
  },
  async userCodeConfirmSource(ctx: ProviderContext, form: string, client: ProviderClient, _info: unknown, userCode: string) {
    ctx.body = page('Confirm the device', `<p><strong>${escapeHtml(client.clientName ?? client.clientId)}</strong> asks to sign in.
Continue only if your terminal shows this code:</p>
<p><code>${escapeHtml(userCode)}</code></p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`);
  },
  async successSource(ctx: ProviderContext) {
    ctx.body = page('Signed in', '<p>You are signed in. Close this window and return to your terminal.</p>');
  },
};

async function renderError(ctx: ProviderContext, out: { error?: string; error_description?: string }): Promise<void> {
  // oidc-provider sets the status; the page shows the OAuth error, never a stack.
  ctx.body = page('Sign-in failed', `<p class="error" role="alert">${escapeHtml(out.error ?? 'server_error')}</p>
<p>${escapeHtml(out.error_description ?? 'Something went wrong.')}</p>
<p>Start again from your terminal.</p>`);
}

const logoutPages = {
  async logoutSource(ctx: ProviderContext, form: string) {
    ctx.body = page('Sign out', `<p>Sign out of the dbgate dev IdP?</p>\n${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>`);
  },
  async postLogoutSuccessSource(ctx: ProviderContext) {
    ctx.body = page('Signed out', '<p>You are signed out of the dbgate dev IdP.</p>');
  },
};

/**
 * oidc-provider follows OpenID Connect Core §11 to the letter: it drops `offline_access` (so issues no refresh token)
 * unless the authorization request says `prompt=consent`. Okta, Keycloak and Azure AD issue refresh tokens for
 * `offline_access` alone, and on Azure AD `prompt=consent` would show a consent screen on every login, so the CLI
 * does not send it. The dev IdP adds it instead; consent is implicit here anyway. `prompt=none` stays as it is.
 */
function requestConsentWithOfflineAccess(ctx: ProviderContext): void {
  const query = new URLSearchParams(ctx.querystring);
  if (!query.get('scope')?.split(' ').includes('offline_access')) return;
  const prompts = new Set(query.get('prompt')?.split(' ').filter(Boolean));
  if (prompts.has('none') || prompts.has('consent')) return;
  prompts.add('consent');
  query.set('prompt', [...prompts].join(' '));
  ctx.querystring = query.toString();
}

// ---------------------------------------------------------------------------------------------------------------
// Claims

function personClaims(person: DevPerson): Record<string, unknown> {
  return { email: person.email, email_verified: true, name: person.name, [DEV_GROUPS_CLAIM]: [...person.groups] };
}

/** RFC 8693 §4.1 actor claim: the current actor outermost, earlier actors nested inside. */
interface ActorClaim {
  sub: string;
  act?: ActorClaim;
}

function constantTimeEquals(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

interface ProviderSetup {
  jwks: { keys: JWK[] };
  cookieKeys: string[];
  agentClientSecret: string;
  oidc: OidcProviderModule;
  log: (line: string) => void;
}

/** The configured oidc-provider behind the dev IdP's own routes (login page, implicit consent) at `issuer`. */
async function createProviderHandler(
  issuer: string,
  { jwks, cookieKeys, agentClientSecret, oidc, log }: ProviderSetup,
): Promise<(req: IncomingMessage, res: ServerResponse) => void> {
  const { errors, interactionPolicy } = oidc;
  const gatewayResourceServer: ResourceServerInfo = {
    scope: GATEWAY_SCOPE,
    audience: DEV_GATEWAY_AUDIENCE,
    accessTokenTTL: TTL_SECONDS.AccessToken,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: SIGNING_ALG } },
  };
  /** Actor chains of tokens being issued by token exchange, read back by extraTokenClaims. */
  const actors = new WeakMap<object, ActorClaim>();

  // Every sign-in asks who you are, even with a live IdP session: one browser switches between the dev people.
  // (The prompt is satisfied by the login result of the same authorization request.)
  const policy = interactionPolicy.base();
  policy.find((prompt) => prompt.name === 'login')?.checks.push(new interactionPolicy.Check(
    'dev_choose_identity',
    'the dev IdP asks who is signing in on every authorization',
    (ctx) => !ctx.oidc?.result?.login,
  ));

  const configuration: Record<string, unknown> = {
    adapter: createMemoryAdapterFactory(),
    jwks,
    cookies: { keys: cookieKeys },
    clients: [
      {
        client_id: DEV_CLI_CLIENT_ID,
        client_name: 'dbgate CLI',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        redirect_uris: [DEV_CLI_REDIRECT_URI],
        response_types: ['code'],
        grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT_TYPE],
        scope: OIDC_SCOPES.join(' '),
      },
      {
        client_id: DEV_AGENT_CLIENT_ID,
        client_name: findDevAgent(DEV_AGENT_CLIENT_ID)?.name ?? DEV_AGENT_CLIENT_ID,
        client_secret: agentClientSecret,
        // client_secret_post is accepted too: oidc-provider treats the two as one method.
        token_endpoint_auth_method: 'client_secret_basic',
        response_types: [],
        redirect_uris: [],
        grant_types: ['client_credentials', TOKEN_EXCHANGE_GRANT_TYPE],
      },
    ],
    scopes: [...OIDC_SCOPES],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      [DEV_GROUPS_CLAIM]: [DEV_GROUPS_CLAIM],
    },
    async findAccount(_ctx: ProviderContext, sub: string) {
      const person = findDevPerson(sub);
      if (!person || person.id !== sub) return undefined;
      return { accountId: person.id, claims: async () => ({ sub: person.id, ...personClaims(person) }) };
    },
    async extraTokenClaims(_ctx: ProviderContext, token: ProviderToken) {
      if (token.kind === 'ClientCredentials') {
        const agent = findDevAgent(token.clientId);
        if (!agent) return undefined;
        return { [DEV_GROUPS_CLAIM]: [...agent.groups], [DEV_KIND_CLAIM]: 'agent' satisfies DevIdentityKind };
      }
      const person = token.accountId === undefined ? undefined : findDevPerson(token.accountId);
      if (!person) return undefined;
      const act = actors.get(token);
      const kind: DevIdentityKind = act ? 'agent' : 'human';
      return { email: person.email, name: person.name, [DEV_GROUPS_CLAIM]: [...person.groups], [DEV_KIND_CLAIM]: kind, ...(act ? { act } : {}) };
    },
    // PKCE S256 on every authorization request (oidc-provider 9 implements S256 only).
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true, ...deviceFlowPages },
      revocation: {
        enabled: true,
        // RFC 7009: a client may revoke its own tokens, so `dbgate logout` can drop its refresh token.
        allowedPolicy: async (_ctx: ProviderContext, client: ProviderClient, token: ProviderToken) =>
          token.clientId === client.clientId,
      },
      rpInitiatedLogout: { enabled: true, ...logoutPages },
      resourceIndicators: {
        enabled: true,
        // Every token request is for the gateway unless it names a resource.
        defaultResource: async () => DEV_GATEWAY_RESOURCE,
        // Refresh and code exchange keep the resource granted at authorization, so they too yield gateway JWTs.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: ProviderContext, resourceIndicator: string) => {
          if (resourceIndicator !== DEV_GATEWAY_RESOURCE) {
            throw new errors.InvalidTarget(`the dev IdP only issues tokens for ${DEV_GATEWAY_RESOURCE}`);
          }
          return gatewayResourceServer;
        },
      },
    },
    interactions: {
      policy,
      url: async (_ctx: ProviderContext, interaction: { uid: string }) => `/interaction/${interaction.uid}`,
    },
    // No dev client runs in a browser, so no cross-origin calls to the token endpoint are allowed.
    clientBasedCORS: () => false,
    renderError,
    ttl: { ...TTL_SECONDS },
  };

  const provider = await withOidcProviderConsoleRouted(log, () => new oidc.default(issuer, configuration));
  provider.on('server_error', (ctx, error) => log(`dev IdP: internal error on ${ctx.method} ${ctx.path}: ${error.stack ?? String(error)}`));
  // A listener replaces Koa's default one, which prints to stderr.
  provider.on('error', (error) => log(`dev IdP: ${error.stack ?? String(error)}`));
  const authorizationPath = provider.pathFor('authorization');
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === authorizationPath) requestConsentWithOfflineAccess(ctx);
    await next();
    if (ctx.oidc?.route === 'device_authorization' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      (ctx.body as Record<string, unknown>)['interval'] = DEVICE_POLL_INTERVAL_SECONDS;
    }
  });

  const localKeys = createLocalJWKSet({ keys: jwks.keys.map(publicJwk) });

  /**
   * RFC 8693 token exchange: the authenticated client (the actor) presents a person's token issued by this IdP and
   * receives a gateway access token for that person with itself in `act`.
   */
  async function exchangeToken(ctx: ProviderContext): Promise<void> {
    const params = ctx.oidc?.params ?? {};
    const client = ctx.oidc?.client;
    if (!client) throw new errors.InvalidRequest('client authentication is required');
    const param = (name: string): string | undefined => {
      const value = params[name];
      return typeof value === 'string' && value !== '' ? value : undefined;
    };
    const subjectToken = param('subject_token');
    const subjectTokenType = param('subject_token_type');
    if (!subjectToken) throw new errors.InvalidRequest('missing required parameter subject_token');
    if (!subjectTokenType) throw new errors.InvalidRequest('missing required parameter subject_token_type');
    if (subjectTokenType !== ACCESS_TOKEN_TYPE && subjectTokenType !== ID_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`unsupported subject_token_type; use ${ACCESS_TOKEN_TYPE} or ${ID_TOKEN_TYPE}`);
    }
    if (param('actor_token') || param('actor_token_type')) {
      throw new errors.InvalidRequest('actor_token is not supported: the authenticated client is the actor');
    }
    const requestedType = param('requested_token_type');
    if (requestedType && requestedType !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`unsupported requested_token_type; only ${ACCESS_TOKEN_TYPE} is issued`);
    }
    const resource = param('resource');
    const audience = param('audience');
    if ((resource && resource !== DEV_GATEWAY_RESOURCE) || (audience && audience !== DEV_GATEWAY_AUDIENCE)) {
      throw new errors.InvalidTarget(`the dev IdP only issues tokens for ${DEV_GATEWAY_RESOURCE} (audience ${DEV_GATEWAY_AUDIENCE})`);
    }

    // The subject token must be this IdP's own: its signature, issuer, audience and expiry are checked here.
    let subject: JWTPayload;
    try {
      ({ payload: subject } = await jwtVerify(subjectToken, localKeys, subjectTokenType === ACCESS_TOKEN_TYPE
        ? { issuer, audience: DEV_GATEWAY_AUDIENCE, algorithms: [SIGNING_ALG], typ: 'at+jwt' }
        : { issuer, audience: DEV_CLI_CLIENT_ID, algorithms: [SIGNING_ALG] }));
    } catch {
      throw new errors.CustomOIDCProviderError('invalid_grant', 'subject_token is not a valid, unexpired token of this issuer');
    }
    const person = typeof subject.sub === 'string' ? findDevPerson(subject.sub) : undefined;
    if (!person || person.id !== subject.sub) {
      throw new errors.CustomOIDCProviderError('invalid_grant', 'subject_token does not identify a person');
    }

    const gatewayScopes = new Set(GATEWAY_SCOPE.split(' '));
    const requestedScope = param('scope');
    let scopes: string[];
    if (requestedScope) {
      scopes = requestedScope.split(' ');
      const unknown = scopes.find((scope) => !gatewayScopes.has(scope));
      if (unknown) throw new errors.InvalidScope('requested scope is not available for the gateway', unknown);
    } else {
      const subjectScope = typeof subject['scope'] === 'string' ? subject['scope'].split(' ') : [...gatewayScopes];
      scopes = subjectScope.filter((scope) => gatewayScopes.has(scope));
    }

    const previousActor = subject['act'];
    const act: ActorClaim = previousActor && typeof previousActor === 'object'
      ? { sub: client.clientId, act: previousActor as ActorClaim }
      : { sub: client.clientId };

    const token = new provider.AccessToken({
      accountId: person.id,
      client,
      gty: 'token_exchange',
      scope: scopes.join(' '),
      resourceServer: new provider.ResourceServer(DEV_GATEWAY_RESOURCE, gatewayResourceServer),
    });
    actors.set(token, act);
    const accessToken = await token.save();
    ctx.body = {
      access_token: accessToken,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      ...(token.scope ? { scope: token.scope } : {}),
    };
  }
  provider.registerGrantType(TOKEN_EXCHANGE_GRANT_TYPE, exchangeToken, [
    'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type',
    'resource', 'audience', 'scope',
  ]);

  /** GET: the login page, or — for the consent prompt — implicit consent. POST: check the password. */
  async function handleInteraction(req: IncomingMessage, res: ServerResponse, uid: string, abort: boolean): Promise<void> {
    let interaction: InteractionDetails;
    try {
      interaction = await provider.interactionDetails(req, res);
      if (interaction.uid !== uid) throw new errors.SessionNotFound('interaction cookie names another sign-in');
    } catch (error) {
      if (!(error instanceof errors.SessionNotFound)) throw error;
      sendHtml(res, 400, page('Sign-in expired', `<p class="error" role="alert">This sign-in has expired or was
opened in another browser.</p><p>Start again from your terminal.</p>`));
      return;
    }
    const clientId = String(interaction.params['client_id'] ?? '');

    if (abort) {
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'the person cancelled the sign-in',
      }, { mergeWithLastSubmission: false });
      return;
    }

    if (interaction.prompt.name === 'consent') {
      // Implicit consent: the dev clients are first party, so whatever they asked for is granted, offline_access
      // included (that is what makes a refresh token). Native clients always get this round (oidc-provider's
      // native_client_prompt); it is invisible, a redirect.
      const { details } = interaction.prompt;
      const accountId = interaction.session?.accountId;
      if (!accountId) throw new Error('consent prompt without a signed-in person');
      const grant = (interaction.grantId ? await provider.Grant.find(interaction.grantId) : undefined)
        ?? new provider.Grant({ accountId, clientId });
      if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
      if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }

    if (interaction.prompt.name !== 'login') {
      sendHtml(res, 400, page('Sign-in failed', `<p class="error" role="alert">Unsupported sign-in step
${escapeHtml(interaction.prompt.name)}.</p><p>Start again from your terminal.</p>`));
      return;
    }

    const loginHint = typeof interaction.params['login_hint'] === 'string' ? interaction.params['login_hint'] : '';
    if (req.method !== 'POST') {
      sendHtml(res, 200, loginPage(uid, clientId, loginHint, undefined));
      return;
    }
    const form = await readForm(req);
    const login = form.get('login') ?? '';
    const person = findDevPerson(login);
    // Compare the password even for an unknown login, so both failures take the same time.
    const passwordMatches = constantTimeEquals(form.get('password') ?? '', DEV_PASSWORD);
    if (!person || !passwordMatches) {
      sendHtml(res, 200, loginPage(uid, clientId, login, 'Wrong login or password. Try again.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: person.id } }, { mergeWithLastSubmission: false });
  }

  const providerCallback = provider.callback();
  return (req, res) => {
    const path = new URL(req.url ?? '/', issuer).pathname;
    const match = /^\/interaction\/([A-Za-z0-9_-]+)(\/abort)?$/.exec(path);
    if (!match) {
      providerCallback(req, res);
      return;
    }
    const allowed = match[2] ? req.method === 'GET' : req.method === 'GET' || req.method === 'POST';
    if (!allowed) {
      res.writeHead(405, { Allow: match[2] ? 'GET' : 'GET, POST' }).end();
      return;
    }
    handleInteraction(req, res, match[1]!, match[2] !== undefined).catch((error: unknown) => {
      log(`dev IdP: internal error on ${req.method} ${path}: ${(error as Error).stack ?? String(error)}`);
      if (!res.headersSent) sendHtml(res, 500, page('Sign-in failed', '<p>The dev IdP hit an internal error; see its log.</p>'));
      else res.destroy();
    });
  };
}

/** Starts the dev IdP and resolves once it accepts requests at `issuer`. */
export async function startDevIdp(options: DevIdpOptions): Promise<DevIdp> {
  const log = options.log ?? ((): void => {});
  const secretsDir = join(options.stateDir, 'secrets');
  await mkdir(secretsDir, { recursive: true, mode: 0o700 });
  const [jwks, cookieKeys, agentClientSecret, oidc] = await Promise.all([
    loadSigningJwks(join(secretsDir, 'idp-jwks.json')),
    loadCookieKeys(join(secretsDir, 'idp-cookie-keys.json')),
    loadAgentSecret(join(secretsDir, 'idp-report-bot-secret')),
    loadOidcProvider(log),
  ]);

  // Listen first: with port 0 the issuer must name the port the kernel picked.
  let handleRequest: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (handleRequest) handleRequest(req, res);
    else sendHtml(res, 503, page('Starting', '<p>The dev IdP is starting. Try again in a moment.</p>'));
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException): void => reject(error.code === 'EADDRINUSE'
      ? new DbgateError('USAGE', `the dev IdP cannot listen on 127.0.0.1:${options.port}: the port is in use`, {
        hint: 'stop what uses it, or pick another port (--idp-port N, 0 for a random one)',
        cause: error,
      })
      : error);
    server.once('error', failed);
    server.listen(options.port, '127.0.0.1', () => {
      server.off('error', failed);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;
  try {
    handleRequest = await createProviderHandler(issuer, { jwks, cookieKeys, agentClientSecret, oidc, log });
  } catch (error) {
    server.close();
    throw error;
  }
  return {
    issuer,
    agentClientSecret,
    close: () => new Promise<void>((resolve, reject) => {
      server.close((error) => (error ? reject(error) : resolve()));
      server.closeAllConnections();
    }),
  };
}
