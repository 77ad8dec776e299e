/**
 * `dbgate login --device`: the OAuth 2.0 device authorization grant (RFC 8628) for sessions without a browser (SSH,
 * containers). The user opens the verification URL on any device and confirms the code; the CLI polls the token
 * endpoint at the interval the server asks for.
 */
import * as oidc from 'openid-client';
import { writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { formatDuration } from '../../shared/duration.js';
import { loginFailed } from '../cli-errors.js';
import { sleepOf } from '../context-services.js';
import type { IdpTokens } from './browser-login.js';
import { DEVICE_CODE_GRANT_TYPE, oauthErrorCode, oauthErrorText, scopeParameter, type IdentityProviderSettings } from './identity-provider.js';

/** RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default." */
const DEFAULT_INTERVAL_SECONDS = 5;
/** RFC 8628 §3.5: on slow_down the interval grows by 5 seconds for this and all later requests. */
const SLOW_DOWN_INCREMENT_SECONDS = 5;

export async function deviceLogin(
  configuration: oidc.Configuration,
  idp: IdentityProviderSettings,
  context: CommandContext,
): Promise<IdpTokens> {
  let authorization: oidc.DeviceAuthorizationResponse;
  try {
    authorization = await oidc.initiateDeviceAuthorization(configuration, {
      scope: scopeParameter(idp.scopes),
      ...(idp.resource ? { resource: idp.resource } : {}),
    });
  } catch (error) {
    throw loginFailed(`the identity provider did not start a device sign-in: ${oauthErrorText(error)}`, { cause: error });
  }

  const expiresAt = context.now() + authorization.expires_in * 1000;
  writeLine(context.stderr, 'To sign in, open this URL on any device:');
  writeLine(context.stderr, `  ${authorization.verification_uri_complete ?? authorization.verification_uri}`);
  writeLine(context.stderr, `and confirm that it shows the code: ${authorization.user_code}`);
  if (authorization.verification_uri_complete) {
    writeLine(context.stderr, `(or open ${authorization.verification_uri} and enter the code)`);
  }
  writeLine(context.stderr, `Waiting up to ${formatDuration(authorization.expires_in * 1000)} for the sign-in (Ctrl-C to cancel)...`);

  const sleep = sleepOf(context);
  let intervalSeconds = authorization.interval ?? DEFAULT_INTERVAL_SECONDS;
  for (;;) {
    try {
      await sleep(intervalSeconds * 1000, context.signal);
    } catch {
      throw loginFailed('cancelled');
    }
    if (context.now() >= expiresAt) throw deviceCodeExpired(authorization.expires_in);
    try {
      const tokens = await oidc.genericGrantRequest(configuration, DEVICE_CODE_GRANT_TYPE, {
        device_code: authorization.device_code,
      });
      if (!tokens.id_token) throw loginFailed('the identity provider returned no ID token (is "openid" among the scopes?)');
      return {
        subjectToken: tokens.id_token,
        ...(tokens.refresh_token ? { refreshToken: tokens.refresh_token } : {}),
      };
    } catch (error) {
      switch (oauthErrorCode(error)) {
        case 'authorization_pending':
          continue;
        case 'slow_down':
          intervalSeconds += SLOW_DOWN_INCREMENT_SECONDS;
          writeLine(context.stderr, `dbgate: the identity provider asked to poll less often; checking every ${intervalSeconds}s`);
          continue;
        case 'expired_token':
          throw deviceCodeExpired(authorization.expires_in);
        case 'access_denied':
          throw loginFailed('the sign-in was denied in the browser (someone chose Abort, or the identity provider refused)', {
            hint: 'run dbgate login --device again, and confirm only a code your terminal shows',
          });
        case undefined:
          if (error instanceof Error && error.name === 'DbgateError') throw error;
      }
      throw loginFailed(`the identity provider refused the device sign-in: ${oauthErrorText(error)}`, { cause: error });
    }
  }
}

function deviceCodeExpired(expiresInSeconds: number): Error {
  return loginFailed(`the code expired before the sign-in was confirmed (it is valid for ${formatDuration(expiresInSeconds * 1000)})`, {
    hint: 'run dbgate login --device again and confirm the code sooner',
  });
}
