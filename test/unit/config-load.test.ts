/**
 * The gateway configuration is validated once, at the edge: a YAML file becomes a typed GatewayConfig, or the load
 * fails with a CONFIG_INVALID error that names the file, the line and the key. Secrets are never written in the file,
 * never echoed in an error, and never printed when the loaded config is.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayConfig, parseGatewayConfigText } from '../../src/gateway/config/load.js';
import { generateSigningKeyJwk } from '../../src/gateway/identity/credentials.js';
import { generateSelfSignedCertificate, type GeneratedCertificate } from '../../src/gateway/tls/self-signed.js';
import { DbgateError } from '../../src/shared/errors.js';

const STATE_STORE_PASSWORD = 'state-store-pw-7Qz9';
const ORDERS_PASSWORD = 'orders-pw-Xk3m';
const ANALYTICS_PASSWORD = 'analytics-pw-Lp2v';
const ENV = { ORDERS_PASSWORD };

/** Paths are relative to the config file's folder, except the analytics password, given as an absolute path. */
function validConfig(analyticsPasswordFile: string): string {
  return `# dbgate gateway
name: prod
listen:
  pg: 0.0.0.0:5432
  api: 127.0.0.1:8080
tls:
  cert_file: tls/gateway.crt
  key_file: tls/gateway.key
credentials:
  signing_key_file: keys/signing.jwk
  default_ttl: 1h
  max_ttl: 12h
state_store:
  url: postgres://dbgate@state.internal:5432/dbgate
  password_file: secrets/state-store
targets:
  orders:
    host: orders.internal
    database: orders
    user: dbgate_svc
    password_env: ORDERS_PASSWORD
    tls: verify-full
    ca_file: tls/gateway.crt
  analytics:
    host: analytics.internal
    port: 6432
    database: analytics
    user: dbgate_ro
    password_file: ${analyticsPasswordFile}
    description: read replica
`;
}

let root: string;
let configDir: string;
let configText: string;
let certificate: GeneratedCertificate;
let signingKey: Record<string, unknown>;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'dbgate-config-test-'));
  configDir = join(root, 'etc', 'dbgate');
  await mkdir(join(configDir, 'tls'), { recursive: true });
  await mkdir(join(configDir, 'keys'));
  await mkdir(join(configDir, 'secrets'));
  await mkdir(join(root, 'elsewhere'));
  certificate = await generateSelfSignedCertificate({ commonName: 'dbgate test' });
  signingKey = await generateSigningKeyJwk();
  await writeFile(join(configDir, 'tls', 'gateway.crt'), certificate.certPem);
  await writeFile(join(configDir, 'tls', 'gateway.key'), certificate.keyPem);
  await writeFile(join(configDir, 'keys', 'signing.jwk'), JSON.stringify(signingKey));
  await writeFile(join(configDir, 'secrets', 'state-store'), `${STATE_STORE_PASSWORD}\n`);
  await writeFile(join(root, 'elsewhere', 'analytics'), ANALYTICS_PASSWORD);
  configText = validConfig(join(root, 'elsewhere', 'analytics'));
  await writeFile(join(configDir, 'gateway.yaml'), configText);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** `text` with `from` replaced; fails loudly if `from` is not there, so a variant cannot silently be the original. */
function edit(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`test bug: ${JSON.stringify(from)} is not in the config`);
  return text.replace(from, to);
}

/** 1-based line of the first line containing `marker`. */
function lineOf(text: string, marker: string): number {
  const index = text.split('\n').findIndex((line) => line.includes(marker));
  if (index < 0) throw new Error(`test bug: ${JSON.stringify(marker)} is not in the config`);
  return index + 1;
}

function parseError(text: string, source = '/etc/dbgate/gateway.yaml'): DbgateError {
  try {
    parseGatewayConfigText(text, source);
  } catch (error) {
    if (error instanceof DbgateError && error.code === 'CONFIG_INVALID') return error;
    throw error;
  }
  return expect.fail('the config was accepted');
}

