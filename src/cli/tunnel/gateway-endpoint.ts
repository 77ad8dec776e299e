/**
 * Where a tunnel connects and how it trusts the gateway: the PostgreSQL endpoint from the gateway's discovery
 * document, pinned to the certificate fingerprint discovery names, or verified with a CA the user gives.
 */
import { readFile } from 'node:fs/promises';
import type { CommandContext } from '../../shared/cli-runtime.js';
import { DbgateError } from '../../shared/errors.js';
import { fetchOf } from '../context-services.js';
import { discoverGateway } from '../gateway-discovery.js';
import type { GatewayEndpoint } from './gateway-connection.js';

export async function resolveGatewayEndpoint(gateway: URL, gatewayCa: string | undefined, context: CommandContext): Promise<GatewayEndpoint> {
  const discovery = await discoverGateway(gateway, fetchOf(context));
  const ca = gatewayCa ? await readFile(gatewayCa).catch((error: NodeJS.ErrnoException) => {
    throw new DbgateError('USAGE', `--gateway-ca: cannot read ${gatewayCa}: ${error.code ?? error.message}`);
  }) : undefined;
  return {
    host: discovery.pg.host,
    port: discovery.pg.port,
    ...(ca ? { ca } : { fingerprint256: discovery.tls.fingerprint_sha256 }),
  };
}
