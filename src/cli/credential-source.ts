/**
 * The one place every command gets its dbgate credential from:
 *
 * 1. DBGATE_CREDENTIAL, when set (automation, break-glass): used as is, never refreshed or stored.
 * 2. Otherwise the profile's stored login. A credential with less than two minutes left is renewed first — with the
 *    IdP refresh token (browser and device logins), or by logging the agent in again (client credentials and token
 *    exchange, whose secrets are in the environment) — and the new one is stored.
 * 3. When neither works: `your dbgate login expired - run: dbgate login`, exit 4.
 *
 * `dbgate connect` keeps one source for its whole life and asks it for every new connection, so new connections
 * always get a fresh credential while connections already open keep theirs.
 */
import * as oidc from 'openid-client';
import type { CredentialResponse } from '../shared/api.js';
import { writeLine, type CommandContext, type SecretStore, type SecretStorageKind } from '../shared/cli-runtime.js';
import { peekCredential, type CredentialSummary } from '../shared/credential-peek.js';
import { formatDuration } from '../shared/duration.js';
import { DbgateError } from '../shared/errors.js';
import { loginExpired } from './cli-errors.js';
import { fetchOf, secretStoreOf } from './context-services.js';
import { GatewayApi } from './gateway-api.js';
import { gatewayUrl } from './gateway-discovery.js';
import { agentLogin, agentSecretsFromEnv } from './login/agent-login.js';
import { discoverIdentityProvider, oauthErrorText } from './login/identity-provider.js';
import {
  configDirectory,
  profileName,
  readCliConfig,
  updateProfile,
  type StoredLoginRecord,
} from './profile/cli-config.js';
import { withRefreshLock } from './profile/refresh-lock.js';
import { parseSecrets, serializeSecrets, type StoredSecrets } from './profile/secret-store.js';
import { sameGateway, unexpired } from './profile/stored-login.js';

/** A stored credential with less time left than this is renewed before it is used. */
export const REFRESH_WHEN_LESS_THAN_MS = 2 * 60_000;
const RENEWAL_RETRY_AFTER_MS = 20_000;

export interface CurrentCredential extends CredentialSummary {
  token: string;
}

export interface CredentialSourceOptions {
  /** `--profile`; default DBGATE_PROFILE, else "default". */
  profile?: string | undefined;
  /** `--gateway`; must match the stored login's gateway when one is used. */
  gateway?: string | undefined;
}

export interface CredentialSource {
  readonly profile: string;
  /** The gateway API the credential is for. */
  readonly gateway: URL;
  /** Where the credential comes from: DBGATE_CREDENTIAL, or the store the login was saved in. */
  readonly storage: { kind: 'env' | SecretStorageKind; location: string };
  /** The stored login's record (absent for DBGATE_CREDENTIAL). */
  readonly login: StoredLoginRecord | undefined;
  /** The credential to present now, renewed first if it is about to expire. */
  credential(): Promise<CurrentCredential>;
  /** Whether the login can be renewed without the user (known after the first `credential()`). */
  renewable(): boolean;
}

/** Opens the source for the given profile and gateway; exit 4 when there is no login to use. */
export async function openCredentialSource(context: CommandContext, options: CredentialSourceOptions = {}): Promise<CredentialSource> {
  const profile = profileName(options.profile, context.env);
  const configDir = configDirectory(context.env);
  const envCredential = context.env['DBGATE_CREDENTIAL']?.trim();
  const config = await readCliConfig(configDir);
  const record = config.profiles[profile];

  if (envCredential) {
    // The gateway is resolved only when a command needs it: `dbgate token` with DBGATE_CREDENTIAL needs none.
    return new EnvironmentCredentialSource(envCredential, profile, () => gatewayUrl(options.gateway, context.env, record?.gateway), context);
  }

  const otherProfiles = profile === 'default' ? '' : ` (profile ${profile})`;
  if (!record?.login) {
    throw new DbgateError('NOT_LOGGED_IN', `you are not logged in to a dbgate gateway${otherProfiles}`, {
      hint: `run: dbgate login${record?.gateway ? '' : ' --gateway <url>'}${profile === 'default' ? '' : ` --profile ${profile}`}` +
        '   (or set DBGATE_CREDENTIAL for automation)',
    });
  }
  const wanted = options.gateway ?? (context.env['DBGATE_GATEWAY'] || undefined);
  if (wanted !== undefined && !sameGateway(wanted, record.gateway)) {
    throw new DbgateError('NOT_LOGGED_IN', `you are logged in to ${record.gateway}${otherProfiles}, not to ${wanted}`, {
      hint: `run: dbgate login --gateway ${wanted} --profile <name>   (profiles keep several gateways apart)`,
    });
  }
  const store = secretStoreOf(context, record.login.storage, profile, configDir);
  return new StoredCredentialSource(context, profile, configDir, new URL(record.gateway), record.login, store);
}