let variants = 0;
/** Writes `text` next to the valid config (so relative paths resolve the same) and returns the load error. */
async function loadError(text: string, env: NodeJS.ProcessEnv = ENV): Promise<{ error: DbgateError; file: string }> {
  variants += 1;
  const file = join(configDir, `variant-${variants}.yaml`);
  await writeFile(file, text);
  try {
    await loadGatewayConfig(file, env);
  } catch (error) {
    if (error instanceof DbgateError && error.code === 'CONFIG_INVALID') return { error, file };
    throw error;
  }
  return expect.fail('the config was accepted');
}

describe('loading a valid configuration', () => {
  it('resolves every path relative to the config file and reads what it points at', async () => {
    const config = await loadGatewayConfig(join(configDir, 'gateway.yaml'), ENV);
    expect(config.source).toBe(join(configDir, 'gateway.yaml'));
    expect(config.name).toBe('prod');
    expect(config.audience).toBe('dbgate:prod');
    expect(config.listen).toEqual({
      pg: { host: '0.0.0.0', port: 5432 },
      api: { host: '127.0.0.1', port: 8080 },
      publicPg: { host: '0.0.0.0', port: 5432 },
    });
    expect(config.tls.cert.toString()).toBe(certificate.certPem);
    expect(config.tls.key.reveal().toString()).toBe(certificate.keyPem);
    expect(config.tls.require).toBe(true);
    expect(config.tls.fingerprint256).toBe(certificate.fingerprint256);
    expect(config.credentials.signingKeyJwk.reveal()).toEqual(signingKey);
    expect(config.credentials.defaultTtlMs).toBe(3_600_000);
    expect(config.credentials.maxTtlMs).toBe(43_200_000);
    expect(config.stateStore.url).toBe('postgres://dbgate@state.internal:5432/dbgate');
    expect(config.stateStore.password?.reveal()).toBe(STATE_STORE_PASSWORD); // trailing newline trimmed
    expect(config.limits).toEqual({
      maxMessageBytes: 0x3fffffff - 1,
      maxClientConnections: 1000,
      upstreamConnectTimeoutMs: 10_000,
    });
  });

  it('reads targets with their defaults, CA and passwords from the environment and from absolute paths', async () => {
    const config = await loadGatewayConfig(join(configDir, 'gateway.yaml'), ENV);
    expect([...config.targets.keys()]).toEqual(['orders', 'analytics']);
    const orders = config.targets.get('orders')!;
    expect(orders).toMatchObject({
      name: 'orders',
      host: 'orders.internal',
      port: 5432,
      database: 'orders',
      user: 'dbgate_svc',
      tls: 'verify-full',
      description: undefined,
    });
    expect(orders.password?.reveal()).toBe(ORDERS_PASSWORD);
    expect(orders.ca?.toString()).toBe(certificate.certPem);
    const analytics = config.targets.get('analytics')!;
    expect(analytics).toMatchObject({ port: 6432, tls: 'disable', ca: undefined, description: 'read replica' });
    expect(analytics.password?.reveal()).toBe(ANALYTICS_PASSWORD);
  });

  it('accepts optional TLS when listen.pg is a loopback address', async () => {
    // An IPv6 address must be quoted: unquoted, "[::1]:5432" is YAML for a sequence.
    for (const address of ['127.0.0.1:5432', 'localhost:5432', '"[::1]:5432"']) {
      const text = edit(edit(configText, '0.0.0.0:5432', address), 'key_file: tls/gateway.key', 'key_file: tls/gateway.key\n  require: false');
      const file = join(configDir, 'loopback.yaml');
      await writeFile(file, text);
      const config = await loadGatewayConfig(file, ENV);
      expect(config.tls.require, address).toBe(false);
    }
  });
});

