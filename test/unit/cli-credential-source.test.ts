/**
 * The one function every command gets its credential through: DBGATE_CREDENTIAL, else the stored login (renewed
 * when less than two minutes are left), else exit 4 with "your dbgate login expired - run: dbgate login".
 * The seams here are the clock, fetch and the secret store; renewal against the real IdP is an integration test.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openCredentialSource } from '../../src/cli/credential-source.js';
import { main } from '../../src/cli/main.js';
import { writeCliConfig, type StoredLoginRecord } from '../../src/cli/profile/cli-config.js';
import type { CommandContext, SecretStore, SecretStorageKind } from '../../src/shared/cli-runtime.js';

const NOW = Date.UTC(2025, 5, 15, 12, 0, 0);
const MINUTE = 60_000;
const GATEWAY = 'http://127.0.0.1:6580';

/** A credential-shaped token (the CLI only peeks at claims; the gateway verifies). */
function fakeCredential(subject: string, expiresAt: number, marker = ''): string {
  const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'EdDSA', typ: 'dbgate+jwt' })}.${part({ sub: subject, exp: expiresAt / 1000, groups: ['engineering'], marker })}.c2ln`;
}

function loginRecord(storage: SecretStorageKind, overrides: Partial<StoredLoginRecord> = {}): StoredLoginRecord {
  return {
    method: 'browser',
    storage,
    identity: { subject: 'alice', email: 'alice@example.com', name: 'Alice', groups: ['engineering'], kind: 'human', actors: [] },
    session_id: 'session-1',
    expires_at: new Date(NOW + 30 * MINUTE).toISOString(),
    idp: { issuer: 'http://127.0.0.1:6590', client_id: 'dbgate-cli' },
    logged_in_at: new Date(NOW - 30 * MINUTE).toISOString(),
    ...overrides,
  };
}

let dir: string;
let keychain: Map<string, string>;
let network: string[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dbgate-source-'));
  keychain = new Map();
  network = [];
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function memoryStore(kind: SecretStorageKind, profile: string): SecretStore {
  return {
    kind,
    location: `memory ${kind} ${profile}`,
    read: async () => keychain.get(profile) ?? null,
    write: async (value) => {
      keychain.set(profile, value);
    },
    delete: async () => keychain.delete(profile),
  };
}

async function run(argv: string[], env: NodeJS.ProcessEnv = {}, now = NOW): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const context: CommandContext = {
    stdout: new Writable({ write(chunk, _encoding, done) { stdout += String(chunk); done(); } }),
    stderr: new Writable({ write(chunk, _encoding, done) { stderr += String(chunk); done(); } }),
    stdoutIsTTY: false,
    env: { DBGATE_CONFIG_DIR: dir, ...env },
    signal: new AbortController().signal,
    onSignal: () => () => {},
    now: () => now,
    // No IdP or gateway is reachable from a unit test: any renewal attempt fails like a network outage.
    fetch: async (input) => {
      network.push(String(input));
      throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6590'), { code: 'ECONNREFUSED' }) });
    },
    secretStore: (kind, profile) => memoryStore(kind, profile),
  };
  const code = await main(argv, context);
  return { code, stdout, stderr };
}

async function storeLogin(profile: string, credential: string, options: { refreshToken?: string; gateway?: string } = {}): Promise<void> {
  await writeCliConfig(dir, { version: 1, profiles: { [profile]: { gateway: options.gateway ?? GATEWAY, login: loginRecord('keychain') } } });
  keychain.set(profile, JSON.stringify({ version: 1, credential, ...(options.refreshToken ? { refresh_token: options.refreshToken } : {}) }));
}

describe('DBGATE_CREDENTIAL', () => {
  it('is used as it is, without reading a stored login or the network', async () => {
    const credential = fakeCredential('carol', NOW + 10 * MINUTE);
    await storeLogin('default', fakeCredential('alice', NOW + 50 * MINUTE));
    const result = await run(['token'], { DBGATE_CREDENTIAL: credential });
    expect(result).toEqual({ code: 0, stdout: `${credential}\n`, stderr: '' });
    expect(network).toEqual([]);
  });

  it('exits 4 when it has expired, and never tries to renew it', async () => {
    const result = await run(['token'], { DBGATE_CREDENTIAL: fakeCredential('carol', NOW - 5 * MINUTE) });
    expect(result.code).toBe(4);
    expect(result.stderr).toBe('dbgate: your dbgate login expired 5m ago - run: dbgate login\n' +
      'hint: the credential in DBGATE_CREDENTIAL has expired: unset it, or set it to a current one (dbgate token)\n');
    expect(network).toEqual([]);
  });
});

describe('the stored login', () => {
  it('exits 4 with "dbgate login --gateway" when nobody ever logged in', async () => {
    const result = await run(['token']);
    expect(result.code).toBe(4);
    expect(result.stderr).toBe('dbgate: you are not logged in to a dbgate gateway\n' +
      'hint: run: dbgate login --gateway <url>   (or set DBGATE_CREDENTIAL for automation)\n');
  });

  it('uses a credential with more than two minutes left without renewing it', async () => {
    const credential = fakeCredential('alice', NOW + 2 * MINUTE + 1000);
    await storeLogin('default', credential, { refreshToken: 'rt' });
    const result = await run(['token']);
    expect(result).toEqual({ code: 0, stdout: `${credential}\n`, stderr: '' });
    expect(network).toEqual([]);
  });

  it('tries to renew a credential with less than two minutes left, and uses it (with a warning) when renewal fails', async () => {
    const credential = fakeCredential('alice', NOW + 90_000);
    await storeLogin('default', credential, { refreshToken: 'rt' });
    const result = await run(['token']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${credential}\n`);
    expect(network[0]).toBe('http://127.0.0.1:6590/.well-known/openid-configuration');
    expect(result.stderr).toMatch(/^dbgate: your login expires in 1m and could not renew it: cannot use the identity provider at http:\/\/127\.0\.0\.1:6590: connect ECONNREFUSED/);
  });

  it('does not retry a failed renewal on every use (a tunnel\'s new connections must not each wait for the IdP)', async () => {
    const credential = fakeCredential('alice', NOW + 90_000);
    await storeLogin('default', credential, { refreshToken: 'rt' });
    let now = NOW;
    const stderr: string[] = [];
    const context: CommandContext = {
      stdout: new Writable({ write(_chunk, _encoding, done) { done(); } }),
      stderr: new Writable({ write(chunk, _encoding, done) { stderr.push(String(chunk)); done(); } }),
      stdoutIsTTY: false,
      env: { DBGATE_CONFIG_DIR: dir },
      signal: new AbortController().signal,
      onSignal: () => () => {},
      now: () => now,
      fetch: async (input) => {
        network.push(String(input));
        throw new TypeError('fetch failed');
      },
      secretStore: (kind, profile) => memoryStore(kind, profile),
    };
    const source = await openCredentialSource(context);
    expect((await source.credential()).token).toBe(credential);
    const attempts = network.length;
    expect(attempts).toBeGreaterThan(0);
    now += 10_000;
    expect((await source.credential()).token).toBe(credential);
    expect(network).toHaveLength(attempts);
    now += 15_000;
    expect((await source.credential()).token).toBe(credential);
    expect(network.length).toBeGreaterThan(attempts);
    expect(stderr).toHaveLength(1);
  });

  it('exits 4 with "your dbgate login expired - run: dbgate login" when it expired and cannot be renewed', async () => {
    await storeLogin('default', fakeCredential('alice', NOW - MINUTE), { refreshToken: 'rt' });
    const result = await run(['token']);
    expect(result.code).toBe(4);
    expect(result.stdout).toBe('');
    expect(result.stderr.split('\n')[0]).toBe('dbgate: your dbgate login expired - run: dbgate login');
    expect(result.stderr).toContain('hint: could not renew it: cannot use the identity provider');
  });

  it('says why when the login has no refresh token, without any network', async () => {
    await storeLogin('default', fakeCredential('alice', NOW - MINUTE));
    const result = await run(['token']);
    expect(result.code).toBe(4);
    expect(result.stderr).toBe('dbgate: your dbgate login expired - run: dbgate login\n' +
      'hint: could not renew it: the identity provider granted no refresh token (offline_access) at login\n');
    expect(network).toEqual([]);
  });

  it('does not renew an agent login without the agent secrets in the environment', async () => {
    await writeCliConfig(dir, { version: 1, profiles: { default: { gateway: GATEWAY, login: loginRecord('keychain', { method: 'client_credentials', idp: { issuer: 'http://127.0.0.1:6590', client_id: 'report-bot' } }) } } });
    keychain.set('default', JSON.stringify({ version: 1, credential: fakeCredential('report-bot', NOW - MINUTE) }));
    const result = await run(['token']);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('hint: could not renew it: an agent login renews with DBGATE_CLIENT_ID and DBGATE_CLIENT_SECRET, which are not set');
  });

  it('refuses to present a login to a gateway it was not made for', async () => {
    await storeLogin('default', fakeCredential('alice', NOW + 30 * MINUTE));
    const result = await run(['token'], { DBGATE_GATEWAY: 'https://other.example.com' });
    expect(result.code).toBe(4);
    expect(result.stderr).toContain(`dbgate: you are logged in to ${GATEWAY}, not to https://other.example.com`);
    expect(result.stderr).toContain('--profile');
  });

  it('keeps profiles apart (--profile, DBGATE_PROFILE)', async () => {
    const work = fakeCredential('alice', NOW + 30 * MINUTE, 'work');
    const home = fakeCredential('alice', NOW + 30 * MINUTE, 'home');
    await writeCliConfig(dir, {
      version: 1,
      profiles: {
        work: { gateway: 'https://work.example.com', login: loginRecord('keychain') },
        home: { gateway: 'https://home.example.com', login: loginRecord('keychain') },
      },
    });
    keychain.set('work', JSON.stringify({ version: 1, credential: work }));
    keychain.set('home', JSON.stringify({ version: 1, credential: home }));
    expect((await run(['token', '--profile', 'work'])).stdout).toBe(`${work}\n`);
    expect((await run(['token'], { DBGATE_PROFILE: 'home' })).stdout).toBe(`${home}\n`);
    expect((await run(['token'])).code).toBe(4);
    expect((await run(['token', '--profile', '../etc'])).code).toBe(2);
  });
});
