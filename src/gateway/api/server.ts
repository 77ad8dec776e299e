/**
 * The gateway's HTTP API: discovery, exchanging an IdP token for a dbgate credential, who-am-I, the caller's
 * targets, the statement counts of the caller's tunnel, and revocation.
 * Every error answer is an ApiErrorBody with a stable code, a message and, where useful, a hint.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { AddressInfo } from 'node:net';
import type {
  ApiErrorBody,
  CredentialRequest,
  CredentialResponse,
  IdentitySummary,
  TargetSummary,
  TargetsResponse,
  TunnelActivityResponse,
  WhoAmIResponse,
} from '../../shared/api.js';
import { API_VERSION, DISCOVERY_PATH, type DiscoveryDocument } from '../../shared/discovery.js';
import { isLoopbackHost, type GatewayConfig, type TargetConfig } from '../config/load.js';
import { CredentialRejected, type Identity } from '../identity/credentials.js';
import { IdpTokenRejected, type IdpTokenVerifier } from '../identity/idp-verifier.js';
import { issueSessionCredential, type SessionIssuer } from '../identity/sessions.js';
import type { Logger } from '../log.js';
import { accessLevel, type Policy } from '../policy/policy.js';
import { isUuid } from '../store/state-store.js';

export interface ApiServer {
  url: string;
  close(): Promise<void>;
}

export interface ApiServerOptions {
  config: GatewayConfig;
  pgAddress: AddressInfo;
  log: Logger;
  issuer: SessionIssuer;
  /** Absent when the config has no `identity` section: logins are disabled, minted credentials still work. */
  idpVerifier: IdpTokenVerifier | undefined;
  /** Called after a session is revoked, so live connections using it are closed at once. */
  onSessionRevoked: (sessionId: string) => void;
}

/** HTTPS with the gateway's certificate, except for a loopback-only dev gateway that does not require TLS. */
function usesTls(config: GatewayConfig): boolean {
  return config.tls.require || !isLoopbackHost(config.listen.api.host);
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody,
  ) {
    super(body.message);
  }
}

function summarize(identity: Identity): IdentitySummary {
  return {
    subject: identity.subject,
    email: identity.email ?? null,
    name: identity.name ?? null,
    groups: identity.groups,
    kind: identity.kind,
    actors: identity.actors,
  };
}

/**
 * The targets `groups` may reach and at which level, by the same grant rule the policy engine enforces
 * (policy.ts, accessLevel); it only describes access here and decides nothing. No policy: no targets.
 */
