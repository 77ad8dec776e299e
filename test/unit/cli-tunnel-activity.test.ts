/**
 * The statement counts of `dbgate connect`'s live view: the tunnel's own (read off the wire, blind to masking) until
 * the gateway answers with the counts of its audit trail, and again whenever it stops answering. The seam is fetch
 * (through the real GatewayApi client); the gateway endpoint itself is tested in integration/tunnel-activity.
 */
import { describe, expect, it, vi } from 'vitest';
import { GatewayApi } from '../../src/cli/gateway-api.js';
import type { TunnelEvent } from '../../src/cli/tunnel/local-tunnel.js';
import { TunnelActivity } from '../../src/cli/ui/tunnel-activity.js';
import { TunnelActivityPoller } from '../../src/cli/ui/tunnel-activity-poller.js';
import type { TunnelActivityResponse } from '../../src/shared/api.js';

const TUNNEL = '6f1c1f2e-8a53-4d55-9a3c-0c8e2b7d9a10';
const GATEWAY = 'http://127.0.0.1:6580';

function statement(outcome: Extract<TunnelEvent, { type: 'statement' }>['outcome'], id = 1): TunnelEvent {
  return { type: 'statement', id, outcome };
}

function answer(counts: Partial<TunnelActivityResponse> = {}): TunnelActivityResponse {
  return { tunnel: TUNNEL, allowed: 0, masked: 0, denied: 0, held: 0, failed: 0, as_of: new Date().toISOString(), ...counts };
}

describe('live view statement counts', () => {
  it('counts on the wire until the gateway answers, with masked unknown', () => {
    const activity = new TunnelActivity(0);
    for (const outcome of ['allowed', 'allowed', 'denied', 'held', 'failed'] as const) activity.record(statement(outcome));
    expect(activity.snapshot()).toMatchObject({
      statements: { allowed: 2, masked: undefined, denied: 1, held: 1, failed: 1 },
      countedBy: 'tunnel',
      gatewayUnavailable: undefined,
    });
  });

  it('shows the gateway\'s counts once it answers, masked included, and keeps them while the wire moves on', () => {
    const activity = new TunnelActivity(0);
    activity.record(statement('allowed'));
    activity.record(statement('allowed'));
    activity.gatewayCounted(answer({ allowed: 1, masked: 1 }));
    expect(activity.snapshot()).toMatchObject({ statements: { allowed: 1, masked: 1, denied: 0, held: 0, failed: 0 }, countedBy: 'gateway' });
    // Until the next answer, which will include it, a statement seen on the wire does not change the gateway's counts.
    activity.record(statement('denied'));
    expect(activity.snapshot().statements).toEqual({ allowed: 1, masked: 1, denied: 0, held: 0, failed: 0 });
    activity.gatewayCounted(answer({ allowed: 1, masked: 1, denied: 1 }));
    expect(activity.snapshot().statements).toEqual({ allowed: 1, masked: 1, denied: 1, held: 0, failed: 0 });
  });

  it('falls back to every statement the wire saw, masked unknown, when the gateway stops answering, and says why', () => {
    const activity = new TunnelActivity(0);
    activity.record(statement('allowed'));
    activity.gatewayCounted(answer({ masked: 1 }));
    activity.record(statement('held'));
    activity.gatewayUnavailable('cannot reach the gateway at http://127.0.0.1:6580: ECONNREFUSED');
    expect(activity.snapshot()).toMatchObject({
      statements: { allowed: 1, masked: undefined, denied: 0, held: 1, failed: 0 },
      countedBy: 'tunnel',
      gatewayUnavailable: 'cannot reach the gateway at http://127.0.0.1:6580: ECONNREFUSED',
    });
    activity.record(statement('allowed'));
    expect(activity.snapshot().statements.allowed).toBe(2);
    activity.gatewayCounted(answer({ allowed: 1, masked: 1, held: 1 }));
    expect(activity.snapshot()).toMatchObject({ statements: { allowed: 1, masked: 1, held: 1 }, countedBy: 'gateway', gatewayUnavailable: undefined });
  });

  it('hands out a new snapshot on every change and tells its subscribers', () => {
    const activity = new TunnelActivity(0);
    let told = 0;
    activity.subscribe(() => (told += 1));
    const before = activity.snapshot();
    activity.gatewayCounted(answer({ masked: 2 }));
    expect(activity.snapshot()).not.toBe(before);
    expect(before.statements.masked).toBeUndefined();
    expect(told).toBe(1);
  });
});

/** A GatewayApi whose fetch answers with `respond`, recording every request. */
function gatewayAnswering(respond: (request: Request) => Promise<Response>): { api: GatewayApi; requests: Request[] } {
  const requests: Request[] = [];
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    requests.push(request);
    return respond(request);
  }) as typeof fetch;
  return { api: new GatewayApi(new URL(GATEWAY), fetchImpl), requests };
}

function json(status: number, body: unknown): Promise<Response> {
  return Promise.resolve(new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } }));
}

function pollerWith(api: GatewayApi, activity = new TunnelActivity(0)): { poller: TunnelActivityPoller; activity: TunnelActivity } {
  const poller = new TunnelActivityPoller({ api, tunnelId: TUNNEL, credential: async () => 'credential-1', activity });
  return { poller, activity };
}

