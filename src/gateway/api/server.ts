/**
 * The gateway's HTTP API. For now: discovery (where the PostgreSQL endpoint is, which certificate to pin) and a
 * health check; login, approvals and audit endpoints build on it.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { API_VERSION, DISCOVERY_PATH, type DiscoveryDocument } from '../../shared/discovery.js';
import { isLoopbackHost, type GatewayConfig } from '../config/load.js';
import type { Logger } from '../log.js';

export interface ApiServer {
  url: string;
  close(): Promise<void>;
}

export interface ApiServerOptions {
  config: GatewayConfig;
  pgAddress: AddressInfo;
  log: Logger;
}

/** HTTPS with the gateway's certificate, except for a loopback-only dev gateway that does not require TLS. */
function usesTls(config: GatewayConfig): boolean {
  return config.tls.require || !isLoopbackHost(config.listen.api.host);
}

export function buildApi(options: ApiServerOptions): FastifyInstance {
  const { config, pgAddress } = options;
  const app = Fastify({
    logger: false,
    ...(usesTls(config) ? { https: { cert: config.tls.cert, key: config.tls.key.reveal() } } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
  const publicPg = config.listen.publicPg.port === 0 || config.listen.publicPg === config.listen.pg
    ? { host: config.listen.pg.host === '0.0.0.0' ? '127.0.0.1' : config.listen.pg.host, port: pgAddress.port }
    : config.listen.publicPg;

  app.get(DISCOVERY_PATH, async (): Promise<DiscoveryDocument> => ({
    api_version: API_VERSION,
    gateway: config.name,
    pg: { host: publicPg.host, port: publicPg.port, tls_required: config.tls.require },
    tls: { fingerprint_sha256: config.tls.fingerprint256 },
  }));
  app.get('/v1/health', async () => ({ status: 'ok' }));
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