export function grantedTargets(policy: Policy | undefined, groups: readonly string[], targets: Iterable<TargetConfig>): TargetSummary[] {
  const granted: TargetSummary[] = [];
  for (const target of targets) {
    const access = policy ? accessLevel(policy, groups, target.name) : undefined;
    if (access !== undefined) granted.push({ name: target.name, access, description: target.description ?? null });
  }
  return granted.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function buildApi(options: ApiServerOptions): FastifyInstance {
  const { config, pgAddress, issuer } = options;
  const app = Fastify({
    logger: false,
    bodyLimit: 64 * 1024,
    ...(usesTls(config) ? { https: { cert: config.tls.cert, key: config.tls.key.reveal() } } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
  const publicPg = config.listen.publicPg === config.listen.pg
    ? { host: config.listen.pg.host === '0.0.0.0' || config.listen.pg.host === '::' ? '127.0.0.1' : config.listen.pg.host, port: pgAddress.port }
    : config.listen.publicPg;

  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
    if (error instanceof ApiError) return reply.status(error.status).send(error.body);
    if (error.statusCode && error.statusCode < 500) {
      return reply.status(error.statusCode).send({ error: 'invalid_request', message: error.message } satisfies ApiErrorBody);
    }
    options.log.log('error', 'api.internal_error', { error: error.stack ?? error.message });
    return reply.status(500).send({ error: 'internal_error', message: 'internal gateway error' } satisfies ApiErrorBody);
  });

  /** The caller's dbgate credential from `Authorization: Bearer`, verified and with a live session. */
  const authenticate = async (request: FastifyRequest): Promise<Identity> => {
    const header = request.headers.authorization ?? '';
    const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
    if (!match) {
      throw new ApiError(401, { error: 'invalid_token', message: 'missing bearer credential', hint: 'run: dbgate login' });
    }
    let identity: Identity;
    try {
      identity = await issuer.authority.verifyCredential(match[1]!);
    } catch (error) {
      if (error instanceof CredentialRejected) {
        throw new ApiError(401, { error: 'invalid_token', message: error.message, hint: 'run: dbgate login' });
      }
      throw error;
    }
    if ((await issuer.store.sessionState(identity.sessionId)) !== 'active') {
      throw new ApiError(401, { error: 'revoked', message: 'this credential has been revoked', hint: 'run: dbgate login' });
    }
    return identity;
  };

  app.get(DISCOVERY_PATH, async (): Promise<DiscoveryDocument> => ({
    api_version: API_VERSION,
    gateway: config.name,
    pg: { host: publicPg.host, port: publicPg.port, tls_required: config.tls.require },
    tls: { fingerprint_sha256: config.tls.fingerprint256 },
    idp: config.identity
      ? {
        issuer: config.identity.issuer,
        client_id: config.identity.clientId,
        scopes: config.identity.scopes,
        ...(config.identity.resource ? { resource: config.identity.resource } : {}),
      }
      : null,
  }));

  app.get('/v1/health', async () => ({ status: 'ok' }));

  app.post('/v1/credentials', async (request: FastifyRequest<{ Body: CredentialRequest }>, reply: FastifyReply) => {
    const verifier = options.idpVerifier;
    if (!verifier) {
      throw new ApiError(404, { error: 'login_disabled', message: 'this gateway has no identity provider configured',
        hint: 'ask the operator for a minted credential (dbgate-gateway credential mint)' });
    }
    const body = request.body as Partial<CredentialRequest> | undefined;
    if (!body || typeof body.subject_token !== 'string' || (body.nonce !== undefined && typeof body.nonce !== 'string')) {
      throw new ApiError(400, { error: 'invalid_request', message: 'expected JSON {"subject_token": "...", "nonce"?: "..."}' });
    }
    let verified;
    try {
      verified = await verifier.verify(body.subject_token, { nonce: body.nonce });
    } catch (error) {
      if (error instanceof IdpTokenRejected) {
        options.log.log('info', 'credential.refused', { reason: error.message });
        throw new ApiError(401, { error: 'invalid_token', message: error.message, hint: 'run: dbgate login' });
      }
      throw error;
    }
    const { token, identity } = await issueSessionCredential(
      issuer,
      { subject: verified.subject, email: verified.email, name: verified.name, groups: verified.groups,
        kind: verified.kind, actors: verified.actors, ttlMs: config.credentials.defaultTtlMs },
      'login',
      { idp_token: verified.tokenType },
    );
    const response: CredentialResponse = {
      credential: token,
      expires_at: new Date(identity.expiresAt).toISOString(),
      session_id: identity.sessionId,
      identity: summarize(identity),
    };
    return reply.status(201).send(response);
  });

  app.get('/v1/me', async (request): Promise<WhoAmIResponse> => {
    const identity = await authenticate(request);
    return {
      identity: summarize(identity),
      session_id: identity.sessionId,
      expires_at: new Date(identity.expiresAt).toISOString(),
      gateway: config.name,
    };
  });

  app.get('/v1/me/activity', async (request: FastifyRequest<{ Querystring: Record<string, unknown> }>): Promise<TunnelActivityResponse> => {
    const identity = await authenticate(request);
    const tunnel = request.query.tunnel;
    if (typeof tunnel !== 'string' || !isUuid(tunnel)) {
      throw new ApiError(400, { error: 'invalid_request', message: 'expected ?tunnel=<uuid>: the id of a dbgate connect tunnel',
        hint: 'dbgate connect sends its tunnel id with every connection it relays' });
    }
    // Only the caller's own statements: another identity's are never counted, whatever tunnel id it names.
    const counts = await issuer.store.tunnelActivity(tunnel, identity);
    return {
      tunnel,
      allowed: counts.allowed,
      masked: counts.masked,
      denied: counts.denied,
      held: counts.held,
      failed: counts.failed,
      as_of: counts.asOf.toISOString(),
    };
  });

  app.get('/v1/targets', async (request): Promise<TargetsResponse> => {
    const identity = await authenticate(request);
    return { targets: grantedTargets(config.policy, identity.groups, config.targets.values()) };
  });

  app.delete('/v1/credentials/current', async (request, reply) => {
    const identity = await authenticate(request);
    await issuer.store.revokeSession(identity.sessionId, identity.subject);
    issuer.audit.append({
      occurredAt: new Date(),
      event: 'credential.revoke',
      outcome: 'ok',
      subject: identity.subject,
      actors: identity.actors,
      sessionId: identity.sessionId,
      detail: { revoked_by: identity.subject },
    });
    options.onSessionRevoked(identity.sessionId);
    return reply.status(204).send();
  });

  return app;
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const app = buildApi(options);
  const { host, port } = options.config.listen.api;
  await app.listen({ host, port });
  const address = app.server.address() as AddressInfo;
  const scheme = usesTls(options.config) ? 'https' : 'http';
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { url: `${scheme}://${urlHost}:${address.port}`, close: () => app.close() };
}
