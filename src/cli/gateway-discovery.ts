/**
 * Finds the gateway: its API URL (flag, DBGATE_GATEWAY, or the stored login's) and, from its discovery document,
 * the PostgreSQL endpoint, the certificate fingerprint to pin and the identity provider to log in with.
 */
import { DISCOVERY_PATH, type DiscoveryDocument } from '../shared/discovery.js';
import { DbgateError } from '../shared/errors.js';
import { networkReason } from './gateway-api.js';

/** The gateway API URL: `--gateway`, else DBGATE_GATEWAY, else the one the profile logged in to. */
export function gatewayUrl(flag: string | undefined, env: NodeJS.ProcessEnv, stored?: string): URL {
  const value = flag ?? (env['DBGATE_GATEWAY'] || undefined) ?? stored;
  if (!value) {
    throw new DbgateError('NOT_LOGGED_IN', 'no gateway configured', {
      hint: 'run: dbgate login --gateway <url>   (or set DBGATE_GATEWAY)',
    });
  }
  try {
    const url = new URL(value);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('not http(s)');
    return url;
  } catch {
    throw new DbgateError('USAGE', `not a gateway URL: ${value}`, { hint: 'e.g. https://dbgate.example.com' });
  }
}

/** Fetches and validates the discovery document. `fetchImpl` is a seam for unit tests. */
export async function discoverGateway(url: URL, fetchImpl: typeof fetch = fetch): Promise<DiscoveryDocument> {
  const endpoint = new URL(DISCOVERY_PATH, url);
  let response: Response;
  try {
    response = await fetchImpl(endpoint, { signal: AbortSignal.timeout(10_000), headers: { accept: 'application/json' } });
  } catch (error) {
    throw new DbgateError('GATEWAY_UNREACHABLE', `cannot reach the gateway at ${url.origin}: ${networkReason(error)}`, {
      hint: 'check the URL (DBGATE_GATEWAY) and that the gateway is running',
      cause: error,
    });
  }
  if (!response.ok) {
    throw new DbgateError('GATEWAY_UNREACHABLE', `${endpoint.href} answered HTTP ${response.status}`, {
      hint: 'is this URL a dbgate gateway?',
    });
  }
  const document = (await response.json().catch(() => null)) as Partial<DiscoveryDocument> | null;
  if (!document || typeof document.pg?.host !== 'string' || typeof document.pg.port !== 'number' ||
    typeof document.tls?.fingerprint_sha256 !== 'string') {
    throw new DbgateError('GATEWAY_UNREACHABLE', `${endpoint.href} is not a dbgate discovery document`);
  }
  const idp = document.idp as Partial<NonNullable<DiscoveryDocument['idp']>> | null | undefined;
  if (idp !== null && idp !== undefined && (typeof idp.issuer !== 'string' || typeof idp.client_id !== 'string' ||
    !Array.isArray(idp.scopes))) {
    throw new DbgateError('GATEWAY_UNREACHABLE', `${endpoint.href} has a malformed "idp" section`, {
      hint: 'the gateway and this CLI may be of different versions',
    });
  }
  return { ...document, idp: idp ?? null } as DiscoveryDocument;
}
