/**
 * `dbgate login`: obtains an IdP token (browser, device code, or an agent's client credentials / token exchange),
 * exchanges it at the gateway for a dbgate credential, and stores the credential (and the IdP refresh token) in the
 * OS keychain — or, with `--insecure-storage`, in a 0600 file.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import type { IdentitySummary } from '../../shared/api.js';
import { writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { formatDuration, parseDuration } from '../../shared/duration.js';
import { DbgateError } from '../../shared/errors.js';
import { fetchOf, secretStoreOf } from '../context-services.js';
import { GatewayApi } from '../gateway-api.js';
import { discoverGateway, gatewayUrl } from '../gateway-discovery.js';
import { agentLogin, agentSecretsFromEnv } from '../login/agent-login.js';
import { browserLogin, type IdpTokens } from '../login/browser-login.js';
import { deviceLogin } from '../login/device-login.js';
import { discoverIdentityProvider, identityProviderOf } from '../login/identity-provider.js';
import { configDirectory, profileName, readCliConfig, type LoginMethod } from '../profile/cli-config.js';
import { storeLogin } from '../profile/stored-login.js';

export const DEFAULT_LOGIN_TIMEOUT_MS = 5 * 60_000;

export interface LoginOptions {
  gateway?: string | undefined;
  profile?: string | undefined;
  /** RFC 8628 device authorization grant instead of the browser on this machine. */
  device?: boolean | undefined;
  /** false with --no-browser: print the URL only. */
  browser?: boolean | undefined;
  insecureStorage?: boolean | undefined;
  clientCredentials?: boolean | undefined;
  onBehalfOf?: boolean | undefined;
  /** How long the browser login waits for the sign-in, in ms. */
  timeout?: number | undefined;
}

export async function loginRun(options: LoginOptions, context: CommandContext): Promise<void> {
  const method = loginMethod(options);
  const agent = method === 'client_credentials' || method === 'token_exchange'
    ? agentSecretsFromEnv(context.env, method === 'token_exchange')
    : undefined;
  const profile = profileName(options.profile, context.env);
  const configDir = configDirectory(context.env);
  const config = await readCliConfig(configDir);
  const gateway = gatewayUrl(options.gateway, context.env, config.profiles[profile]?.gateway);

  // Check the store before anyone signs in: a missing keychain must not cost the user a browser round trip.
  const store = secretStoreOf(context, options.insecureStorage ? 'file' : 'keychain', profile, configDir);
  if (store.kind === 'keychain') await store.read();

  const fetchImpl = fetchOf(context);
  const discovery = await discoverGateway(gateway, fetchImpl);
  const idp = identityProviderOf(discovery, gateway);
  const api = new GatewayApi(gateway, fetchImpl);

  let tokens: IdpTokens;
  let finishPage: ((page: { ok: boolean; message: string }) => void) | undefined;
  if (agent) {
    tokens = await agentLogin(idp, agent, fetchImpl);
  } else {
    const configuration = await discoverIdentityProvider(idp.issuer, idp.clientId, fetchImpl);
    if (method === 'device') {
      tokens = await deviceLogin(configuration, idp, context);
    } else {
      const browser = await browserLogin(configuration, idp, context, {
        openBrowser: options.browser !== false,
        timeoutMs: options.timeout ?? DEFAULT_LOGIN_TIMEOUT_MS,
      });
      tokens = browser;
      finishPage = browser.complete;
    }
  }

  try {
    const response = await api.exchangeIdpToken({
      subject_token: tokens.subjectToken,
      ...(tokens.nonce !== undefined ? { nonce: tokens.nonce } : {}),
    });
    await storeLogin(context, {
      profile,
      configDir,
      gateway,
      method,
      store,
      idp: {
        issuer: idp.issuer,
        client_id: agent?.clientId ?? idp.clientId,
        ...(idp.resource ? { resource: idp.resource } : {}),
      },
      response,
      refreshToken: tokens.refreshToken,
    });
    const validFor = formatDuration(Date.parse(response.expires_at) - context.now());
    finishPage?.({ ok: true, message: `Signed in to dbgate as ${describeIdentity(response.identity)}.` });
    const groups = response.identity.groups.length > 0 ? `, groups ${response.identity.groups.join(', ')}` : '';
    writeLine(context.stderr, `Logged in to ${gateway.href.replace(/\/$/, '')} as ${describeIdentity(response.identity)}${groups}; credential valid for ${validFor}.`);
    writeLine(context.stderr, `Secrets are stored in ${store.location}${profile === 'default' ? '' : ` (profile ${profile})`}.`);
    if (context.env['DBGATE_CREDENTIAL']) {
      writeLine(context.stderr, 'dbgate: note: DBGATE_CREDENTIAL is set and takes precedence over this login; unset it to use the login');
    }
    if (!tokens.refreshToken && !agent) {
      writeLine(context.stderr, 'dbgate: the identity provider granted no refresh token; run dbgate login again when the credential expires');
    }
  } catch (error) {
    finishPage?.({ ok: false, message: (error as Error).message });
    throw error;
  }
}