describe('asking the gateway for the counts', () => {
  it('asks only after the tunnel carried statements, once more after them, and then not again', async () => {
    const { api, requests } = gatewayAnswering(() => json(200, answer({ masked: 1 })));
    const { poller, activity } = pollerWith(api);
    await poller.poll();
    expect(requests).toHaveLength(0);
    poller.record({ type: 'open', id: 1, open: 1 });
    await poller.poll();
    expect(requests).toHaveLength(0);

    poller.record(statement('allowed'));
    await poller.poll();
    expect(requests).toHaveLength(1);
    expect(activity.snapshot()).toMatchObject({ countedBy: 'gateway', statements: { masked: 1 } });
    await poller.poll(); // the follow-up, for audit records written after the first answer
    expect(requests).toHaveLength(2);
    await poller.poll();
    await poller.poll();
    expect(requests).toHaveLength(2);
  });

  it('asks every 2 s from start until stop', async () => {
    vi.useFakeTimers();
    try {
      const { api, requests } = gatewayAnswering(() => json(200, answer()));
      const { poller } = pollerWith(api);
      poller.start();
      poller.record(statement('allowed'));
      await vi.advanceTimersByTimeAsync(1_999);
      expect(requests).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(1);
      expect(requests).toHaveLength(1);
      poller.record(statement('allowed'));
      await vi.advanceTimersByTimeAsync(2_000);
      expect(requests).toHaveLength(2);
      poller.record(statement('allowed'));
      poller.stop();
      await vi.advanceTimersByTimeAsync(10_000);
      expect(requests).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('asks GET /v1/me/activity for its tunnel id with the current credential', async () => {
    const { api, requests } = gatewayAnswering(() => json(200, answer()));
    const { poller } = pollerWith(api);
    poller.record(statement('allowed'));
    await poller.poll();
    expect(requests[0]!.method).toBe('GET');
    expect(requests[0]!.url).toBe(`${GATEWAY}/v1/me/activity?tunnel=${TUNNEL}`);
    expect(requests[0]!.headers.get('authorization')).toBe('Bearer credential-1');
  });

  it('keeps the wire counts when the gateway cannot be reached, and asks again next round', async () => {
    let reachable = false;
    const { api, requests } = gatewayAnswering(() => (reachable ? json(200, answer({ masked: 1 })) : Promise.reject(new TypeError('fetch failed'))));
    const { poller, activity } = pollerWith(api);
    activity.record(statement('allowed'));
    poller.record(statement('allowed'));
    await poller.poll();
    expect(activity.snapshot()).toMatchObject({ countedBy: 'tunnel', statements: { allowed: 1, masked: undefined } });
    expect(activity.snapshot().gatewayUnavailable).toMatch(/^cannot reach the gateway at http:\/\/127\.0\.0\.1:6580/);
    reachable = true;
    await poller.poll();
    expect(requests).toHaveLength(2);
    expect(activity.snapshot()).toMatchObject({ countedBy: 'gateway', statements: { allowed: 0, masked: 1 }, gatewayUnavailable: undefined });
  });

  it('says to log in again when the gateway refuses the credential', async () => {
    const { api } = gatewayAnswering(() => json(401, { error: 'revoked', message: 'this credential has been revoked', hint: 'run: dbgate login' }));
    const { poller, activity } = pollerWith(api);
    poller.record(statement('allowed'));
    await poller.poll();
    expect(activity.snapshot().gatewayUnavailable).toMatch(/run: dbgate login/);
  });

  it('does not show an answer that is not statement counts', async () => {
    const { api } = gatewayAnswering(() => json(200, { allowed: 1, masked: '2' }));
    const { poller, activity } = pollerWith(api);
    poller.record(statement('allowed'));
    await poller.poll();
    expect(activity.snapshot()).toMatchObject({ countedBy: 'tunnel', gatewayUnavailable: expect.stringContaining('something other than statement counts') });
  });

  it('stops asking a gateway that does not know the endpoint (an older gateway)', async () => {
    const { api, requests } = gatewayAnswering(() => json(404, { message: 'Route GET:/v1/me/activity not found', error: 'Not Found', statusCode: 404 }));
    const { poller, activity } = pollerWith(api);
    poller.record(statement('allowed'));
    await poller.poll();
    poller.record(statement('allowed'));
    await poller.poll();
    expect(requests).toHaveLength(1);
    expect(activity.snapshot()).toMatchObject({ countedBy: 'tunnel', gatewayUnavailable: 'this gateway does not count statements per tunnel' });
  });

  it('abandons a request on its way when stopped, and shows nothing of it', async () => {
    let asked = 0;
    // Like fetch: an answer that never comes, rejected when the request's signal aborts (or had already).
    const { api } = gatewayAnswering((request) => new Promise((_resolve, reject) => {
      asked += 1;
      if (request.signal.aborted) reject(request.signal.reason);
      request.signal.addEventListener('abort', () => reject(request.signal.reason));
    }));
    const { poller, activity } = pollerWith(api);
    poller.record(statement('allowed'));
    const asking = poller.poll();
    await new Promise((resolve) => setImmediate(resolve));
    expect(asked).toBe(1);
    poller.stop();
    await asking;
    expect(activity.snapshot()).toMatchObject({ countedBy: 'tunnel', gatewayUnavailable: undefined });
  });
});
