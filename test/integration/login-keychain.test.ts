/**
 * Secrets in the real OS keychain: a Secret Service (gnome-keyring) on a private D-Bus session, with HOME in a temp
 * dir, exactly as CI runs it — and the path without any keychain, which must refuse and name --insecure-storage
 * rather than fall back. Missing tools fail these tests with a clear message; they never skip.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/cli/commands/status.js';
import { sharedStack } from '../support/stack.js';
import { claimsOf, devIdp, runProcess } from '../support/login.js';

const REQUIRED_TOOLS = {
  'dbus-run-session': 'Debian package "dbus" (dbus-x11 on older releases)',
  'gnome-keyring-daemon': 'Debian package "gnome-keyring"',
} as const;

/** Prints the keychain entry dbgate writes (service dbgate, account default) as JSON, or null. */
const READ_KEYCHAIN = `
import { Entry } from '@napi-rs/keyring';
const value = new Entry('dbgate', 'default', { linux: { store: 'secret-service' } }).getPassword();
console.log(JSON.stringify(value ?? null));
`;

let home: string;

beforeAll(async () => {
  for (const [tool, source] of Object.entries(REQUIRED_TOOLS)) {
    try {
      await promisify(execFile)('sh', ['-c', `command -v ${tool}`]);
    } catch {
      throw new Error(`the keychain tests need ${tool} (${source}); CI installs it`);
    }
  }
  home = await mkdtemp(join(tmpdir(), 'dbgate-keychain-home-'));
});

afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

/** The agent login's environment: nothing from the test process (no D-Bus address, no DBGATE_CONFIG_DIR). */
function agentEnv(homeDir: string): NodeJS.ProcessEnv {
  return {
    HOME: homeDir,
    PATH: process.env['PATH'],
    DBGATE_CLIENT_ID: devIdp().agentClientId,
    DBGATE_CLIENT_SECRET: devIdp().agentClientSecret,
  };
}

describe('with a keychain (Secret Service via gnome-keyring)', () => {
  it('stores the login in the keychain, reads it back, and deletes it at logout', async () => {
    // Values travel as environment variables, so the shell quotes nothing.
    const script = [
      'echo -n dbgate-test | gnome-keyring-daemon --unlock --components=secrets >/dev/null',
      '"$NODE" bin/dbgate login --client-credentials --gateway "$GATEWAY" >&2 || exit 10',
      'echo "--- status"',
      '"$NODE" bin/dbgate status --json || exit 11',
      'echo "--- keychain"',
      '"$NODE" --input-type=module -e "$READ_KEYCHAIN" || exit 12',
      'echo "--- token"',
      '"$NODE" bin/dbgate token || exit 13',
      '"$NODE" bin/dbgate logout >&2 || exit 14',
      'echo "--- after logout"',
      '"$NODE" --input-type=module -e "$READ_KEYCHAIN" || exit 15',
    ].join('\n');
    const result = await runProcess('dbus-run-session', ['--', 'sh', '-c', script], {
      ...agentEnv(home),
      NODE: process.execPath,
      GATEWAY: sharedStack().gateway.apiUrl,
      READ_KEYCHAIN,
    });
    expect(result.code, result.stderr).toBe(0);

    const sections = Object.fromEntries(result.stdout.split(/^--- /m).slice(1)
      .map((section) => [section.slice(0, section.indexOf('\n')), section.slice(section.indexOf('\n') + 1).trim()]));
    const status = JSON.parse(sections['status']!) as StatusReport;
    expect(status).toMatchObject({
      logged_in: true,
      identity: { subject: 'report-bot', kind: 'agent' },
      storage: 'keychain',
      storage_location: 'OS keychain (service dbgate, account default)',
    });
    const stored = JSON.parse(JSON.parse(sections['keychain']!) as string) as { version: number; credential: string };
    expect(stored.version).toBe(1);
    expect(claimsOf(stored.credential).sub).toBe('report-bot');
    expect(sections['token']).toBe(stored.credential);
    expect(JSON.parse(sections['after logout']!)).toBeNull();
    expect(result.stderr).toContain('Secrets are stored in OS keychain (service dbgate, account default).');
    // The default config dir (~/.config/dbgate) holds the non-secret profile only.
    expect(await readdir(join(home, '.config', 'dbgate'))).toEqual(['config.json']);
  });
});

describe('without a keychain (no D-Bus session)', () => {
  let bare: string;

  beforeAll(async () => {
    bare = await mkdtemp(join(home, 'bare-'));
  });

  it('refuses to log in, names --insecure-storage, exits 1 and writes no secret', async () => {
    const result = await runProcess(process.execPath, ['bin/dbgate', 'login', '--client-credentials', '--gateway', sharedStack().gateway.apiUrl], agentEnv(bare));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^dbgate: the OS keychain is not available: .+\n/);
    expect(result.stderr).toContain(`dbgate login --insecure-storage`);
    expect(result.stderr).not.toContain('Logged in');
    await expect(stat(join(bare, '.config', 'dbgate', 'secrets-default.json'))).rejects.toThrow();
  });

  it('with --insecure-storage, writes a 0600 file in a 0700 config dir, and says where', async () => {
    const env = agentEnv(bare);
    const login = await runProcess(process.execPath, ['bin/dbgate', 'login', '--client-credentials', '--gateway', sharedStack().gateway.apiUrl, '--insecure-storage'], env);
    expect(login.code, login.stderr).toBe(0);
    const configDir = join(bare, '.config', 'dbgate');
    expect((await stat(configDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(configDir, 'secrets-default.json'))).mode & 0o777).toBe(0o600);
    expect(login.stderr).toContain(`Secrets are stored in ${join(configDir, 'secrets-default.json')}.`);

    const status = await runProcess(process.execPath, ['bin/dbgate', 'status', '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ storage: 'file', identity: { subject: 'report-bot' } });
  });
});
