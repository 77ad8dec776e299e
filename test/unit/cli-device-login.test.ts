/**
 * The device authorization grant's polling (RFC 8628 §3.4-3.5): at the server's interval, 5 s slower after each
 * slow_down, and a clear end on expired_token, access_denied or the code's own expiry. The IdP here is a fake behind
 * the fetch seam, because a real one cannot be made to say expired_token on cue; the happy path runs against the
 * real dev IdP in test/integration/login-device-and-agent.test.ts.
 */
import { Writable } from 'node:stream';
import * as oidc from 'openid-client';
import { describe, expect, it } from 'vitest';
import { deviceLogin } from '../../src/cli/login/device-login.js';
import type { IdentityProviderSettings } from '../../src/cli/login/identity-provider.js';
import type { CommandContext } from '../../src/shared/cli-runtime.js';
import { DbgateError } from '../../src/shared/errors.js';

const ISSUER = 'http://127.0.0.1:6590';
const IDP: IdentityProviderSettings = {
  issuer: ISSUER,
  clientId: 'dbgate-cli',
  scopes: ['openid', 'offline_access'],
  resource: undefined,
  loopbackPathSuffix: false,
};

interface Scenario {
  /** The token endpoint's answers, in order (OAuth error codes). */
  tokenErrors: string[];
  interval?: number;
  expiresIn?: number;
}

function setUp(scenario: Scenario) {
  let clock = 0;
  const sleeps: number[] = [];
  const requests: Array<{ url: string; body: URLSearchParams }> = [];
  let stderr = '';
  const answers = [...scenario.tokenErrors];
  const fakeFetch: oidc.CustomFetch = async (url, options) => {
    const body = new URLSearchParams(String(options.body));
    requests.push({ url, body });
    const json = (status: number, value: object): Response =>
      new Response(JSON.stringify(value), { status, headers: { 'content-type': 'application/json' } });
    if (url === `${ISSUER}/device/auth`) {
      return json(200, {
        device_code: 'device-code-1',
        user_code: 'BDWP-HQPK',
        verification_uri: `${ISSUER}/device`,
        verification_uri_complete: `${ISSUER}/device?user_code=BDWP-HQPK`,
        expires_in: scenario.expiresIn ?? 600,
        ...(scenario.interval !== undefined ? { interval: scenario.interval } : {}),
      });
    }
    const error = answers.shift() ?? 'authorization_pending';
    return json(400, { error, error_description: `${error} description` });
  };
  const configuration = new oidc.Configuration({
    issuer: ISSUER,
    token_endpoint: `${ISSUER}/token`,
    device_authorization_endpoint: `${ISSUER}/device/auth`,
  }, IDP.clientId, undefined, oidc.None());
  configuration[oidc.customFetch] = fakeFetch;
  oidc.allowInsecureRequests(configuration);
  const context: CommandContext = {
    stdout: new Writable({ write(_chunk, _encoding, done) { done(); } }),
    stderr: new Writable({ write(chunk, _encoding, done) { stderr += String(chunk); done(); } }),
    stdoutIsTTY: false,
    env: {},
    signal: new AbortController().signal,
    onSignal: () => () => {},
    now: () => clock,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock += ms;
    },
  };
  return { configuration, context, sleeps, requests, stderr: () => stderr };
}

async function failureOf(promise: Promise<unknown>): Promise<DbgateError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DbgateError) return error;
    throw error;
  }
  return expect.fail('the device login succeeded');
}

describe('dbgate login --device', () => {
  it('prints the complete verification URL and the user code', async () => {
    const { configuration, context, stderr } = setUp({ tokenErrors: ['access_denied'], interval: 1 });
    await failureOf(deviceLogin(configuration, IDP, context));
    expect(stderr()).toContain(`  ${ISSUER}/device?user_code=BDWP-HQPK\n`);
    expect(stderr()).toContain('and confirm that it shows the code: BDWP-HQPK\n');
  });

  it('polls at the interval the server names, and every 5 s when it names none', async () => {
    const named = setUp({ tokenErrors: ['authorization_pending', 'authorization_pending', 'access_denied'], interval: 2 });
    await failureOf(deviceLogin(named.configuration, IDP, named.context));
    expect(named.sleeps).toEqual([2000, 2000, 2000]);
    const unnamed = setUp({ tokenErrors: ['access_denied'] });
    await failureOf(deviceLogin(unnamed.configuration, IDP, unnamed.context));
    expect(unnamed.sleeps).toEqual([5000]);
  });

  it('sends the device code with the device_code grant type', async () => {
    const { configuration, context, requests } = setUp({ tokenErrors: ['access_denied'], interval: 1 });
    await failureOf(deviceLogin(configuration, IDP, context));
    const poll = requests.find((request) => request.url.endsWith('/token'))!;
    expect(poll.body.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:device_code');
    expect(poll.body.get('device_code')).toBe('device-code-1');
    expect(poll.body.get('client_id')).toBe('dbgate-cli');
  });

  it('slows down by 5 s for each slow_down, for all later polls, and says so', async () => {
    const { configuration, context, sleeps, stderr } = setUp({
      tokenErrors: ['slow_down', 'authorization_pending', 'slow_down', 'access_denied'],
      interval: 1,
    });
    await failureOf(deviceLogin(configuration, IDP, context));
    expect(sleeps).toEqual([1000, 6000, 6000, 11000]);
    expect(stderr()).toContain('dbgate: the identity provider asked to poll less often; checking every 6s');
    expect(stderr()).toContain('checking every 11s');
  });

  it('ends with a clear message on expired_token', async () => {
    const { configuration, context } = setUp({ tokenErrors: ['authorization_pending', 'expired_token'], interval: 1 });
    const error = await failureOf(deviceLogin(configuration, IDP, context));
    expect(error.message).toBe('login failed: the code expired before the sign-in was confirmed (it is valid for 10m)');
    expect(error.hint).toBe('run dbgate login --device again and confirm the code sooner');
    expect(error.exitCode).toBe(1);
  });

  it('stops polling once the code has expired, even if the server never says so', async () => {
    const { configuration, context, requests } = setUp({ tokenErrors: [], interval: 5, expiresIn: 12 });
    const error = await failureOf(deviceLogin(configuration, IDP, context));
    expect(error.message).toContain('the code expired before the sign-in was confirmed');
    expect(requests.filter((request) => request.url.endsWith('/token'))).toHaveLength(2);
  });

  it('ends with a clear message on access_denied', async () => {
    const { configuration, context } = setUp({ tokenErrors: ['access_denied'], interval: 1 });
    const error = await failureOf(deviceLogin(configuration, IDP, context));
    expect(error.message).toBe('login failed: the sign-in was denied in the browser (someone chose Abort, or the identity provider refused)');
    expect(error.hint).toContain('confirm only a code your terminal shows');
  });

  it('passes any other OAuth error on with its description', async () => {
    const { configuration, context } = setUp({ tokenErrors: ['invalid_client'], interval: 1 });
    const error = await failureOf(deviceLogin(configuration, IDP, context));
    expect(error.message).toBe('login failed: the identity provider refused the device sign-in: invalid_client: invalid_client description');
  });
});
