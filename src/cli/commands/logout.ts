/**
 * `dbgate logout`: ends the login's sessions at the gateway (which closes their live connections), revokes the IdP
 * refresh token, and deletes the local secrets. The local part happens even when the gateway cannot be reached —
 * and then the command says so and exits 1, because the credential stays valid there until it expires.
 */
import type { Command } from 'commander';
import * as oidc from 'openid-client';
import { writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { peekCredential } from '../../shared/credential-peek.js';
import { DbgateError } from '../../shared/errors.js';
import { fetchOf, secretStoreOf } from '../context-services.js';
import { GatewayApi, GatewayApiError } from '../gateway-api.js';
import { discoverIdentityProvider, oauthErrorText } from '../login/identity-provider.js';
import { configDirectory, profileName, readCliConfig, updateProfile, type StoredLoginRecord } from '../profile/cli-config.js';
import { parseSecrets, type StoredSecrets } from '../profile/secret-store.js';
import { unexpired } from '../profile/stored-login.js';

export interface LogoutOptions {
  profile?: string | undefined;
}

export async function logoutRun(options: LogoutOptions, context: CommandContext): Promise<void> {
  const profile = profileName(options.profile, context.env);
  const configDir = configDirectory(context.env);
  const record = (await readCliConfig(configDir)).profiles[profile];
  if (!record?.login) {
    writeLine(context.stderr, `dbgate: you are not logged in${profile === 'default' ? '' : ` (profile ${profile})`}; nothing to do`);
    return;
  }
  const login = record.login;
  const store = secretStoreOf(context, login.storage, profile, configDir);
  const stored = await store.read();
  const secrets = stored === null ? null : parseSecrets(stored);
  const fetchImpl = fetchOf(context);

  // Every credential of this login that is still valid: the current one and those a refresh replaced.
  const credentials = secrets ? unexpired([secrets.credential, ...(secrets.superseded ?? [])], context.now()) : [];
  const api = new GatewayApi(new URL(record.gateway), fetchImpl);
  let unreachable: DbgateError | undefined;
  for (const credential of credentials) {
    try {
      await api.revokeCurrent(credential);
    } catch (error) {
      // 401: that session has already ended (revoked, or expired meanwhile) — nothing left to revoke.
      if (error instanceof GatewayApiError && error.status === 401) continue;
      if (error instanceof DbgateError) {
        unreachable = error;
        break;
      }
      throw error;
    }
  }
  if (secrets?.refresh_token) await revokeRefreshToken(login, secrets, fetchImpl, context);

  await store.delete();
  await updateProfile(configDir, profile, (current) => (current ? { gateway: current.gateway } : current));

  if (unreachable) {
    const until = credentials.map((token) => peekCredential(token)?.expiresAt ?? 0).reduce((a, b) => Math.max(a, b), 0);
    throw new DbgateError('GATEWAY_UNREACHABLE',
      `deleted your login from ${store.location}, but the revocation did not reach the gateway: ${unreachable.message}`, {
        hint: `the credential stays valid at the gateway until ${new Date(until).toISOString()} (session ${login.session_id}); ` +
          'if it may have leaked, ask the gateway operator to revoke that session',
      });
  }
  writeLine(context.stderr, `Logged out of ${record.gateway} (${login.identity.subject}): session ended at the gateway; ` +
    `secrets deleted from ${store.location}.`);
}

/** RFC 7009 revocation of the refresh token, best effort: the local copy is deleted either way. */
async function revokeRefreshToken(login: StoredLoginRecord, secrets: StoredSecrets, fetchImpl: typeof fetch, context: CommandContext): Promise<void> {
  if (login.method !== 'browser' && login.method !== 'device') return;
  try {
    const configuration = await discoverIdentityProvider(login.idp.issuer, login.idp.client_id, fetchImpl);
    if (!configuration.serverMetadata().revocation_endpoint) return;
    await oidc.tokenRevocation(configuration, secrets.refresh_token!, { token_type_hint: 'refresh_token' });
  } catch (error) {
    writeLine(context.stderr, `dbgate: could not revoke the refresh token at the identity provider (${oauthErrorText(error)}); it was deleted locally`);
  }
}

export function registerLogout(program: Command, context: CommandContext): void {
  program
    .command('logout')
    .description('end your session at the gateway and delete the stored login')
    .option('--profile <name>', 'the login to end (default: DBGATE_PROFILE or "default")')
    .addHelpText('after', [
      '',
      'Examples:',
      '  dbgate logout',
      '  dbgate logout --profile staging',
      '',
    ].join('\n'))
    .action((flags: LogoutOptions) => logoutRun(flags, context));
}