describe('configuration errors name file, line and key', () => {
  const source = '/etc/dbgate/gateway.yaml';

  it('points an unknown key at its own line', () => {
    const text = edit(configText, '  api: 127.0.0.1:8080\n', '  api: 127.0.0.1:8080\n  admin: 0.0.0.0:9000\n');
    expect(parseError(text).message).toBe(`${source}:${lineOf(text, 'admin:')}: listen: unknown key "admin"`);
  });

  it('points an unknown top-level section at its key, not at the first line inside it', () => {
    const text = `${configText}audit:\n  sink: file\n`;
    expect(parseError(text).message).toBe(`${source}:${lineOf(text, 'audit:')}: (top level): unknown key "audit"`);
  });

  it('refuses a password written inline in a target without echoing it', () => {
    const text = edit(configText, '    password_env: ORDERS_PASSWORD\n', `    password: ${ORDERS_PASSWORD}\n`);
    const error = parseError(text);
    expect(error.message).toBe(`${source}:${lineOf(text, 'password:')}: targets.orders: unknown key "password"`);
    expect(error.message).not.toContain(ORDERS_PASSWORD);
  });

  it('points a value of the wrong type at its line', () => {
    const text = edit(configText, '    port: 6432', '    port: "6432"');
    const error = parseError(text);
    expect(error.message).toMatch(new RegExp(`^${source}:${lineOf(text, 'port: "6432"')}: targets\\.analytics\\.port: `));
    expect(error.message).toContain('expected number');
  });

  it('points a missing required key at the section that lacks it', () => {
    const text = edit(configText, '  api: 127.0.0.1:8080\n', '');
    const error = parseError(text);
    expect(error.message).toMatch(new RegExp(`^${source}:${lineOf(text, 'listen:')}: listen\\.api: `));
    expect(error.hint).toBe(`run: dbgate-gateway check-config ${source}`);
  });

  it('lists every problem, one per line', () => {
    const text = edit(edit(configText, '  api: 127.0.0.1:8080\n', ''), '  max_ttl: 12h', '  max_ttl: forever');
    const lines = parseError(text).message.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines.some((line) => line.startsWith(`${source}:${lineOf(text, 'max_ttl:')}: credentials.max_ttl: `))).toBe(true);
  });

  it('reports a YAML syntax error with line and column', () => {
    const text = edit(configText, '  pg: 0.0.0.0:5432', '  pg: host: 0.0.0.0:5432');
    const error = parseError(text);
    // "  pg: host: …": the nested mapping starts at column 7.
    expect(error.message).toMatch(new RegExp(`^${source}:${lineOf(text, 'pg: host:')}:7: `));
    expect(error.hint).toBe('fix the YAML syntax at that line');
  });

  it('reports a duplicate key as a syntax error at the duplicate', () => {
    const text = edit(configText, '  api: 127.0.0.1:8080\n', '  api: 127.0.0.1:8080\n  pg: 10.0.0.1:5432\n');
    expect(parseError(text).message).toMatch(new RegExp(`^${source}:${lineOf(text, '10.0.0.1')}:3: `));
  });

  it('refuses a password inline in the state store URL without echoing it', () => {
    const text = edit(configText, 'postgres://dbgate@', 'postgres://dbgate:hunter2-inline@');
    const error = parseError(text);
    expect(error.message).toBe(
      `${source}:${lineOf(text, 'url:')}: state_store.url: ` +
        'put the state store password in password_env or password_file, not in the URL',
    );
    expect(error.message).not.toContain('hunter2-inline');
    expect(inspect(error)).not.toContain('hunter2-inline');
  });

  it('refuses tls: verify-full without ca_file, pointing at the target', () => {
    const text = edit(configText, '    ca_file: tls/gateway.crt\n', '');
    expect(parseError(text).message).toBe(
      `${source}:${lineOf(text, '  orders:')}: targets.orders.ca_file: tls: verify-full needs ca_file`,
    );
  });

  it('names the environment variable that is not set, at the password_env line', async () => {
    const { error, file } = await loadError(configText, {});
    expect(error.message).toBe(
      `${file}:${lineOf(configText, 'password_env:')}: targets.orders.password_env: ` +
        'environment variable ORDERS_PASSWORD is not set',
    );
  });

  it('treats an empty environment variable as not set', async () => {
    const { error } = await loadError(configText, { ORDERS_PASSWORD: '' });
    expect(error.message).toContain('environment variable ORDERS_PASSWORD is not set');
  });

  it('refuses optional TLS on a non-loopback listen address', async () => {
    const text = edit(configText, 'key_file: tls/gateway.key', 'key_file: tls/gateway.key\n  require: false');
    const { error, file } = await loadError(text);
    expect(error.message).toBe(
      `${file}:${lineOf(text, 'require: false')}: tls.require: ` +
        'TLS may only be optional when listen.pg is a loopback address (it is 0.0.0.0)',
    );
    expect(error.hint).toBe('credentials must never cross a network in clear text: set tls.require: true');
  });

  it.each([
    ['a P-256 key', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' })],
    ['the public half of an Ed25519 key', () => ({ ...signingKey, d: undefined })],
  ])('refuses a signing key that is %s', async (_, makeKey) => {
    await writeFile(join(configDir, 'keys', 'wrong.jwk'), JSON.stringify(makeKey()));
    const text = edit(configText, 'keys/signing.jwk', 'keys/wrong.jwk');
    const { error, file } = await loadError(text);
    expect(error.message).toBe(
      `${file}:${lineOf(text, 'signing_key_file:')}: credentials.signing_key_file: ` +
        'expected an Ed25519 private JWK (kty OKP, crv Ed25519, with d)',
    );
    expect(error.hint).toBe('create one with: dbgate-gateway keygen');
  });

  it('refuses a signing key file that is not JSON', async () => {
    const text = edit(configText, 'keys/signing.jwk', 'tls/gateway.key');
    const { error, file } = await loadError(text);
    expect(error.message).toBe(
      `${file}:${lineOf(text, 'signing_key_file:')}: credentials.signing_key_file: not a JSON Web Key`,
    );
  });

  it('names the file it cannot read, resolved against the config folder', async () => {
    const text = edit(configText, 'cert_file: tls/gateway.crt', 'cert_file: tls/missing.crt');
    const { error, file } = await loadError(text);
    expect(error.message).toBe(
      `${file}:${lineOf(text, 'cert_file:')}: tls.cert_file: cannot read ${join(configDir, 'tls', 'missing.crt')}: ENOENT`,
    );
  });
});

