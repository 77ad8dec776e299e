/**
 * Reads the gateway's YAML configuration once, validates it against the schema and resolves everything it points
 * at (secrets, certificates, keys) into a typed `GatewayConfig`. Every error names the file, the line and the key.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isIP } from 'node:net';
import { LineCounter, parseDocument, isMap, isNode, isScalar, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { DbgateError } from '../../shared/errors.js';
import { parseDuration } from '../../shared/duration.js';
import { Secret } from '../../shared/secret.js';
import { gatewayConfigSchema, type GatewayConfigFile } from './schema.js';
import { policyTargetIssues } from './policy-schema.js';
import { compilePolicy, type Policy } from '../policy/policy.js';

export interface HostPort {
  host: string;
  port: number;
}

export type TargetTlsMode = 'disable' | 'require' | 'verify-full';

/** A database the gateway fronts, with the service credentials it logs in with. */
export interface TargetConfig {
  name: string;
  host: string;
  port: number;
  database: string;
  user: string;
  /** Absent for targets that trust the gateway's address (no password). */
  password: Secret | undefined;
  tls: TargetTlsMode;
  ca: Buffer | undefined;
  description: string | undefined;
}

export interface GatewayConfig {
  /** The file this came from, for messages. */
  source: string;
  name: string;
  /** `aud` of every credential this gateway mints and accepts. */
  audience: string;
  listen: { pg: HostPort; api: HostPort; publicPg: HostPort };
  tls: { cert: Buffer; key: Secret<Buffer>; require: boolean; fingerprint256: string };
  credentials: { signingKeyJwk: Secret<Record<string, unknown>>; defaultTtlMs: number; maxTtlMs: number };
  stateStore: { url: string; password: Secret | undefined };
  /**
   * The policy every statement is judged by. Absent in the file means no grants: every statement is denied
   * (fail closed) and check-config warns.
   */
  policy: Policy | undefined;
  /** The trusted OIDC provider, when logins are enabled. */
  identity: IdentityProviderConfig | undefined;
  targets: Map<string, TargetConfig>;
  limits: { maxMessageBytes: number; maxClientConnections: number; upstreamConnectTimeoutMs: number };
}

export interface IdentityProviderConfig {
  issuer: string;
  clientId: string;
  scopes: string[];
  resource: string | undefined;
  audiences: string[];
  groupsClaim: string;
  kindClaim: string;
}

