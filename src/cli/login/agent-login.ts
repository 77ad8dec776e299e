/**
 * Machine identities. `--client-credentials`: an agent logs in as itself (OAuth 2.0 client credentials, RFC 6749
 * §4.4) with DBGATE_CLIENT_ID / DBGATE_CLIENT_SECRET. `--on-behalf-of`: the agent acts for a person, exchanging that
 * person's access token (DBGATE_SUBJECT_TOKEN) at the IdP (RFC 8693 token exchange); the IdP puts the agent into
 * the `act` claim, so the gateway's credential — and every audit record — names both.
 *
 * Secrets come from the environment only, never from flags: a command line is visible to every local user in ps.
 */
import * as oidc from 'openid-client';
import { DbgateError } from '../../shared/errors.js';
import { loginFailed } from '../cli-errors.js';
import type { IdpTokens } from './browser-login.js';
import {
  ACCESS_TOKEN_TYPE,
  discoverIdentityProvider,
  oauthErrorText,
  TOKEN_EXCHANGE_GRANT_TYPE,
  type IdentityProviderSettings,
} from './identity-provider.js';

export interface AgentSecrets {
  clientId: string;
  clientSecret: string;
  /** The person's access token, for `--on-behalf-of`. */
  subjectToken?: string;
}

/** Reads DBGATE_CLIENT_ID / DBGATE_CLIENT_SECRET (and DBGATE_SUBJECT_TOKEN when acting for someone). */
export function agentSecretsFromEnv(env: NodeJS.ProcessEnv, onBehalfOf: boolean): AgentSecrets {
  const clientId = env['DBGATE_CLIENT_ID']?.trim();
  const clientSecret = env['DBGATE_CLIENT_SECRET']?.trim();
  const missing = [!clientId && 'DBGATE_CLIENT_ID', !clientSecret && 'DBGATE_CLIENT_SECRET'].filter(Boolean);
  if (missing.length > 0) {
    throw new DbgateError('USAGE', `--client-credentials needs ${missing.join(' and ')} in the environment`, {
      hint: "set them to the agent's OAuth client id and secret (never pass secrets as flags)",
    });
  }
  if (!onBehalfOf) return { clientId: clientId!, clientSecret: clientSecret! };
  const subjectToken = env['DBGATE_SUBJECT_TOKEN']?.trim();
  if (!subjectToken) {
    throw new DbgateError('USAGE', "--on-behalf-of needs the person's IdP access token in DBGATE_SUBJECT_TOKEN", {
      hint: 'the person (or the platform they use the agent through) provides it',
    });
  }
  return { clientId: clientId!, clientSecret: clientSecret!, subjectToken };
}

/** Runs client credentials, or token exchange when `secrets.subjectToken` is set; resolves with an access token. */
export async function agentLogin(idp: IdentityProviderSettings, secrets: AgentSecrets, fetchImpl: typeof fetch): Promise<IdpTokens> {
  const configuration = await discoverIdentityProvider(idp.issuer, secrets.clientId, fetchImpl, { clientSecret: secrets.clientSecret });
  const resource = idp.resource ? { resource: idp.resource } : {};
  let accessToken: string;
  try {
    if (secrets.subjectToken === undefined) {
      ({ access_token: accessToken } = await oidc.clientCredentialsGrant(configuration, resource));
    } else {
      ({ access_token: accessToken } = await oidc.genericGrantRequest(configuration, TOKEN_EXCHANGE_GRANT_TYPE, {
        subject_token: secrets.subjectToken,
        subject_token_type: ACCESS_TOKEN_TYPE,
        requested_token_type: ACCESS_TOKEN_TYPE,
        ...resource,
      }));
    }
  } catch (error) {
    const what = secrets.subjectToken === undefined ? 'client credentials' : 'the token exchange';
    throw loginFailed(`the identity provider refused ${what} for ${secrets.clientId}: ${oauthErrorText(error)}`, {
      hint: secrets.subjectToken === undefined
        ? 'check DBGATE_CLIENT_ID and DBGATE_CLIENT_SECRET'
        : "check DBGATE_CLIENT_ID / DBGATE_CLIENT_SECRET, and that DBGATE_SUBJECT_TOKEN is the person's current access token",
      cause: error,
    });
  }
  return { subjectToken: accessToken };
}
