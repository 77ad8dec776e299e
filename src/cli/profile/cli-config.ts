/**
 * The CLI's non-secret state: `<config dir>/config.json`, one entry per profile (gateway URL, where that profile's
 * secrets are stored, who is logged in). Secrets never go here; they live in a SecretStore.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { IdentitySummary } from '../../shared/api.js';
import type { SecretStorageKind } from '../../shared/cli-runtime.js';
import { DbgateError } from '../../shared/errors.js';

export const DEFAULT_PROFILE = 'default';
const CONFIG_FILE = 'config.json';
const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export type LoginMethod = 'browser' | 'device' | 'client_credentials' | 'token_exchange';

/** What `dbgate login` leaves behind for a profile, apart from the secrets. */
export interface StoredLoginRecord {
  method: LoginMethod;
  /** Where the secrets are; the store of the other kind holds nothing for this profile. */
  storage: SecretStorageKind;
  identity: IdentitySummary;
  session_id: string;
  /** ISO 8601: when the current credential expires (updated on refresh). */
  expires_at: string;
  /** The IdP the login (and every refresh) talks to. `client_id` is the agent's for agent logins. */
  idp: { issuer: string; client_id: string; resource?: string };
  logged_in_at: string;
}

export interface ProfileRecord {
  gateway: string;
  /** Absent after `dbgate logout`: the gateway is remembered, nobody is logged in. */
  login?: StoredLoginRecord;
}

export interface CliConfig {
  version: 1;
  profiles: Record<string, ProfileRecord>;
}

/** `$DBGATE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/dbgate`, else `~/.config/dbgate`. */
export function configDirectory(env: NodeJS.ProcessEnv): string {
  if (env['DBGATE_CONFIG_DIR']) return env['DBGATE_CONFIG_DIR'];
  if (env['XDG_CONFIG_HOME']) return join(env['XDG_CONFIG_HOME'], 'dbgate');
  return join(env['HOME'] || homedir(), '.config', 'dbgate');
}

/** The profile a command acts on: the flag, else DBGATE_PROFILE, else "default". */
export function profileName(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const name = flag ?? env['DBGATE_PROFILE'] ?? DEFAULT_PROFILE;
  if (!PROFILE_NAME.test(name)) {
    throw new DbgateError('USAGE', `not a profile name: ${JSON.stringify(name)}`, {
      hint: 'use letters, digits, _ and - (at most 64), e.g. --profile staging',
    });
  }
  return name;
}

/**
 * Creates the config dir with mode 0700, and tightens it if it exists with wider permissions: it holds file-stored
 * secrets and the refresh lock, which no other user may read or race.
 */
export async function ensureConfigDirectory(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { mode } = await stat(dir);
  if ((mode & 0o077) !== 0) await chmod(dir, 0o700);
}

export async function readCliConfig(dir: string): Promise<CliConfig> {
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, profiles: {} };
    throw new DbgateError('IO', `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new DbgateError('CONFIG_INVALID', `${path} is not valid JSON`, { hint: `fix or delete it, then run: dbgate login` });
  }
  const config = parsed as Partial<CliConfig> | null;
  if (!config || config.version !== 1 || typeof config.profiles !== 'object' || config.profiles === null) {
    throw new DbgateError('CONFIG_INVALID', `${path} is not a dbgate CLI config (version 1)`, {
      hint: 'fix or delete it, then run: dbgate login',
    });
  }
  return { version: 1, profiles: config.profiles };
}

/** Writes config.json atomically (temporary file + rename), mode 0600. */
export async function writeCliConfig(dir: string, config: CliConfig): Promise<void> {
  await ensureConfigDirectory(dir);
  await writeFileAtomically(join(dir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
}

/** Read-modify-write of one profile's record; `update` returns the new record or undefined to remove it. */
export async function updateProfile(
  dir: string,
  profile: string,
  update: (current: ProfileRecord | undefined) => ProfileRecord | undefined,
): Promise<void> {
  const config = await readCliConfig(dir);
  const next = update(config.profiles[profile]);
  if (next) config.profiles[profile] = next;
  else delete config.profiles[profile];
  await writeCliConfig(dir, config);
}

/**
 * Writes `content` to `path` with mode 0600 so that no reader ever sees a half-written file or a moment of wider
 * permissions: a new file is created exclusively with 0600 and renamed over the old one.
 */
export async function writeFileAtomically(path: string, content: string): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(content, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