/** Loads and validates a gateway configuration file. Throws DbgateError('CONFIG_INVALID') naming file:line. */
export async function loadGatewayConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<GatewayConfig> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new DbgateError('CONFIG_INVALID', `cannot read gateway config ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const parsed = parseGatewayConfigText(text, path);
  return resolveGatewayConfig(parsed.config, parsed.locate, path, env);
}

/** Points at the line of a key path inside the YAML document. */
type Locator = (path: ReadonlyArray<PropertyKey>) => string;

/** Validates YAML text against the schema without touching the file system. */
export function parseGatewayConfigText(
  text: string,
  source: string,
): { config: GatewayConfigFile; locate: Locator } {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (document.errors.length > 0) {
    const first = document.errors[0]!;
    const { line, col } = lineCounter.linePos(first.pos[0]);
    throw new DbgateError('CONFIG_INVALID', `${source}:${line}:${col}: ${first.message.split('\n')[0]}`, {
      hint: 'fix the YAML syntax at that line',
    });
  }
  const locate: Locator = (keyPath) => `${source}:${lineOf(document, lineCounter, keyPath)}`;
  const result = gatewayConfigSchema.safeParse(document.toJS() ?? {});
  if (!result.success) {
    const lines = result.error.issues.map((issue) => describeIssue(issue, locate));
    throw new DbgateError('CONFIG_INVALID', lines.join('\n'), {
      hint: `run: dbgate-gateway check-config ${source}`,
    });
  }
  return { config: result.data, locate };
}

function describeIssue(issue: z.core.$ZodIssue, locate: Locator): string {
  const key = issue.path.length > 0 ? issue.path.map(String).join('.') : '(top level)';
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    return `${locate([...issue.path, issue.keys[0]!])}: ${key}: ${message}`;
  }
  return `${locate(issue.path)}: ${key}: ${message}`;
}

/** The line of the deepest existing node on `keyPath` (a missing key points at its parent). */
function lineOf(document: Document, lineCounter: LineCounter, keyPath: ReadonlyArray<PropertyKey>): number {
  for (let depth = keyPath.length; depth >= 0; depth -= 1) {
    const path = keyPath.slice(0, depth) as unknown[];
    const node = document.getIn(path, true);
    if (isNode(node) && node.range) {
      // For a mapping value, point at its key's line rather than the value's first child.
      const key = depth > 0 ? keyNodeOf(document.getIn(path.slice(0, -1), true), path[depth - 1]) : undefined;
      return lineCounter.linePos((key?.range ?? node.range)[0]).line;
    }
  }
  return 1;
}

/** The key node of `name` in a mapping node, if `parent` is one and has it. */
function keyNodeOf(parent: unknown, name: unknown): Node | undefined {
  if (!isMap(parent)) return undefined;
  const pair = parent.items.find((item) => isScalar(item.key) && String(item.key.value) === String(name));
  return isNode(pair?.key) ? pair.key : undefined;
}

function parseHostPort(text: string): HostPort {
  const colon = text.lastIndexOf(':');
  const host = text.slice(0, colon).replace(/^\[|\]$/g, '');
  return { host, port: Number(text.slice(colon + 1)) };
}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

async function resolveGatewayConfig(
  file: GatewayConfigFile,
  locate: Locator,
  source: string,
  env: NodeJS.ProcessEnv,
): Promise<GatewayConfig> {
  const base = dirname(source);
  const pathOf = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  const fail = (keyPath: PropertyKey[], message: string, hint?: string): never => {
    throw new DbgateError('CONFIG_INVALID', `${locate(keyPath)}: ${keyPath.join('.')}: ${message}`, { hint });
  };
  const readAt = async (keyPath: PropertyKey[], p: string): Promise<Buffer> => {
    try {
      return await readFile(pathOf(p));
    } catch (error) {
      return fail(keyPath, `cannot read ${pathOf(p)}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  };
  const readSecret = async (
    keyPath: PropertyKey[],
    source: { password_env?: string | undefined; password_file?: string | undefined },
  ): Promise<Secret | undefined> => {
    if (source.password_env !== undefined && source.password_file !== undefined) {
      fail(keyPath, 'set password_env or password_file, not both');
    }
    if (source.password_env !== undefined) {
      const value = env[source.password_env];
      if (value === undefined || value === '') {
        fail([...keyPath, 'password_env'], `environment variable ${source.password_env} is not set`);
      }
      return new Secret(value as string);
    }
    if (source.password_file !== undefined) {
      const value = (await readAt([...keyPath, 'password_file'], source.password_file)).toString('utf8').trimEnd();
      if (value === '') fail([...keyPath, 'password_file'], 'the password file is empty');
      return new Secret(value);
    }
    return undefined;
  };

  if (file.identity && new URL(file.identity.issuer).protocol !== 'https:' && !isLoopbackHost(new URL(file.identity.issuer).hostname)) {
    fail(['identity', 'issuer'], 'the issuer must use https (http is accepted only for a loopback dev IdP)');
  }
  const pg = parseHostPort(file.listen.pg);
  if (!file.tls.require && !isLoopbackHost(pg.host)) {
    fail(['tls', 'require'], `TLS may only be optional when listen.pg is a loopback address (it is ${pg.host})`,
      'credentials must never cross a network in clear text: set tls.require: true');
  }
  const cert = await readAt(['tls', 'cert_file'], file.tls.cert_file);
  const key = await readAt(['tls', 'key_file'], file.tls.key_file);
  let fingerprint256: string;
  try {
    fingerprint256 = new X509Certificate(cert).fingerprint256;
  } catch {
    return fail(['tls', 'cert_file'], 'not a PEM X.509 certificate');
  }

  const keyText = (await readAt(['credentials', 'signing_key_file'], file.credentials.signing_key_file)).toString();
  let signingKeyJwk: Record<string, unknown>;
  try {
    signingKeyJwk = JSON.parse(keyText) as Record<string, unknown>;
  } catch {
    return fail(['credentials', 'signing_key_file'], 'not a JSON Web Key');
  }
  if (signingKeyJwk['kty'] !== 'OKP' || signingKeyJwk['crv'] !== 'Ed25519' || typeof signingKeyJwk['d'] !== 'string') {
    fail(['credentials', 'signing_key_file'], 'expected an Ed25519 private JWK (kty OKP, crv Ed25519, with d)',
      'create one with: dbgate-gateway keygen');
  }

  const targets = new Map<string, TargetConfig>();
  for (const [name, target] of Object.entries(file.targets)) {
    targets.set(name, {
      name,
      host: target.host,
      port: target.port,
      database: target.database,
      user: target.user,
      password: await readSecret(['targets', name], target),
      tls: target.tls,
      ca: target.ca_file === undefined ? undefined : await readAt(['targets', name, 'ca_file'], target.ca_file),
      description: target.description,
    });
  }

  if (file.policy) {
    const issue = policyTargetIssues(file.policy, targets.keys())[0];
    if (issue) fail(['policy', ...issue.path], issue.message);
  }

  const ms = (keyPath: PropertyKey[], text: string): number => parseDuration(text) ?? fail(keyPath, 'bad duration');
  const defaultTtlMs = ms(['credentials', 'default_ttl'], file.credentials.default_ttl);
  const maxTtlMs = ms(['credentials', 'max_ttl'], file.credentials.max_ttl);
  if (defaultTtlMs > maxTtlMs) fail(['credentials', 'default_ttl'], 'default_ttl is longer than max_ttl');

  return {
    source,
    name: file.name,
    audience: `dbgate:${file.name}`,
    listen: {
      pg,
      api: parseHostPort(file.listen.api),
      publicPg: file.listen.public_pg ? parseHostPort(file.listen.public_pg) : pg,
    },
    tls: { cert, key: new Secret(key), require: file.tls.require, fingerprint256 },
    credentials: { signingKeyJwk: new Secret(signingKeyJwk), defaultTtlMs, maxTtlMs },
    stateStore: { url: file.state_store.url, password: await readSecret(['state_store'], file.state_store) },
    policy: file.policy === undefined ? undefined : compilePolicy(file.policy),
    identity: file.identity && {
      issuer: file.identity.issuer,
      clientId: file.identity.client_id,
      scopes: file.identity.scopes,
      resource: file.identity.resource,
      audiences: file.identity.audiences,
      groupsClaim: file.identity.groups_claim,
      kindClaim: file.identity.kind_claim,
    },
    targets,
    limits: {
      maxMessageBytes: file.limits.max_message_bytes,
      maxClientConnections: file.limits.max_client_connections,
      upstreamConnectTimeoutMs: ms(['limits', 'upstream_connect_timeout'], file.limits.upstream_connect_timeout),
    },
  };
}

/** SHA-256 of a certificate in the "AB:CD:…" form Node's X509Certificate and `openssl x509 -fingerprint` use. */
export function certificateFingerprint(pem: Buffer | string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** Stable id of a config's policy-relevant content; lets caches be keyed by config version. */
export function configDigest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}
