/**
 * A gateway of a test's own, in-process, configured exactly as an operator would configure one (a YAML file with
 * secrets in files beside it), with its state in the shared cluster's dbgate_state database. For tests that need a
 * policy or targets of their own, or to stop and start a gateway; the others use the shared dev gateway (stack.ts).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadGatewayConfig } from '../../src/gateway/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.js';
import { generateSigningKeyJwk } from '../../src/gateway/identity/credentials.js';
import type { Logger } from '../../src/gateway/log.js';
import { generateSelfSignedCertificate } from '../../src/gateway/tls/self-signed.js';
import { sharedStack } from './stack.js';

/** A credential for `subject` in `groups`, minted and recorded the way the gateway's own mint path does it. */
export async function issueTestCredential(gateway: RunningGateway, subject: string, groups: string[], origin: string): Promise<string> {
  const { token, identity } = await gateway.credentials.issueCredential({ subject, groups, ttlMs: 10 * 60_000 });
  await gateway.store.recordSession({
    sessionId: identity.sessionId,
    subject,
    kind: identity.kind,
    email: undefined,
    groups: identity.groups,
    actors: [],
    expiresAt: new Date(identity.expiresAt),
    origin,
  });
  return token;
}

export interface GatewayConfigDir {
  dir: string;
  /** Writes a secret file (mode 0600) and returns its path relative to the config file. */
  secret(name: string, value: string): Promise<string>;
  /** A target config for `database` on the shared cluster, logging in as its superuser (password in a secret file). */
  clusterTarget(database: string): Promise<Record<string, unknown>>;
  /** The config with everything but `targets` and `policy` filled in: listen, TLS, signing key, state store. */
  base: Record<string, unknown>;
  /** Writes `config` as gateway.yaml and starts a gateway from it. */
  start(config: Record<string, unknown>, log?: Logger): Promise<RunningGateway>;
  remove(): Promise<void>;
}

/** A config directory with a self-signed certificate, a signing key and the shared state store's password. */
export async function gatewayConfigDir(name: string): Promise<GatewayConfigDir> {
  const dir = await mkdtemp(join(tmpdir(), `dbgate-${name}-`));
  await mkdir(join(dir, 'secrets'), { mode: 0o700 });
  const secret = async (file: string, value: string): Promise<string> => {
    await writeFile(join(dir, 'secrets', file), value, { mode: 0o600 });
    return `secrets/${file}`;
  };
  const certificate = await generateSelfSignedCertificate({ commonName: `${name} test gateway` });
  await writeFile(join(dir, 'gateway.crt'), certificate.certPem);
  await writeFile(join(dir, 'gateway.key'), certificate.keyPem, { mode: 0o600 });
  await secret('signing.jwk', JSON.stringify(await generateSigningKeyJwk()));

  const stateStore = new URL(sharedStack().cluster.adminUrl);
  const stateStorePassword = await secret('state-store-password', decodeURIComponent(stateStore.password));
  stateStore.password = '';
  stateStore.pathname = '/dbgate_state';
  const base = {
    name,
    listen: { pg: '127.0.0.1:0', api: '127.0.0.1:0' },
    tls: { cert_file: 'gateway.crt', key_file: 'gateway.key', require: false },
    credentials: { signing_key_file: 'secrets/signing.jwk' },
    state_store: { url: stateStore.toString(), password_file: stateStorePassword },
  };
  return {
    dir,
    secret,
    async clusterTarget(database) {
      const cluster = new URL(sharedStack().cluster.adminUrl);
      return {
        host: cluster.hostname, port: Number(cluster.port), database, user: decodeURIComponent(cluster.username),
        password_file: await secret('target-password', decodeURIComponent(cluster.password)), tls: 'disable',
      };
    },
    base,
    async start(config, log) {
      const configFile = join(dir, 'gateway.yaml');
      await writeFile(configFile, stringify(config), { mode: 0o600 });
      return startGateway(await loadGatewayConfig(configFile, {}), log ? { log } : {});
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
