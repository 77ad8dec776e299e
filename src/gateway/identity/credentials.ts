/**
 * dbgate credentials: short-lived JWTs signed by the gateway (Ed25519), presented as the PostgreSQL password.
 * The IdP's tokens never travel on the database path; this is what does.
 */
import { createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors, exportJWK, generateKeyPair, type JWTPayload } from 'jose';

export type IdentityKind = 'human' | 'agent' | 'service';

/** Who a connection or statement belongs to, as every record names it. */
export interface Identity {
  subject: string;
  email: string | undefined;
  name: string | undefined;
  groups: string[];
  kind: IdentityKind;
  /** The session this credential belongs to; revoking it ends every connection using it. */
  sessionId: string;
  /** When the credential stops being accepted (ms since epoch). */
  expiresAt: number;
  /** RFC 8693 actor chain: who is acting on behalf of `subject`, outermost first. */
  actors: string[];
}

export interface CredentialClaims {
  subject: string;
  email?: string | undefined;
  name?: string | undefined;
  groups?: string[] | undefined;
  kind?: IdentityKind | undefined;
  actors?: string[] | undefined;
  sessionId?: string | undefined;
  ttlMs: number;
}

/** Why a credential was refused; `reason` is safe to show to the client. */
export class CredentialRejected extends Error {
  readonly code = 'CREDENTIAL_INVALID';
  constructor(
    readonly reason: 'expired' | 'invalid' | 'revoked' | 'wrong-audience',
    message: string,
  ) {
    super(message);
  }
}

const ALGORITHM = 'EdDSA';
/** Tokens this long are certainly not ours; refuse before parsing. */
const MAX_CREDENTIAL_LENGTH = 8192;

/** Signs and verifies credentials with one Ed25519 key pair. */
export class CredentialAuthority {
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;

  constructor(
    signingKeyJwk: Record<string, unknown>,
    /** `aud` and `iss` of every credential: "dbgate:<gateway name>". */
    private readonly audience: string,
    private readonly now: () => number = Date.now,
  ) {
    this.privateKey = createPrivateKey({ key: signingKeyJwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    this.publicKey = createPublicKey(this.privateKey);
  }

  /** Mints a credential. The caller records the session (see SessionStore) before handing it out. */
  async issueCredential(claims: CredentialClaims): Promise<{ token: string; identity: Identity }> {
    const issuedAt = Math.floor(this.now() / 1000);
    const expiresAtSeconds = issuedAt + Math.max(1, Math.floor(claims.ttlMs / 1000));
    const sessionId = claims.sessionId ?? randomUUID();
    const payload: JWTPayload = {
      email: claims.email,
      name: claims.name,
      groups: claims.groups ?? [],
      kind: claims.kind ?? 'human',
      sid: sessionId,
    };
    if (claims.actors && claims.actors.length > 0) payload['act'] = nestActors(claims.actors);
    const token = await new SignJWT(payload)
      .setProtectedHeader({ alg: ALGORITHM, typ: 'dbgate+jwt' })
      .setSubject(claims.subject)
      .setIssuer(this.audience)
      .setAudience(this.audience)
      .setIssuedAt(issuedAt)
      .setExpirationTime(expiresAtSeconds)
      .setJti(randomUUID())
      .sign(this.privateKey);
    return {
      token,
      identity: {
        subject: claims.subject,
        email: claims.email,
        name: claims.name,
        groups: claims.groups ?? [],
        kind: claims.kind ?? 'human',
        sessionId,
        expiresAt: expiresAtSeconds * 1000,
        actors: claims.actors ?? [],
      },
    };
  }

  /** Verifies signature, issuer, audience and expiry. Revocation is the session store's job. */
  async verifyCredential(token: string): Promise<Identity> {
    if (token.length === 0 || token.length > MAX_CREDENTIAL_LENGTH) {
      throw new CredentialRejected('invalid', 'the password is not a dbgate credential');
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.publicKey, {
        algorithms: [ALGORITHM],
        issuer: this.audience,
        audience: this.audience,
        typ: 'dbgate+jwt',
        currentDate: new Date(this.now()),
        requiredClaims: ['sub', 'exp', 'sid'],
      }));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) {
        throw new CredentialRejected('expired', 'your dbgate credential has expired');
      }
      if (error instanceof joseErrors.JWTClaimValidationFailed && (error.claim === 'aud' || error.claim === 'iss')) {
        throw new CredentialRejected('wrong-audience', 'the credential was issued for another gateway');
      }
      throw new CredentialRejected('invalid', 'the credential is not valid for this gateway (bad signature or format)');
    }
    const kind = payload['kind'];
    return {
      subject: payload.sub!,
      email: typeof payload['email'] === 'string' ? payload['email'] : undefined,
      name: typeof payload['name'] === 'string' ? payload['name'] : undefined,
      groups: Array.isArray(payload['groups']) ? payload['groups'].filter((g): g is string => typeof g === 'string') : [],
      kind: kind === 'agent' || kind === 'service' ? kind : 'human',
      sessionId: String(payload['sid']),
      expiresAt: (payload.exp ?? 0) * 1000,
      actors: flattenActors(payload['act']),
    };
  }
}

/** RFC 8693 §4.1: `act` nests, the outermost object being the current actor. */
function nestActors(actors: string[]): Record<string, unknown> {
  let act: Record<string, unknown> | undefined;
  for (const subject of [...actors].reverse()) act = act ? { sub: subject, act } : { sub: subject };
  return act!;
}

/** The RFC 8693 `act` claim as a list of subjects, current actor first. */
export function flattenActors(act: unknown): string[] {
  const out: string[] = [];
  let current = act;
  while (current && typeof current === 'object' && typeof (current as { sub?: unknown }).sub === 'string') {
    out.push((current as { sub: string }).sub);
    current = (current as { act?: unknown }).act;
  }
  return out;
}

/** A fresh Ed25519 private key as a JWK, for `keygen` and the dev stack. */
export async function generateSigningKeyJwk(): Promise<Record<string, unknown>> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: randomUUID(), alg: ALGORITHM, use: 'sig' };
}
