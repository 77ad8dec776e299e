/**
 * Where `dbgate login` keeps secrets: the OS keychain, or — only on request — a 0600 file in a 0700 config dir.
 * A keychain that fails is an error naming --insecure-storage, raised before anyone signs in; never a fallback.
 */
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { configDirectory } from '../../src/cli/profile/cli-config.js';
import {
  FileSecretStore,
  KEYCHAIN_SERVICE,
  KeychainSecretStore,
  type KeyringEntry,
  type KeyringEntryFactory,
} from '../../src/cli/profile/secret-store.js';
import type { CommandContext } from '../../src/shared/cli-runtime.js';
import { DbgateError } from '../../src/shared/errors.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dbgate-store-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

/** The DbgateError `promise` rejects with (fails the test otherwise). */
async function dbgateErrorOf(promise: Promise<unknown>): Promise<DbgateError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DbgateError) return error;
    throw error;
  }
  return expect.fail('expected a DbgateError');
}

describe('file store (--insecure-storage)', () => {
  it('creates the config dir 0700 and writes the secrets file 0600', async () => {
    const configDir = join(dir, 'config', 'dbgate');
    const store = new FileSecretStore('default', configDir);
    await store.write('{"version":1,"credential":"a.b.c"}');
    expect(await modeOf(configDir)).toBe(0o700);
    expect(await modeOf(store.location)).toBe(0o600);
    expect(store.location).toBe(join(configDir, 'secrets-default.json'));
  });

  it('round-trips the value and replaces it atomically, leaving no temporary files', async () => {
    const store = new FileSecretStore('default', dir);
    expect(await store.read()).toBeNull();
    await store.write('first');
    await store.write('second');
    expect(await store.read()).toBe('second');
    expect(await modeOf(store.location)).toBe(0o600);
    expect(await readdir(dir)).toEqual(['secrets-default.json']);
  });

  it('deletes the file, and says whether there was one', async () => {
    const store = new FileSecretStore('default', dir);
    await store.write('value');
    expect(await store.delete()).toBe(true);
    expect(await store.read()).toBeNull();
    expect(await store.delete()).toBe(false);
  });

  it('tightens a config dir that others can read to 0700', async () => {
    await mkdir(join(dir, 'wide'), { mode: 0o755 });
    await chmod(join(dir, 'wide'), 0o755);
    await new FileSecretStore('default', join(dir, 'wide')).write('value');
    expect(await modeOf(join(dir, 'wide'))).toBe(0o700);
  });

  it('refuses to use a secrets file other users can read', async () => {
    const store = new FileSecretStore('default', dir);
    await writeFile(store.location, 'leaked', { mode: 0o644 });
    await chmod(store.location, 0o644);
    const error = await dbgateErrorOf(store.read());
    expect(error.message).toContain('readable by other users (mode 644)');
    expect(error.exitCode).toBe(1);
  });

  it('keeps profiles apart', async () => {
    const work = new FileSecretStore('work', dir);
    const home = new FileSecretStore('home', dir);
    await work.write('work-secret');
    await home.write('home-secret');
    expect(await work.read()).toBe('work-secret');
    expect(await home.read()).toBe('home-secret');
    await work.delete();
    expect(await work.read()).toBeNull();
    expect(await home.read()).toBe('home-secret');
  });
});

/** An in-memory keychain keyed by service and account, standing in for the native module. */
function memoryKeychain(): { factory: KeyringEntryFactory; entries: Map<string, string> } {
  const entries = new Map<string, string>();
  const factory: KeyringEntryFactory = async (service, account) => {
    const key = `${service}/${account}`;
    const entry: KeyringEntry = {
      getPassword: async () => entries.get(key) ?? null,
      setPassword: async (password) => {
        entries.set(key, password);
      },
      deletePassword: async () => entries.delete(key),
    };
    return entry;
  };
  return { factory, entries };
}

/** What @napi-rs/keyring throws on Linux without a Secret Service on the session bus. */
const NO_SECRET_SERVICE = new Error('Platform failure: DBus error: Using X11 for dbus-daemon autolaunch was disabled at compile time, set your DBUS_SESSION_BUS_ADDRESS instead');

