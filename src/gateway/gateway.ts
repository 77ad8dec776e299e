/**
 * Assembles a running gateway from a validated config: state store, audit writer, credential authority, the
 * PostgreSQL listener and the HTTP API. `startGateway` is what `dbgate-gateway start` and the dev stack call.
 */
import { createSecureContext } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { AuditWriter } from './audit/audit-writer.js';
import type { GatewayConfig } from './config/load.js';
import { CredentialAuthority } from './identity/credentials.js';
import { IdpTokenVerifier } from './identity/idp-verifier.js';
import { createJsonLogger, type Logger } from './log.js';
import { createHash, randomUUID } from 'node:crypto';
import { createPolicyStatementHook, type StatementHook } from './policy/statement-hook.js';
import { loadStatementParser } from './policy/classify.js';
import { DecisionCache } from './policy/decision-cache.js';
import { MaskedColumnCatalog } from './masking/catalog.js';
import { createMasker, strictestStyle, type MaskStyle } from './masking/mask.js';
import { CancelKeyRegistry } from './proxy/cancel-keys.js';
import { PgListener } from './proxy/pg-listener.js';
import { StateStore } from './store/state-store.js';
import { startApiServer, type ApiServer } from './api/server.js';

/** How often live connections are checked against revocations made elsewhere (the 5 s promise needs < 5 s). */
const REVOCATION_POLL_MS = 2_000;

export interface RunningGateway {
  config: GatewayConfig;
  store: StateStore;
  credentials: CredentialAuthority;
  audit: AuditWriter;
  /** Where the PostgreSQL listener is bound (the real port when the config asked for 0). */
  pg: { host: string; port: number };
  /** Base URL of the HTTP API. */
  apiUrl: string;
  /** Stops accepting, ends every client connection with a FATAL error, flushes the audit trail. */
  close(): Promise<void>;
}

export interface StartGatewayOptions {
  log?: Logger;
  /** Replaces the policy statement hook (tests of the proxy itself). */
  hook?: (audit: AuditWriter) => StatementHook;
}

export async function startGateway(config: GatewayConfig, options: StartGatewayOptions = {}): Promise<RunningGateway> {
  const log = options.log ?? createJsonLogger();
  const store = new StateStore({ url: config.stateStore.url, password: config.stateStore.password });
  try {
    await store.migrate();
  } catch (error) {
    await store.close();
    throw error;
  }
  const audit = new AuditWriter(store, {
    gateway: config.name,
    onError: (error) => log.log('error', 'audit.write_failed', { reason: error.message }),
    // Without this line an operator would only see statements slow down, then refused, not why.
    onBacklogFull: (records) => log.log('error', 'audit.backlog_full', { records }),
  });
  const credentials = new CredentialAuthority(config.credentials.signingKeyJwk.reveal(), config.audience);
  // The SQL grammar (WASM) loads once, before the first statement needs it.
  await loadStatementParser();
  const hook = options.hook
    ? options.hook(audit)
    : createPolicyStatementHook({ audit, policy: config.policy, cache: new DecisionCache() });
  // Each masked column with its rule's style; a column in several rules gets the strictest style.
  const maskedColumns = new Map<string, MaskStyle>();
  for (const rule of config.policy?.rules ?? []) {
    for (const column of rule.columns) {
      const current = maskedColumns.get(column);
      maskedColumns.set(column, current === undefined ? rule.style : strictestStyle([current, rule.style]));
    }
  }
  // Deterministic masking must be keyed per deployment and unguessable: derive the key from the signing key.
  const hashKey = createHash('sha256').update('dbgate masking\0').update(String(config.credentials.signingKeyJwk.reveal()['d'])).digest();
  const secureContext = createSecureContext({ cert: config.tls.cert, key: config.tls.key.reveal(), minVersion: 'TLSv1.2' });

  // Shared in the store: a cancel may reach another gateway than the connection's behind a load balancer.
  const cancelKeys = new CancelKeyRegistry({ store, targets: config.targets, log });
  // Schema changes committed through one gateway make every gateway sharing the store read the catalog again.
  const instance = randomUUID();
  const maskCatalog = new MaskedColumnCatalog(maskedColumns, {
    // Rules that name tables must see through views (policy/target-catalog.ts), masked columns or not.
    policyReadsViews: (config.policy?.rules ?? []).some((rule) => rule.match.tables !== undefined),
    locations: {
      load: (target) => store.maskedColumnLocations(target),
      save: (target, locations) => store.saveMaskedColumnLocations(target, locations),
    },
    log,
    announceSchemaChange: (target) => {
      store.announceSchemaChange(instance, target).catch((error: Error) =>
        log.log('warn', 'catalog.announce_failed', { target, reason: error.message }));
    },
  });
  const stopListening = store.listenForSchemaChanges(instance, (target) => {
    if (target === undefined) maskCatalog.invalidateAll();
    else maskCatalog.invalidate(target);
    log.log('info', 'catalog.changed_elsewhere', { target: target ?? '*' });
  }, (error) => log.log('warn', 'catalog.listen_failed', { reason: error.message }));
  const listener = new PgListener({
    config,
    credentials,
    store,
    audit,
    hook,
    cancelKeys,
    secureContext,
    log,
    maskCatalog,
    maskers: {
      partial: createMasker('partial', hashKey),
      redact: createMasker('redact', hashKey),
      hash: createMasker('hash', hashKey),
      null: createMasker('null', hashKey),
    },
  });
  const closeRevoked = (revoked: Set<string>): void => {
    if (revoked.size === 0) return;
    const closed = listener.terminateSessions(revoked);
    if (closed > 0) log.log('info', 'connections.revoked', { closed });
  };
  let pgAddress: AddressInfo;
  let api: ApiServer;
  try {
    pgAddress = await listener.listen(config.listen.pg);
    api = await startApiServer({
      config,
      pgAddress,
      log,
      issuer: { authority: credentials, store, audit },
      idpVerifier: config.identity ? new IdpTokenVerifier(config.identity) : undefined,
      onSessionRevoked: (sessionId) => closeRevoked(new Set([sessionId])),
    });
  } catch (error) {
    await listener.close();
    await cancelKeys.close();
    await stopListening();
    await store.close();
    throw error;
  }
  // Revocations may come from another gateway sharing the store: poll for those of our live connections.
  const revocationTimer = setInterval(() => {
    store.revokedAmong(listener.liveSessionIds()).then(closeRevoked, (error: Error) =>
      log.log('warn', 'revocation.poll_failed', { reason: error.message }));
  }, REVOCATION_POLL_MS);
  revocationTimer.unref();
  log.log('info', 'gateway.started', { pg: `${pgAddress.address}:${pgAddress.port}`, api: api.url, targets: [...config.targets.keys()] });

  let closing: Promise<void> | null = null;
  return {
    config,
    store,
    credentials,
    audit,
    pg: { host: pgAddress.address, port: pgAddress.port },
    apiUrl: api.url,
    close() {
      closing ??= (async () => {
        clearInterval(revocationTimer);
        await Promise.allSettled([listener.close(), api.close()]);
        await Promise.allSettled([audit.close(), cancelKeys.close(), stopListening()]);
        await store.close();
        log.log('info', 'gateway.stopped');
      })();
      return closing;
    },
  };
}