function loginMethod(options: LoginOptions): LoginMethod {
  if (options.onBehalfOf && !options.clientCredentials) {
    throw new DbgateError('USAGE', '--on-behalf-of is for agents: use it with --client-credentials');
  }
  if (options.clientCredentials && options.device) {
    throw new DbgateError('USAGE', '--device and --client-credentials exclude each other', {
      hint: '--device signs a person in; --client-credentials logs an agent in with DBGATE_CLIENT_ID / DBGATE_CLIENT_SECRET',
    });
  }
  if (options.clientCredentials) return options.onBehalfOf ? 'token_exchange' : 'client_credentials';
  return options.device ? 'device' : 'browser';
}

/** "alice", "Alice Liddell (alice)", or "alice, with report-bot acting (agent)". */
export function describeIdentity(identity: IdentitySummary): string {
  const who = identity.name && identity.name !== identity.subject ? `${identity.name} (${identity.subject})` : identity.subject;
  if (identity.actors.length > 0) return `${who}, with ${identity.actors.join(' for ')} acting (${identity.kind})`;
  return identity.kind === 'human' ? who : `${who} (${identity.kind})`;
}

function parseTimeout(value: string): number {
  const ms = parseDuration(value);
  if (ms === null || ms <= 0) {
    throw new DbgateError('USAGE', `not a duration: ${value}`, { hint: 'e.g. 90s, 5m' });
  }
  return ms;
}

export function registerLogin(program: Command, context: CommandContext): void {
  program
    .command('login')
    .description('sign in through the gateway\'s identity provider and store a dbgate credential')
    .option('--gateway <url>', 'gateway API URL (default: DBGATE_GATEWAY or the profile\'s gateway)')
    .option('--profile <name>', 'keep this login apart from others (default: DBGATE_PROFILE or "default")')
    .option('--device', 'sign in on another device with a code (for SSH sessions and machines without a browser)')
    .option('--no-browser', 'do not open a browser; only print the sign-in URL')
    .option('--insecure-storage', 'store secrets in a 0600 file in the config dir instead of the OS keychain')
    .option('--client-credentials', 'log an agent in with DBGATE_CLIENT_ID and DBGATE_CLIENT_SECRET')
    .option('--on-behalf-of', "with --client-credentials: act for the person whose IdP access token is in DBGATE_SUBJECT_TOKEN")
    .addOption(new Option('--timeout <duration>', 'how long to wait for the browser sign-in').default(DEFAULT_LOGIN_TIMEOUT_MS, '5m')
      .argParser(parseTimeout))
    .addHelpText('after', [
      '',
      'Examples:',
      '  dbgate login --gateway https://dbgate.example.com',
      '  dbgate login --device                          # over SSH: open the URL on your laptop',
      '  DBGATE_CLIENT_ID=report-bot DBGATE_CLIENT_SECRET=... dbgate login --client-credentials',
      '',
    ].join('\n'))
    .action((flags: LoginOptions) => loginRun(flags, context));
}