describe('keychain store', () => {
  it('stores one value per profile under service "dbgate", account = profile', async () => {
    const keychain = memoryKeychain();
    const work = new KeychainSecretStore('work', dir, keychain.factory);
    const home = new KeychainSecretStore('home', dir, keychain.factory);
    await work.write('work-secret');
    await home.write('home-secret');
    expect([...keychain.entries.keys()].sort()).toEqual([`${KEYCHAIN_SERVICE}/home`, `${KEYCHAIN_SERVICE}/work`]);
    expect(await work.read()).toBe('work-secret');
    expect(await work.delete()).toBe(true);
    expect(await work.read()).toBeNull();
    expect(await home.read()).toBe('home-secret');
    expect(work.location).toBe('OS keychain (service dbgate, account work)');
  });

  it.each(['read', 'write', 'delete'] as const)('turns a keychain failure on %s into an error that names --insecure-storage', async (operation) => {
    const broken: KeyringEntryFactory = async () => ({
      getPassword: async () => { throw NO_SECRET_SERVICE; },
      setPassword: async () => { throw NO_SECRET_SERVICE; },
      deletePassword: async () => { throw NO_SECRET_SERVICE; },
    });
    const store = new KeychainSecretStore('default', dir, broken);
    const error = await dbgateErrorOf(operation === 'write' ? store.write('x') : store[operation]());
    expect(error.message).toBe(`the OS keychain is not available: ${NO_SECRET_SERVICE.message}`);
    expect(error.hint).toContain('dbgate login --insecure-storage');
    expect(error.hint).toContain(join(dir, 'secrets-default.json'));
    expect(error.exitCode).toBe(1);
    expect(error.cause).toBe(NO_SECRET_SERVICE);
  });

  it('turns a native module that cannot load into the same error', async () => {
    const store = new KeychainSecretStore('default', dir, async () => {
      throw new Error('Cannot find native binding');
    });
    const error = await dbgateErrorOf(store.read());
    expect(error.message).toBe('the OS keychain is not available: Cannot find native binding');
    expect(error.hint).toContain('--insecure-storage');
  });
});

describe('dbgate login without a working keychain', () => {
  it('fails before contacting the gateway or opening a browser, and writes no file', async () => {
    let stderr = '';
    const contacted: string[] = [];
    const context: CommandContext = {
      stdout: new Writable({ write(_chunk, _encoding, done) { done(); } }),
      stderr: new Writable({ write(chunk, _encoding, done) { stderr += String(chunk); done(); } }),
      stdoutIsTTY: false,
      env: { DBGATE_CONFIG_DIR: dir },
      signal: new AbortController().signal,
      onSignal: () => () => {},
      now: Date.now,
      fetch: async (input) => {
        contacted.push(String(input));
        throw new TypeError('fetch failed');
      },
      openUrl: async (url) => {
        contacted.push(url);
      },
      secretStore: (kind, profile, configDir) => kind === 'keychain'
        ? new KeychainSecretStore(profile, configDir, async () => { throw NO_SECRET_SERVICE; })
        : new FileSecretStore(profile, configDir),
    };
    const code = await main(['login', '--gateway', 'http://127.0.0.1:9'], context);
    expect(code).toBe(1);
    expect(stderr).toContain('dbgate: the OS keychain is not available');
    expect(stderr).toContain('dbgate login --insecure-storage');
    expect(contacted).toEqual([]);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('config dir', () => {
  it('is DBGATE_CONFIG_DIR, else $XDG_CONFIG_HOME/dbgate, else ~/.config/dbgate', () => {
    expect(configDirectory({ DBGATE_CONFIG_DIR: '/x', XDG_CONFIG_HOME: '/y', HOME: '/h' })).toBe('/x');
    expect(configDirectory({ XDG_CONFIG_HOME: '/y', HOME: '/h' })).toBe('/y/dbgate');
    expect(configDirectory({ HOME: '/h' })).toBe('/h/.config/dbgate');
  });
});
