/**
 * The gateway's HTTP API with credentials minted by the gateway key: who am I, and revocation — which must also
 * end the live database connections of the revoked session, with a message that says why.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import type { ApiErrorBody, WhoAmIResponse } from '../../src/shared/api.js';
import { eventually, mintCredential, openTunnel, sharedStack } from '../support/stack.js';

function api(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(new URL(path, sharedStack().gateway.apiUrl), init);
}

describe('gateway API', () => {
  it('tells a credential holder who they are', async () => {
    const credential = await mintCredential('api-alice', { groups: ['engineering', 'oncall'] });
    const response = await api('/v1/me', { headers: { authorization: `Bearer ${credential}` } });
    expect(response.status).toBe(200);
    const body = (await response.json()) as WhoAmIResponse;
    expect(body.identity).toEqual({ subject: 'api-alice', email: null, name: null, groups: ['engineering', 'oncall'], kind: 'human', actors: [] });
    expect(body.gateway).toBe('dev');
    expect(Date.parse(body.expires_at)).toBeGreaterThan(Date.now());
  });

  it('answers 401 with a stable error code and a hint for a missing or forged credential', async () => {
    const missing = await api('/v1/me');
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({ error: 'invalid_token', message: 'missing bearer credential', hint: 'run: dbgate login' } satisfies ApiErrorBody);
    const credential = await mintCredential('api-forger');
    const [header, payload, signature] = credential.split('.') as [string, string, string];
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), groups: ['dba'] })).toString('base64url')}.${signature}`;
    const refused = await api('/v1/me', { headers: { authorization: `Bearer ${forged}` } });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as ApiErrorBody).error).toBe('invalid_token');
  });

  it('revokes the current credential: new connections are refused and an idle live session is closed within 5 s, saying why', async () => {
    const credential = await mintCredential('api-revoked', { groups: ['engineering'] });
    const tunnel = await openTunnel('api-revoked', { credential });
    try {
      // An idle session: nothing is sent after the revocation, so only the gateway itself can end it.
      const live = new pg.Client(tunnel.pgConfig);
      const errors: string[] = [];
      let endedAt: number | undefined;
      live.on('error', (error) => errors.push(error.message));
      live.on('end', () => (endedAt = Date.now()));
      await live.connect();
      expect((await live.query('select 42 as alive')).rows).toEqual([{ alive: 42 }]);

      const revoked = await api('/v1/credentials/current', { method: 'DELETE', headers: { authorization: `Bearer ${credential}` } });
      expect(revoked.status).toBe(204);
      const revokedAt = Date.now();
      expect(await eventually(async () => endedAt !== undefined, 5_000)).toBe(true);
      expect(endedAt! - revokedAt).toBeLessThan(5_000);
      // The gateway's FATAL arrives first; the driver then reports the closed socket too.
      expect(errors[0]).toBe('dbgate: your credential was revoked; this connection is closed');

      const again = new pg.Client(tunnel.pgConfig);
      await expect(again.connect()).rejects.toMatchObject({ code: '28P01', message: 'dbgate: this credential has been revoked' });
      const me = await api('/v1/me', { headers: { authorization: `Bearer ${credential}` } });
      expect(me.status).toBe(401);
      expect(((await me.json()) as ApiErrorBody).error).toBe('revoked');
    } finally {
      await tunnel.close();
    }
  });
});
