/**
 * The CLI side of the gateway's HTTP API (/v1). Every failure becomes a DbgateError that says what happened and
 * what to do; the gateway's own message and hint are passed on as they are.
 */
import type {
  ApiErrorBody,
  CredentialRequest,
  CredentialResponse,
  TargetSummary,
  TargetsResponse,
  TunnelActivityResponse,
  WhoAmIResponse,
} from '../shared/api.js';
import { DbgateError } from '../shared/errors.js';
import { loginFailed } from './cli-errors.js';

const REQUEST_TIMEOUT_MS = 15_000;

/** An answer the gateway gave with a non-2xx status. */
export class GatewayApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody,
  ) {
    super(body.message);
  }
}

export class GatewayApi {
  constructor(
    readonly url: URL,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  /** POST /v1/credentials: an IdP token (and the login's nonce) for a dbgate credential. */
  async exchangeIdpToken(request: CredentialRequest): Promise<CredentialResponse> {
    try {
      return await this.call<CredentialResponse>('POST', '/v1/credentials', { body: request });
    } catch (error) {
      if (error instanceof GatewayApiError) {
        throw loginFailed(`the gateway refused the identity provider's token: ${error.body.message}`, {
          ...(error.body.hint && error.body.error !== 'invalid_token' ? { hint: error.body.hint } : {}),
          cause: error,
        });
      }
      throw error;
    }
  }

  /** GET /v1/me: who the gateway says this credential belongs to (and whether its session is alive). */
  async whoAmI(credential: string): Promise<WhoAmIResponse> {
    try {
      return await this.call<WhoAmIResponse>('GET', '/v1/me', { credential });
    } catch (error) {
      throw sessionError(error);
    }
  }

  /** GET /v1/targets: the targets this credential's groups may reach, with the access level. */
  async listTargets(credential: string): Promise<TargetSummary[]> {
    let response: TargetsResponse;
    try {
      response = await this.call<TargetsResponse>('GET', '/v1/targets', { credential });
    } catch (error) {
      throw sessionError(error);
    }
    if (!Array.isArray(response?.targets)) {
      throw new DbgateError('GATEWAY_UNREACHABLE', `GET ${new URL('/v1/targets', this.url).href} answered with something other than a list of targets`);
    }
    return response.targets;
  }

  /**
   * GET /v1/me/activity: this identity's statements through the tunnel `tunnelId`, counted by the gateway. `signal`
   * abandons the request (the tunnel closed).
   */
  async tunnelActivity(credential: string, tunnelId: string, signal?: AbortSignal): Promise<TunnelActivityResponse> {
    const path = `/v1/me/activity?tunnel=${encodeURIComponent(tunnelId)}`;
    let response: TunnelActivityResponse;
    try {
      response = await this.call<TunnelActivityResponse>('GET', path, { credential, signal });
    } catch (error) {
      throw sessionError(error);
    }
    const counts = [response.allowed, response.masked, response.denied, response.held, response.failed];
    if (!counts.every((count) => Number.isSafeInteger(count) && count >= 0)) {
      throw new DbgateError('GATEWAY_UNREACHABLE', `GET ${new URL(path, this.url).href} answered with something other than statement counts`);
    }
    return response;
  }

  /** DELETE /v1/credentials/current: ends the credential's session; the gateway closes its live connections. */
  async revokeCurrent(credential: string): Promise<void> {
    await this.call<void>('DELETE', '/v1/credentials/current', { credential });
  }

  private async call<T>(method: string, path: string, options: { body?: unknown; credential?: string; signal?: AbortSignal | undefined }): Promise<T> {
    const endpoint = new URL(path, this.url);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.credential !== undefined) headers['authorization'] = `Bearer ${options.credential}`;
    let response: Response;
    try {
      response = await this.fetchImpl(endpoint, {
        method,
        headers,
        ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
        signal: options.signal ? AbortSignal.any([options.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]) : AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      throw new DbgateError('GATEWAY_UNREACHABLE', `cannot reach the gateway at ${this.url.origin}: ${networkReason(error)}`, {
        hint: 'check the URL (DBGATE_GATEWAY or the stored login) and that the gateway is running',
        cause: error,
      });
    }
    if (response.status === 204) return undefined as T;
    const body = (await response.json().catch(() => null)) as unknown;
    if (!response.ok) {
      const error = body as Partial<ApiErrorBody> | null;
      if (error && typeof error.error === 'string' && typeof error.message === 'string') {
        throw new GatewayApiError(response.status, error as ApiErrorBody);
      }
      throw new DbgateError('GATEWAY_UNREACHABLE', `${method} ${endpoint.href} answered HTTP ${response.status}`, {
        hint: 'is this URL a dbgate gateway?',
      });
    }
    if (body === null || typeof body !== 'object') {
      throw new DbgateError('GATEWAY_UNREACHABLE', `${method} ${endpoint.href} answered with something other than JSON`);
    }
    return body as T;
  }
}

/** A 401 from the gateway about the caller's own credential: the user must log in again (exit 4). */
export function sessionError(error: unknown): unknown {
  if (!(error instanceof GatewayApiError) || error.status !== 401) return error;
  if (error.body.error === 'revoked') {
    return new DbgateError('NOT_LOGGED_IN', 'your dbgate session was ended (logged out or revoked) - run: dbgate login', { cause: error });
  }
  return new DbgateError('CREDENTIAL_EXPIRED', `the gateway refused your credential (${error.body.message}) - run: dbgate login`, { cause: error });
}

/** The innermost message of a fetch failure ("ECONNREFUSED 127.0.0.1:6580" rather than "fetch failed"). */
export function networkReason(error: unknown): string {
  let current: unknown = error;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  if (current instanceof Error && 'code' in current && typeof current.code === 'string') {
    return current.message.includes(current.code) ? current.message : `${current.code}: ${current.message}`;
  }
  return current instanceof Error ? current.message : String(current);
}