/** Shorthand: the credential to use now. */
export async function currentCredential(context: CommandContext, options: CredentialSourceOptions = {}): Promise<CurrentCredential> {
  return (await openCredentialSource(context, options)).credential();
}

class EnvironmentCredentialSource implements CredentialSource {
  readonly storage = { kind: 'env' as const, location: 'DBGATE_CREDENTIAL' };
  readonly login = undefined;

  renewable(): boolean {
    return false;
  }

  constructor(
    private readonly token: string,
    readonly profile: string,
    private readonly resolveGateway: () => URL,
    private readonly context: CommandContext,
  ) {}

  get gateway(): URL {
    return this.resolveGateway();
  }

  async credential(): Promise<CurrentCredential> {
    const summary = peekCredential(this.token);
    if (!summary) {
      throw new DbgateError('CREDENTIAL_INVALID', 'DBGATE_CREDENTIAL does not hold a dbgate credential', {
        hint: 'set it to the output of: dbgate token   (or dbgate-gateway credential mint)',
      });
    }
    const now = this.context.now();
    if (summary.expiresAt <= now) {
      throw new DbgateError('CREDENTIAL_EXPIRED',
        `your dbgate login expired ${formatDuration(now - summary.expiresAt)} ago - run: dbgate login`, {
          hint: 'the credential in DBGATE_CREDENTIAL has expired: unset it, or set it to a current one (dbgate token)',
        });
    }
    return { ...summary, token: this.token };
  }
}

class StoredCredentialSource implements CredentialSource {
  readonly storage: { kind: SecretStorageKind; location: string };
  private current: CurrentCredential | undefined;
  private hasRefreshToken = false;
  /** After a failed renewal, the still-valid credential is used without retrying until then (an IdP outage must
   * not make every new tunnel connection wait for a timeout). */
  private retryRenewalAt = 0;
  private renewing: Promise<CurrentCredential> | undefined;
  private warned = false;

  constructor(
    private readonly context: CommandContext,
    readonly profile: string,
    private readonly configDir: string,
    readonly gateway: URL,
    public login: StoredLoginRecord,
    private readonly store: SecretStore,
  ) {
    this.storage = { kind: store.kind, location: store.location };
  }

