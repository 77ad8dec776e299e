/**
 * Verifies tokens from the configured OIDC identity provider: ID tokens from `dbgate login`, and JWT access tokens
 * (RFC 9068) from agents' client-credentials and token-exchange grants. Keys come from the issuer's JWKS through
 * ordinary OIDC discovery; nothing here knows about any particular IdP.
 *
 * @see https://openid.net/specs/openid-connect-core-1_0.html#IDTokenValidation
 * @see https://datatracker.ietf.org/doc/html/rfc9068
 */
import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { IdentityProviderConfig } from '../config/load.js';
import { flattenActors, type IdentityKind } from './credentials.js';

/** Who the IdP says the token belongs to. */
export interface VerifiedIdpIdentity {
  subject: string;
  email: string | undefined;
  name: string | undefined;
  groups: string[];
  kind: IdentityKind;
  /** RFC 8693 actor chain, outermost (current) actor first. */
  actors: string[];
  tokenType: 'id_token' | 'access_token';
}

/** A token the gateway will not exchange; `message` is safe to show to the caller. */
export class IdpTokenRejected extends Error {
  readonly code = 'IDP_TOKEN_REJECTED';
}

type FetchLike = typeof fetch;

export class IdpTokenVerifier {
  private keys: ReturnType<typeof createRemoteJWKSet> | null = null;
  private discovering: Promise<ReturnType<typeof createRemoteJWKSet>> | null = null;

  constructor(
    private readonly config: IdentityProviderConfig,
    /** Seam for unit tests; the gateway uses the global fetch. */
    private readonly fetchImpl: FetchLike = fetch,
  ) {}

  /** Verifies signature, issuer, audience, expiry (and nonce for ID tokens when given). */
  async verify(token: string, options: { nonce?: string | undefined } = {}): Promise<VerifiedIdpIdentity> {
    if (token.length === 0 || token.length > 16_384) throw new IdpTokenRejected('not a token');
    const keys = await this.jwks();
    let payload: JWTPayload;
    let typ: string | undefined;
    try {
      const verified = await jwtVerify(token, keys, {
        issuer: this.config.issuer,
        audience: [this.config.clientId, ...this.config.audiences],
        requiredClaims: ['sub', 'exp', 'iat'],
        clockTolerance: 30,
      });
      payload = verified.payload;
      typ = verified.protectedHeader.typ;
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new IdpTokenRejected('the identity provider token has expired');
      if (error instanceof joseErrors.JWTClaimValidationFailed) {
        throw new IdpTokenRejected(`the identity provider token is not valid here (${error.claim}: ${error.reason})`);
      }
      throw new IdpTokenRejected('the identity provider token has an invalid signature or format');
    }
    // RFC 9068 access tokens say so in `typ`; anything else must be an ID token for our public client.
    const isAccessToken = typ?.toLowerCase() === 'at+jwt' || typ?.toLowerCase() === 'application/at+jwt';
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (isAccessToken) {
      if (!audiences.some((aud) => aud !== undefined && this.config.audiences.includes(aud))) {
        throw new IdpTokenRejected('the access token was issued for another audience');
      }
    } else {
      if (!audiences.includes(this.config.clientId)) throw new IdpTokenRejected('the ID token was issued for another client');
      if (options.nonce !== undefined && payload['nonce'] !== options.nonce) {
        throw new IdpTokenRejected('the ID token nonce does not match');
      }
    }
    const groupsClaim = payload[this.config.groupsClaim];
    const kindClaim = payload[this.config.kindClaim];
    return {
      subject: payload.sub!,
      email: typeof payload['email'] === 'string' ? payload['email'] : undefined,
      name: typeof payload['name'] === 'string' ? payload['name'] : undefined,
      groups: Array.isArray(groupsClaim) ? groupsClaim.filter((g): g is string => typeof g === 'string') : [],
      kind: kindClaim === 'agent' ? 'agent' : 'human',
      actors: flattenActors(payload['act']),
      tokenType: isAccessToken ? 'access_token' : 'id_token',
    };
  }

  /** JWKS from the issuer's discovery document, fetched once (jose refreshes keys on rotation). */
  private async jwks(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    if (this.keys) return this.keys;
    this.discovering ??= (async () => {
      const url = `${this.config.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
      const response = await this.fetchImpl(url, { signal: AbortSignal.timeout(10_000) });
      if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
      const metadata = (await response.json()) as { issuer?: string; jwks_uri?: string };
      // OIDC Discovery §4.3: the issuer in the document must be exactly the one configured.
      if (metadata.issuer !== this.config.issuer) {
        throw new Error(`the IdP calls itself ${metadata.issuer}, but identity.issuer is ${this.config.issuer}`);
      }
      if (!metadata.jwks_uri) throw new Error('the IdP discovery document has no jwks_uri');
      return createRemoteJWKSet(new URL(metadata.jwks_uri), { [customFetch]: this.fetchImpl });
    })();
    try {
      this.keys = await this.discovering;
      return this.keys;
    } catch (error) {
      this.discovering = null;
      throw new IdpTokenRejected(`cannot reach the identity provider: ${(error as Error).message}`);
    }
  }
}

