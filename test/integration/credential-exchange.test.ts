/**
 * POST /v1/credentials against the dev stack's real OIDC provider: agents' client-credentials tokens, an agent acting
 * for a person (RFC 8693 token exchange), and every way a token can be wrong. The gateway verifies through ordinary
 * OIDC discovery and JWKS; the negative cases sign tokens with the IdP's own key where a bad claim is the point.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ApiErrorBody, CredentialResponse } from '../../src/shared/api.js';
import { directClient, eventually, openTunnel, sharedStack } from '../support/stack.js';

async function tokenRequest(body: Record<string, string>): Promise<{ access_token: string }> {
  const { issuer, agentClientId, agentClientSecret } = sharedStack().idp;
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${agentClientId}:${agentClientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams(body),
  });
  expect(response.status).toBe(200);
  return (await response.json()) as { access_token: string };
}

async function exchange(subjectToken: string): Promise<Response> {
  return fetch(`${sharedStack().gateway.apiUrl}/v1/credentials`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ subject_token: subjectToken }),
  });
}

/** A token signed with the IdP's own signing key, to prove the gateway checks claims and not only signatures. */
async function signWithIdpKey(claims: Record<string, unknown>, header: Record<string, unknown> = { typ: 'at+jwt' }): Promise<string> {
  const jwks = JSON.parse(await readFile(join(sharedStack().gateway.stateDir, 'secrets', 'idp-jwks.json'), 'utf8')) as { keys: JWK[] };
  const jwk = jwks.keys[0]!;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: sharedStack().idp.issuer, aud: 'dbgate-gateway', sub: 'alice', iat: now, exp: now + 300, groups: ['dba'], ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: jwk.kid!, ...header })
    .sign(await importJWK(jwk, 'RS256'));
}

describe('exchanging IdP tokens for dbgate credentials', () => {
  let agentToken: string;

  beforeAll(async () => {
    ({ access_token: agentToken } = await tokenRequest({ grant_type: 'client_credentials' }));
  });

  it('gives the report-bot agent a credential of kind agent from its client-credentials token', async () => {
    const response = await exchange(agentToken);
    expect(response.status).toBe(201);
    const body = (await response.json()) as CredentialResponse;
    expect(body.identity).toMatchObject({ subject: 'report-bot', kind: 'agent', groups: ['agents'], actors: [] });
    expect(Date.parse(body.expires_at) - Date.now()).toBeGreaterThan(55 * 60_000); // the default TTL is 1 h

    const tunnel = await openTunnel('report-bot', { credential: body.credential });
    try {
      const client = new pg.Client(tunnel.pgConfig);
      await client.connect();
      const { rows } = await client.query<{ n: number }>('select count(*)::int as n from orders');
      expect(rows[0]!.n).toBeGreaterThan(0);
      await client.end();
    } finally {
      await tunnel.close();
    }
  });

  it('records both identities in every audit record when report-bot acts on behalf of alice', async () => {
    // alice's access token for the gateway, as `dbgate login` would hold it, signed by the IdP.
    const alicesToken = await signWithIdpKey({ email: 'alice@example.com', groups: ['engineering'], dbgate_kind: 'human' });
    const { access_token: delegated } = await tokenRequest({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: alicesToken,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    });
    const response = await exchange(delegated);
    expect(response.status).toBe(201);
    const body = (await response.json()) as CredentialResponse;
    expect(body.identity).toMatchObject({ subject: 'alice', kind: 'agent', actors: ['report-bot'] });

    const tunnel = await openTunnel('alice', { credential: body.credential });
    const marker = `on behalf ${Date.now()}`;
    try {
      const client = new pg.Client(tunnel.pgConfig);
      await client.connect();
      await client.query(`select '${marker}' as marker`);
      await client.end();
    } finally {
      await tunnel.close();
    }
    const state = await directClient('dbgate_state');
    try {
      const found = await eventually(async () => {
        const { rowCount } = await state.query('select 1 from dbgate_audit_events where statement like $1', [`%${marker}%`]);
        return (rowCount ?? 0) > 0;
      });
      expect(found).toBe(true);
      const { rows } = await state.query<{ subject: string; actors: string[]; session_id: string }>(
        'select subject, actors, session_id from dbgate_audit_events where statement like $1', [`%${marker}%`]);
      expect(rows).toEqual([{ subject: 'alice', actors: ['report-bot'], session_id: body.session_id }]);
    } finally {
      await state.end();
    }
  });

  const refusals: Array<[string, () => Promise<string>, RegExp]> = [
    ['a tampered token (payload changed after signing)', async () => {
      const [header, payload, signature] = agentToken.split('.') as [string, string, string];
      const changed = { ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: 'bob' };
      return `${header}.${Buffer.from(JSON.stringify(changed)).toString('base64url')}.${signature}`;
    }, /invalid signature or format/],
    ['a token signed by a key the IdP does not publish', async () => {
      const { privateKey } = await generateKeyPair('RS256');
      return new SignJWT({ iss: sharedStack().idp.issuer, aud: 'dbgate-gateway', sub: 'alice', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 300 })
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt' }).sign(privateKey);
    }, /invalid signature or format/],
    ['a token minted for another audience', () => signWithIdpKey({ aud: 'some-other-api' }), /aud/],
    ['an ID token for another client', () => signWithIdpKey({ aud: 'another-client' }, { typ: 'JWT' }), /aud/],
    ['a token from another issuer', () => signWithIdpKey({ iss: 'https://idp.example.com' }), /iss/],
    ['an expired token', () => signWithIdpKey({ iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 }), /expired/],
    ['something that is not a JWT', async () => 'not-a-token', /invalid signature or format/],
  ];

  for (const [what, makeToken, reason] of refusals) {
    it(`refuses ${what} with 401 invalid_token and says why`, async () => {
      const response = await exchange(await makeToken());
      expect(response.status).toBe(401);
      const body = (await response.json()) as ApiErrorBody;
      expect(body.error).toBe('invalid_token');
      expect(body.message).toMatch(reason);
      expect(body.hint).toBe('run: dbgate login');
    });
  }

  it('answers a malformed request with 400 and what it expected', async () => {
    const response = await fetch(`${sharedStack().gateway.apiUrl}/v1/credentials`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: 'x' }) });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'invalid_request', message: 'expected JSON {"subject_token": "...", "nonce"?: "..."}' });
  });
});