  async credential(): Promise<CurrentCredential> {
    if (this.current && this.fresh(this.current)) return this.current;
    const secrets = await this.readSecrets();
    const credential = this.summarize(secrets);
    if (this.fresh(credential)) {
      this.current = credential;
      return credential;
    }
    if (this.context.now() < this.retryRenewalAt && credential.expiresAt > this.context.now()) return credential;
    // One renewal at a time in this process; the file lock covers other processes.
    this.renewing ??= this.renew().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  renewable(): boolean {
    if (this.login.method === 'browser' || this.login.method === 'device') return this.hasRefreshToken;
    try {
      return agentSecretsFromEnv(this.context.env, this.login.method === 'token_exchange').clientId === this.login.idp.client_id;
    } catch {
      return false;
    }
  }

  private fresh(credential: CurrentCredential): boolean {
    return credential.expiresAt - this.context.now() >= REFRESH_WHEN_LESS_THAN_MS;
  }

  private async readSecrets(): Promise<StoredSecrets> {
    const value = await this.store.read();
    const secrets = value === null ? null : parseSecrets(value);
    if (!secrets) {
      throw new DbgateError('NOT_LOGGED_IN', `your stored login is missing from ${this.store.location}`, {
        hint: 'run: dbgate login',
      });
    }
    this.hasRefreshToken = secrets.refresh_token !== undefined;
    return secrets;
  }

  private summarize(secrets: StoredSecrets): CurrentCredential {
    const summary = peekCredential(secrets.credential);
    if (!summary) {
      throw new DbgateError('NOT_LOGGED_IN', `the login stored in ${this.store.location} holds no dbgate credential`, {
        hint: 'run: dbgate login',
      });
    }
    return { ...summary, token: secrets.credential };
  }

  private async renew(): Promise<CurrentCredential> {
    return withRefreshLock(this.configDir, this.profile, async () => {
      // Another process may have renewed while this one waited for the lock.
      const latest = await this.readSecrets();
      const stored = this.summarize(latest);
      if (this.fresh(stored)) {
        this.current = stored;
        return stored;
      }
      let renewed: { response: CredentialResponse; refreshToken: string | undefined };
      try {
        renewed = await renewLogin(this.context, this.gateway, this.login, latest);
      } catch (error) {
        const reason = `could not renew it: ${(error as Error).message.replace(/^login failed: /, '')}`;
        const left = stored.expiresAt - this.context.now();
        if (left <= 0) throw loginExpired(reason);
        this.retryRenewalAt = this.context.now() + RENEWAL_RETRY_AFTER_MS;
        if (!this.warned) {
          this.warned = true;
          writeLine(this.context.stderr, `dbgate: your login expires in ${formatDuration(left)} and ${reason}`);
        }
        return stored;
      }
      // IdPs that rotate refresh tokens send a new one; the others keep the old one valid.
      const refreshToken = renewed.refreshToken ?? latest.refresh_token;
      const secrets: StoredSecrets = {
        version: 1,
        credential: renewed.response.credential,
        ...(refreshToken !== undefined ? { refresh_token: refreshToken } : {}),
      };
      // The replaced credential's session may carry live connections: it is kept (to be revoked at logout), not ended.
      const superseded = unexpired([...(latest.superseded ?? []), latest.credential], this.context.now());
      if (superseded.length > 0) secrets.superseded = superseded;
      await this.store.write(serializeSecrets(secrets));
      this.hasRefreshToken = secrets.refresh_token !== undefined;
      this.login = {
        ...this.login,
        identity: renewed.response.identity,
        session_id: renewed.response.session_id,
        expires_at: renewed.response.expires_at,
      };
      const login = this.login;
      await updateProfile(this.configDir, this.profile, (record) => (record ? { ...record, login } : record));
      this.current = this.summarize(secrets);
      return this.current;
    });
  }
}

/** Gets a new credential for a stored login without the user: refresh token, or the agent's own secrets. */
async function renewLogin(
  context: CommandContext,
  gateway: URL,
  login: StoredLoginRecord,
  secrets: StoredSecrets,
): Promise<{ response: CredentialResponse; refreshToken: string | undefined }> {
  const fetchImpl = fetchOf(context);
  const api = new GatewayApi(gateway, fetchImpl);
  const resource = login.idp.resource;
  if (login.method === 'browser' || login.method === 'device') {
    if (!secrets.refresh_token) {
      throw new Error('the identity provider granted no refresh token (offline_access) at login');
    }
    const configuration = await discoverIdentityProvider(login.idp.issuer, login.idp.client_id, fetchImpl);
    let tokens: oidc.TokenEndpointResponse;
    try {
      tokens = await oidc.refreshTokenGrant(configuration, secrets.refresh_token, resource ? { resource } : undefined);
    } catch (error) {
      throw new Error(`the identity provider refused the refresh token (${oauthErrorText(error)})`, { cause: error });
    }
    const subjectToken = tokens.id_token ?? tokens.access_token;
    const response = await api.exchangeIdpToken({ subject_token: subjectToken });
    return { response, refreshToken: tokens.refresh_token };
  }
  const onBehalfOf = login.method === 'token_exchange';
  let agent;
  try {
    agent = agentSecretsFromEnv(context.env, onBehalfOf);
  } catch {
    throw new Error(`an agent login renews with DBGATE_CLIENT_ID and DBGATE_CLIENT_SECRET${onBehalfOf ? ' and DBGATE_SUBJECT_TOKEN' : ''}, which are not set`);
  }
  if (agent.clientId !== login.idp.client_id) {
    throw new Error(`DBGATE_CLIENT_ID is ${agent.clientId}, but the stored login is ${login.idp.client_id}'s`);
  }
  const tokens = await agentLogin({ issuer: login.idp.issuer, clientId: login.idp.client_id, scopes: [], resource, loopbackPathSuffix: false }, agent, fetchImpl);
  return { response: await api.exchangeIdpToken({ subject_token: tokens.subjectToken }), refreshToken: undefined };
}
