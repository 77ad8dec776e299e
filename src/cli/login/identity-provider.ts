/**
 * The identity provider as the CLI sees it: its settings from the gateway's discovery document, an openid-client
 * Configuration from the IdP's own discovery, and OAuth errors turned into sentences.
 */
import * as oidc from 'openid-client';
import type { DiscoveryDocument } from '../../shared/discovery.js';
import { DbgateError } from '../../shared/errors.js';
import { loginFailed } from '../cli-errors.js';
import { networkReason } from '../gateway-api.js';

/** RFC 8693 / RFC 8628 identifiers. */
export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';
export const TOKEN_EXCHANGE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

export interface IdentityProviderSettings {
  issuer: string;
  /** The public client for people (authorization code + PKCE, device flow). */
  clientId: string;
  scopes: string[];
  /**
   * RFC 8707 resource indicator that names the gateway at the IdP, when discovery says (`idp.resource`). Without
   * it the IdP's default resource decides the audience of access tokens.
   */
  resource: string | undefined;
  /**
   * Whether the IdP accepts any path below the registered loopback redirect (`idp.loopback_redirect_path_suffix`),
   * so the CLI can listen on an unguessable `/callback/<random>`. Most IdPs compare the path exactly (RFC 8252 §7.3
   * only frees the port), so the default is the plain `/callback`; the state parameter carries the unguessable part.
   */
  loopbackPathSuffix: boolean;
}

/** The IdP the gateway names in its discovery document; an error when the gateway accepts no logins. */
export function identityProviderOf(discovery: DiscoveryDocument, gateway: URL): IdentityProviderSettings {
  const idp = discovery.idp as (DiscoveryDocument['idp'] & { resource?: unknown; loopback_redirect_path_suffix?: unknown }) | null;
  if (!idp) {
    throw new DbgateError('USAGE', `the gateway at ${gateway.origin} has no identity provider: dbgate login is not available there`, {
      hint: 'ask its operator for a credential (dbgate-gateway credential mint) and set DBGATE_CREDENTIAL',
    });
  }
  return {
    issuer: idp.issuer,
    clientId: idp.client_id,
    scopes: idp.scopes,
    resource: typeof idp.resource === 'string' && idp.resource !== '' ? idp.resource : undefined,
    loopbackPathSuffix: idp.loopback_redirect_path_suffix === true,
  };
}

function isLoopbackHostname(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}

export interface ClientSecretAuthentication {
  clientSecret: string;
}

/**
 * OIDC discovery of the issuer. Plain http is allowed only for a loopback issuer (the dev IdP); anything else must
 * be https, so tokens and secrets never cross a network in clear text.
 */
export async function discoverIdentityProvider(
  issuer: string,
  clientId: string,
  fetchImpl: typeof fetch,
  authentication?: ClientSecretAuthentication,
): Promise<oidc.Configuration> {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw loginFailed(`the gateway names an identity provider that is not a URL: ${issuer}`);
  }
  const insecure = url.protocol === 'http:';
  if (insecure && !isLoopbackHostname(url.hostname)) {
    throw loginFailed(`refusing to talk to the identity provider ${issuer} over plain http`, {
      hint: 'the gateway operator must configure an https issuer',
    });
  }
  const customFetch: oidc.CustomFetch = (input, init) => fetchImpl(input, init as RequestInit);
  try {
    if (!authentication) {
      return await oidc.discovery(url, clientId, undefined, oidc.None(), {
        [oidc.customFetch]: customFetch,
        ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}),
      });
    }
    const configuration = await oidc.discovery(url, clientId, authentication.clientSecret, undefined, {
      [oidc.customFetch]: customFetch,
      ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}),
    });
    // RFC 6749 §2.3.1: every server supports HTTP Basic for client secrets; use POST only if Basic is not offered.
    const methods = configuration.serverMetadata().token_endpoint_auth_methods_supported;
    const basic = !methods || methods.includes('client_secret_basic');
    const configured = new oidc.Configuration(configuration.serverMetadata(), clientId, authentication.clientSecret,
      basic ? oidc.ClientSecretBasic(authentication.clientSecret) : oidc.ClientSecretPost(authentication.clientSecret));
    configured[oidc.customFetch] = customFetch;
    if (insecure) oidc.allowInsecureRequests(configured);
    return configured;
  } catch (error) {
    throw loginFailed(`cannot use the identity provider at ${issuer}: ${oauthErrorText(error)}`, {
      hint: 'check that the identity provider is running and reachable from here',
      cause: error,
    });
  }
}

/** One line for any openid-client failure: the OAuth error code and description, or the network reason. */
export function oauthErrorText(error: unknown): string {
  if (error instanceof oidc.ResponseBodyError || error instanceof oidc.AuthorizationResponseError) {
    return error.error_description ? `${error.error}: ${error.error_description}` : error.error;
  }
  if (error instanceof oidc.WWWAuthenticateChallengeError) {
    // A 401 with a challenge (e.g. a wrong client secret under HTTP Basic): the OAuth error is in the header.
    const parameters = error.cause.find((challenge) => challenge.parameters.error)?.parameters;
    if (!parameters?.error) return `HTTP ${error.status} (the client authentication was refused)`;
    return parameters.error_description ? `${parameters.error}: ${parameters.error_description}` : parameters.error;
  }
  if (error instanceof oidc.ClientError) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return `${error.message}${cause}`;
  }
  if (error instanceof TypeError) return networkReason(error);
  return error instanceof Error ? error.message : String(error);
}

/** The OAuth `error` code of a failed token request, if that is what happened. */
export function oauthErrorCode(error: unknown): string | undefined {
  if (error instanceof oidc.ResponseBodyError || error instanceof oidc.AuthorizationResponseError) return error.error;
  if (error instanceof oidc.WWWAuthenticateChallengeError) {
    return error.cause.find((challenge) => challenge.parameters.error)?.parameters.error;
  }
  return undefined;
}

/** `openid` first, then the rest of discovery's scopes, each once. */
export function scopeParameter(scopes: readonly string[]): string {
  return [...new Set(['openid', ...scopes])].join(' ');
}
