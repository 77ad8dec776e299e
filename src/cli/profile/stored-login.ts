/**
 * A profile's login as a whole: the record in config.json plus the secrets in its store. Writing one always
 * writes both, and leaves nothing behind in a store of the other kind.
 */
import type { CredentialResponse } from '../../shared/api.js';
import type { CommandContext, SecretStore } from '../../shared/cli-runtime.js';
import { peekCredential } from '../../shared/credential-peek.js';
import { writeLine } from '../../shared/cli-runtime.js';
import { secretStoreOf } from '../context-services.js';
import { readCliConfig, updateProfile, type LoginMethod, type StoredLoginRecord } from './cli-config.js';
import { parseSecrets, serializeSecrets, type StoredSecrets } from './secret-store.js';

export interface NewLogin {
  profile: string;
  configDir: string;
  gateway: URL;
  method: LoginMethod;
  store: SecretStore;
  idp: StoredLoginRecord['idp'];
  response: CredentialResponse;
  refreshToken: string | undefined;
}

/** The credentials among `tokens` that are still valid at `now` (expired ones need no revocation). */
export function unexpired(tokens: readonly string[], now: number): string[] {
  return tokens.filter((token) => (peekCredential(token)?.expiresAt ?? 0) > now);
}

/**
 * Stores a fresh login. Credentials of an earlier login to the same gateway that are still valid are kept as
 * `superseded`, so `dbgate logout` can still revoke them (their sessions may carry live connections).
 */
export async function storeLogin(context: CommandContext, login: NewLogin): Promise<void> {
  const config = await readCliConfig(login.configDir);
  const previous = config.profiles[login.profile];
  let carried: string[] = [];
  if (previous?.login && sameGateway(previous.gateway, login.gateway)) {
    const old = await readSecretsQuietly(secretStoreOf(context, previous.login.storage, login.profile, login.configDir));
    if (old) carried = unexpired([...(old.superseded ?? []), old.credential], context.now());
  }
  const secrets: StoredSecrets = {
    version: 1,
    credential: login.response.credential,
    ...(login.refreshToken ? { refresh_token: login.refreshToken } : {}),
    ...(carried.length > 0 ? { superseded: carried } : {}),
  };
  await login.store.write(serializeSecrets(secrets));
  if (previous?.login && previous.login.storage !== login.store.kind) {
    // Switching stores (e.g. to the keychain after --insecure-storage): the old copy must not linger.
    const old = secretStoreOf(context, previous.login.storage, login.profile, login.configDir);
    await old.delete().catch((error: unknown) => {
      writeLine(context.stderr, `dbgate: could not delete the previous login from ${old.location}: ${(error as Error).message}`);
    });
  }
  await updateProfile(login.configDir, login.profile, () => ({
    gateway: login.gateway.href.replace(/\/$/, ''),
    login: {
      method: login.method,
      storage: login.store.kind,
      identity: login.response.identity,
      session_id: login.response.session_id,
      expires_at: login.response.expires_at,
      idp: login.idp,
      logged_in_at: new Date(context.now()).toISOString(),
    },
  }));
}

export async function readSecretsQuietly(store: SecretStore): Promise<StoredSecrets | null> {
  try {
    const value = await store.read();
    return value === null ? null : parseSecrets(value);
  } catch {
    return null;
  }
}

/** Two gateway URLs name the same gateway when they agree up to a trailing slash. */
export function sameGateway(a: string | URL, b: string | URL): boolean {
  const normalize = (url: string | URL): string => {
    try {
      return new URL(url).href.replace(/\/+$/, '');
    } catch {
      return String(url);
    }
  };
  return normalize(a) === normalize(b);
}