describe('secrets in the loaded configuration', () => {
  const secrets = [STATE_STORE_PASSWORD, ORDERS_PASSWORD, ANALYTICS_PASSWORD];

  it('never appear in JSON.stringify or util.inspect of the config or its targets', async () => {
    const config = await loadGatewayConfig(join(configDir, 'gateway.yaml'), ENV);
    // The private halves of the TLS key and the credential-signing key are secrets too.
    const privateKeys = [certificate.keyPem.split('\n')[1]!, String(signingKey['d'])];
    // JSON.stringify prints a Map as {}, so the targets are printed on their own too.
    const printed = [
      JSON.stringify(config),
      JSON.stringify([...config.targets.values()]),
      inspect(config, { depth: Infinity }),
      `${config.stateStore.password}`,
    ];
    for (const text of printed) {
      for (const secret of [...secrets, ...privateKeys]) expect(text).not.toContain(secret);
    }
    expect(JSON.stringify(config.stateStore)).toContain('"password":"[secret]"');
  });

  it('never appear in the error for a config that both sets and reads them', async () => {
    const text = edit(configText, '  password_file: secrets/state-store\n', '  password_file: secrets/state-store\n  password_env: ORDERS_PASSWORD\n');
    const { error, file } = await loadError(text);
    expect(error.message).toBe(`${file}:${lineOf(text, 'state_store:')}: state_store: set password_env or password_file, not both`);
    for (const secret of secrets) expect(inspect(error)).not.toContain(secret);
  });
});
