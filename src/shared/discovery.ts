/**
 * The gateway's discovery document, served at GET /.well-known/dbgate-configuration. The CLI learns from it where
 * the PostgreSQL endpoint is and which certificate to pin, so users configure one URL and nothing else.
 */
export const DISCOVERY_PATH = '/.well-known/dbgate-configuration';
export const API_VERSION = 1;

export interface DiscoveryDocument {
  api_version: number;
  /** The gateway deployment's name; credentials carry audience "dbgate:<gateway>". */
  gateway: string;
  pg: {
    host: string;
    port: number;
    /** Whether the PostgreSQL port requires TLS (always true outside loopback dev setups). */
    tls_required: boolean;
  };
  tls: {
    /** SHA-256 fingerprint of the gateway's certificate ("AB:CD:…"); the tunnel pins it. */
    fingerprint_sha256: string;
  };
  /** The OIDC provider `dbgate login` uses; null when the gateway only accepts minted credentials. */
  idp: {
    issuer: string;
    /** The public client for authorization code + PKCE and the device flow. */
    client_id: string;
    scopes: string[];
    /** RFC 8707 resource indicator agents request tokens for (an absolute URI), when the IdP uses one. */
    resource?: string;
  } | null;
}
