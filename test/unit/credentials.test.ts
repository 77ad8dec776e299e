/**
 * dbgate credentials: Ed25519-signed JWTs minted and verified by one CredentialAuthority. A credential is accepted
 * only when signed by this gateway's key, for this gateway's audience, unexpired, and of the dbgate type; every
 * refusal carries a `reason` the client may see.
 */
import { createPrivateKey } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CredentialAuthority,
  CredentialRejected,
  generateSigningKeyJwk,
} from '../../src/gateway/identity/credentials.js';

const AUDIENCE = 'dbgate:prod';
/** A fixed clock: 2025-06-15T12:00:00Z. */
const NOW = Date.UTC(2025, 5, 15, 12, 0, 0);
const HOUR = 3_600_000;

let signingKey: Record<string, unknown>;
let otherKey: Record<string, unknown>;
let authority: CredentialAuthority;

beforeAll(async () => {
  signingKey = await generateSigningKeyJwk();
  otherKey = await generateSigningKeyJwk();
  authority = new CredentialAuthority(signingKey, AUDIENCE, () => NOW);
});

/** The CredentialRejected a verification ends in (fails the test if it succeeds or throws anything else). */
async function rejectionOf(verifier: CredentialAuthority, token: string): Promise<CredentialRejected> {
  try {
    await verifier.verifyCredential(token);
  } catch (error) {
    if (error instanceof CredentialRejected) return error;
    throw error;
  }
  return expect.fail('the credential was accepted');
}

const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Signs arbitrary claims with the gateway's own key, for tokens issueCredential would never produce. */
async function signWithGatewayKey(
  claims: Record<string, unknown>,
  header: { alg: 'EdDSA'; typ?: string } = { alg: 'EdDSA', typ: 'dbgate+jwt' },
): Promise<string> {
  const key = createPrivateKey({ key: signingKey as import('node:crypto').JsonWebKey, format: 'jwk' });
  return new SignJWT(claims)
    .setProtectedHeader(header)
    .setIssuer(AUDIENCE)
    .setAudience(AUDIENCE)
    .setIssuedAt(Math.floor(NOW / 1000))
    .setExpirationTime(Math.floor((NOW + HOUR) / 1000))
    .sign(key);
}

describe('issuing and verifying a credential', () => {
  it('returns the identity it was issued with', async () => {
    const { token, identity } = await authority.issueCredential({
      subject: 'user:alice',
      email: 'alice@example.com',
      name: 'Alice Liddell',
      groups: ['engineering', 'oncall'],
      kind: 'agent',
      actors: ['agent:claude-code', 'tool:dbgate-cli'],
      sessionId: 'session-1',
      ttlMs: HOUR,
    });
    expect(identity).toEqual({
      subject: 'user:alice',
      email: 'alice@example.com',
      name: 'Alice Liddell',
      groups: ['engineering', 'oncall'],
      kind: 'agent',
      sessionId: 'session-1',
      expiresAt: NOW + HOUR,
      actors: ['agent:claude-code', 'tool:dbgate-cli'],
    });
    expect(await authority.verifyCredential(token)).toEqual(identity);
  });

  it('encodes actors as nested act claims, the current actor outermost (RFC 8693 §4.1)', async () => {
    const { token } = await authority.issueCredential({
      subject: 'user:alice',
      actors: ['agent:claude-code', 'tool:dbgate-cli', 'service:ci'],
      ttlMs: HOUR,
    });
    expect(decodeJwt(token)['act']).toEqual({
      sub: 'agent:claude-code',
      act: { sub: 'tool:dbgate-cli', act: { sub: 'service:ci' } },
    });
  });

  it('writes no act claim when nobody acts on the subject\'s behalf', async () => {
    const { token, identity } = await authority.issueCredential({ subject: 'user:alice', ttlMs: HOUR });
    expect(decodeJwt(token)).not.toHaveProperty('act');
    expect(identity.actors).toEqual([]);
  });

  it('signs with EdDSA, marks the token as a dbgate credential and names this gateway as issuer and audience', async () => {
    const { token } = await authority.issueCredential({ subject: 'user:alice', sessionId: 's-9', ttlMs: HOUR });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', typ: 'dbgate+jwt' });
    expect(decodeJwt(token)).toMatchObject({
      sub: 'user:alice',
      iss: AUDIENCE,
      aud: AUDIENCE,
      sid: 's-9',
      iat: NOW / 1000,
      exp: (NOW + HOUR) / 1000,
    });
  });

  it('defaults to a human with no groups and a fresh session id', async () => {
    const first = await authority.issueCredential({ subject: 'user:bob', ttlMs: HOUR });
    const second = await authority.issueCredential({ subject: 'user:bob', ttlMs: HOUR });
    expect(first.identity).toMatchObject({ kind: 'human', groups: [], email: undefined, name: undefined });
    expect(first.identity.sessionId).not.toBe(second.identity.sessionId);
    expect(await authority.verifyCredential(first.token)).toEqual(first.identity);
  });
});

