/**
 * Where a login's secrets live: the OS keychain (default), or — only when the user asks with `--insecure-storage` —
 * a 0600 file in the config dir. A keychain that does not work is an error that names `--insecure-storage`; the
 * CLI never falls back to a file, or to any other store, on its own.
 */
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { SecretStore, SecretStorageKind } from '../../shared/cli-runtime.js';
import { secretStoreUnavailable } from '../cli-errors.js';
import { ensureConfigDirectory, writeFileAtomically } from './cli-config.js';

/** The keychain service name; the account is the profile name. */
export const KEYCHAIN_SERVICE = 'dbgate';

/** The secrets of one login, stored as one JSON value. */
export interface StoredSecrets {
  version: 1;
  /** The dbgate credential (gateway-signed JWT). */
  credential: string;
  /** The IdP refresh token (browser and device logins with offline_access). */
  refresh_token?: string;
  /**
   * Earlier credentials of this login that a refresh replaced and that have not expired yet. Each has its own gateway
   * session (live connections opened with it keep running); `dbgate logout` revokes them all.
   */
  superseded?: string[];
}

export function serializeSecrets(secrets: StoredSecrets): string {
  return JSON.stringify(secrets);
}

/** Parses a stored value; null when it is not ours (then the login is treated as absent). */
export function parseSecrets(value: string): StoredSecrets | null {
  try {
    const parsed = JSON.parse(value) as Partial<StoredSecrets> | null;
    if (!parsed || parsed.version !== 1 || typeof parsed.credential !== 'string') return null;
    return {
      version: 1,
      credential: parsed.credential,
      ...(typeof parsed.refresh_token === 'string' ? { refresh_token: parsed.refresh_token } : {}),
      ...(Array.isArray(parsed.superseded)
        ? { superseded: parsed.superseded.filter((token): token is string => typeof token === 'string') }
        : {}),
    };
  } catch {
    return null;
  }
}

/** The part of @napi-rs/keyring's AsyncEntry the store uses; a seam for unit tests. */
export interface KeyringEntry {
  getPassword(): Promise<string | null | undefined>;
  setPassword(password: string): Promise<void>;
  deletePassword(): Promise<boolean>;
}

export type KeyringEntryFactory = (service: string, account: string) => Promise<KeyringEntry>;

/**
 * The real keychain. On Linux the entry is pinned to the Secret Service: the library's default would otherwise fall
 * back to the kernel keyring (keyutils), which forgets everything at logout or reboot and, in containers, may be
 * shared — exactly the silent fallback dbgate refuses. macOS Keychain and Windows Credential Manager ignore the pin.
 */
const nativeKeyringEntry: KeyringEntryFactory = async (service, account) => {
  const { AsyncEntry } = await import('@napi-rs/keyring');
  return new AsyncEntry(service, account, { linux: { store: 'secret-service' } });
};

export class KeychainSecretStore implements SecretStore {
  readonly kind: SecretStorageKind = 'keychain';
  readonly location: string;

  constructor(
    private readonly profile: string,
    private readonly configDir: string,
    private readonly entryFactory: KeyringEntryFactory = nativeKeyringEntry,
  ) {
    this.location = `OS keychain (service ${KEYCHAIN_SERVICE}, account ${profile})`;
  }

  async read(): Promise<string | null> {
    return this.use(async (entry) => (await entry.getPassword()) ?? null);
  }

  async write(value: string): Promise<void> {
    await this.use((entry) => entry.setPassword(value));
  }

  async delete(): Promise<boolean> {
    return this.use((entry) => entry.deletePassword());
  }

  private async use<T>(operation: (entry: KeyringEntry) => Promise<T>): Promise<T> {
    try {
      return await operation(await this.entryFactory(KEYCHAIN_SERVICE, this.profile));
    } catch (error) {
      const reason = ((error as Error).message ?? String(error)).split('\n')[0]!.trim();
      throw secretStoreUnavailable(
        `the OS keychain is not available: ${reason}`,
        'dbgate keeps your credential in the OS keychain (on Linux: a Secret Service such as gnome-keyring on the ' +
          'D-Bus session bus); start or unlock it and try again. Or keep the credential in a file only you can read ' +
          `(${fileSecretsPath(this.configDir, this.profile)}, mode 0600): dbgate login --insecure-storage`,
        error,
      );
    }
  }
}

export function fileSecretsPath(configDir: string, profile: string): string {
  return join(configDir, `secrets-${profile}.json`);
}

/** `--insecure-storage`: a file with mode 0600 in a 0700 config dir. Refuses a file others can read. */
export class FileSecretStore implements SecretStore {
  readonly kind: SecretStorageKind = 'file';
  readonly location: string;

  constructor(
    profile: string,
    private readonly configDir: string,
  ) {
    this.location = fileSecretsPath(configDir, profile);
  }

  async read(): Promise<string | null> {
    try {
      const { mode } = await stat(this.location);
      if ((mode & 0o077) !== 0) {
        throw secretStoreUnavailable(
          `${this.location} is readable by other users (mode ${(mode & 0o777).toString(8)}); dbgate will not use it`,
          `treat the credential in it as leaked: run dbgate logout, then dbgate login --insecure-storage`,
        );
      }
      return await readFile(this.location, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw this.failure('read', error);
    }
  }

  async write(value: string): Promise<void> {
    try {
      await ensureConfigDirectory(this.configDir);
      await writeFileAtomically(this.location, value);
    } catch (error) {
      throw this.failure('write', error);
    }
  }

  async delete(): Promise<boolean> {
    try {
      await stat(this.location);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw this.failure('delete', error);
    }
    await rm(this.location, { force: true }).catch((error: unknown) => {
      throw this.failure('delete', error);
    });
    return true;
  }

  private failure(verb: string, error: unknown): Error {
    if (error instanceof Error && error.name === 'DbgateError') return error;
    return secretStoreUnavailable(
      `cannot ${verb} ${this.location}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      `check the permissions of ${this.configDir} (or set DBGATE_CONFIG_DIR)`,
      error,
    );
  }
}