describe('refusing a credential', () => {
  it('refuses an expired credential with reason "expired", and accepts it until then', async () => {
    const { token, identity } = await authority.issueCredential({ subject: 'user:alice', ttlMs: HOUR });
    const justBefore = new CredentialAuthority(signingKey, AUDIENCE, () => identity.expiresAt - 1000);
    const atExpiry = new CredentialAuthority(signingKey, AUDIENCE, () => identity.expiresAt);
    const later = new CredentialAuthority(signingKey, AUDIENCE, () => identity.expiresAt + 60_000);
    await expect(justBefore.verifyCredential(token)).resolves.toEqual(identity);
    expect((await rejectionOf(atExpiry, token)).reason).toBe('expired');
    expect((await rejectionOf(later, token)).reason).toBe('expired');
  });

  it('refuses a credential issued by another gateway with the same key with reason "wrong-audience"', async () => {
    const staging = new CredentialAuthority(signingKey, 'dbgate:staging', () => NOW);
    const { token } = await staging.issueCredential({ subject: 'user:alice', ttlMs: HOUR });
    await expect(staging.verifyCredential(token)).resolves.toMatchObject({ subject: 'user:alice' });
    expect((await rejectionOf(authority, token)).reason).toBe('wrong-audience');
  });

  it('refuses a credential signed by another key with reason "invalid"', async () => {
    const impostor = new CredentialAuthority(otherKey, AUDIENCE, () => NOW);
    const { token } = await impostor.issueCredential({ subject: 'user:alice', ttlMs: HOUR });
    const rejection = await rejectionOf(authority, token);
    expect(rejection.reason).toBe('invalid');
    expect(rejection.code).toBe('CREDENTIAL_INVALID');
  });

  it('refuses a credential whose payload was changed after signing', async () => {
    const { token } = await authority.issueCredential({ subject: 'user:alice', groups: ['engineering'], ttlMs: HOUR });
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    const tampered = `${header}.${base64url({ ...claims, groups: ['engineering', 'admins'] })}.${signature}`;
    expect((await rejectionOf(authority, tampered)).reason).toBe('invalid');
  });

  it('refuses an unsigned token (alg "none")', async () => {
    const claims = decodeJwt((await authority.issueCredential({ subject: 'user:alice', ttlMs: HOUR })).token);
    const unsigned = `${base64url({ alg: 'none', typ: 'dbgate+jwt' })}.${base64url(claims)}.`;
    expect((await rejectionOf(authority, unsigned)).reason).toBe('invalid');
  });

  it('refuses a token of another type signed with the gateway key', async () => {
    const token = await signWithGatewayKey({ sub: 'user:alice', sid: 's-1' }, { alg: 'EdDSA', typ: 'JWT' });
    expect((await rejectionOf(authority, token)).reason).toBe('invalid');
  });

  it('refuses a token signed with the gateway key but without a session id', async () => {
    const control = await signWithGatewayKey({ sub: 'user:alice', sid: 's-1' });
    await expect(authority.verifyCredential(control)).resolves.toMatchObject({ sessionId: 's-1' });
    const token = await signWithGatewayKey({ sub: 'user:alice' });
    expect((await rejectionOf(authority, token)).reason).toBe('invalid');
  });

  it('refuses a token over 8192 characters before parsing it, even when correctly signed', async () => {
    const fits = await authority.issueCredential({ subject: 'user:alice', name: 'x'.repeat(5000), ttlMs: HOUR });
    expect(fits.token.length).toBeLessThanOrEqual(8192);
    await expect(authority.verifyCredential(fits.token)).resolves.toEqual(fits.identity);
    const tooLong = await authority.issueCredential({ subject: 'user:alice', name: 'x'.repeat(7000), ttlMs: HOUR });
    expect(tooLong.token.length).toBeGreaterThan(8192);
    expect((await rejectionOf(authority, tooLong.token)).reason).toBe('invalid');
  });

  it.each([
    ['an empty password', ''],
    ['a plain password', 'hunter2'],
    ['three dots of nothing', '..'],
  ])('refuses %s', async (_, token) => {
    expect((await rejectionOf(authority, token)).reason).toBe('invalid');
  });
});
