/**
 * `dbgate status` (alias `whoami`): who the gateway says you are, until when, and where your secrets are kept.
 * The credential is renewed first if it is about to expire, exactly as any other command would.
 */
import type { Command } from 'commander';
import type { IdentitySummary, WhoAmIResponse } from '../../shared/api.js';
import { ExitWith, writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { formatDuration } from '../../shared/duration.js';
import { DbgateError, ExitCode } from '../../shared/errors.js';
import { fetchOf } from '../context-services.js';
import { openCredentialSource, type CredentialSource, type CurrentCredential } from '../credential-source.js';
import { GatewayApi } from '../gateway-api.js';
import { configDirectory, profileName, readCliConfig, type LoginMethod } from '../profile/cli-config.js';

export interface StatusOptions {
  profile?: string | undefined;
  gateway?: string | undefined;
  json?: boolean | undefined;
}

/** `dbgate status --json`: one object, always with every key (null when unknown). */
export interface StatusReport {
  /** true when a credential is available and the gateway did not refuse it. */
  logged_in: boolean;
  profile: string;
  /** The gateway API URL. */
  gateway: string | null;
  /** The gateway deployment's name, from GET /v1/me. */
  gateway_name: string | null;
  /** Whether GET /v1/me reached the gateway (null: not tried). */
  gateway_reachable: boolean | null;
  identity: IdentitySummary | null;
  session_id: string | null;
  /** ISO 8601. */
  expires_at: string | null;
  expires_in_seconds: number | null;
  /** Where the credential comes from: the OS keychain, a 0600 file, or DBGATE_CREDENTIAL. */
  storage: 'keychain' | 'file' | 'env' | null;
  storage_location: string | null;
  login_method: LoginMethod | null;
  /** Whether the credential can be renewed without the user (refresh token, or agent secrets in the env). */
  renewable: boolean;
  /** Why `logged_in` is false or the gateway was not reached; null otherwise. */
  problem: string | null;
}

export async function statusRun(options: StatusOptions, context: CommandContext): Promise<void> {
  const profile = profileName(options.profile, context.env);
  const report: StatusReport = {
    logged_in: false,
    profile,
    gateway: null,
    gateway_name: null,
    gateway_reachable: null,
    identity: null,
    session_id: null,
    expires_at: null,
    expires_in_seconds: null,
    storage: null,
    storage_location: null,
    login_method: null,
    renewable: false,
    problem: null,
  };

  let source: CredentialSource;
  let credential: CurrentCredential;
  try {
    source = await openCredentialSource(context, options);
    report.gateway = source.gateway.href.replace(/\/$/, '');
    report.storage = source.storage.kind;
    report.storage_location = source.storage.location;
    report.login_method = source.login?.method ?? null;
    credential = await source.credential();
    report.renewable = source.renewable();
  } catch (error) {
    if (!(error instanceof DbgateError) || error.exitCode !== ExitCode.notLoggedIn || !options.json) throw error;
    report.gateway ??= (await readCliConfig(configDirectory(context.env))).profiles[profile]?.gateway ?? null;
    report.problem = error.message;
    writeLine(context.stdout, JSON.stringify(report));
    writeLine(context.stderr, `dbgate: ${error.message}`);
    throw new ExitWith(error.exitCode);
  }

  report.session_id = source.login?.session_id ?? null;
  report.identity = source.login?.identity ?? null;
  report.expires_at = new Date(credential.expiresAt).toISOString();
  report.expires_in_seconds = Math.max(0, Math.floor((credential.expiresAt - context.now()) / 1000));

  let me: WhoAmIResponse | undefined;
  let failure: DbgateError | undefined;
  try {
    me = await new GatewayApi(source.gateway, fetchOf(context)).whoAmI(credential.token);
    report.gateway_reachable = true;
    report.gateway_name = me.gateway;
    report.identity = me.identity;
    report.session_id = me.session_id;
    report.expires_at = me.expires_at;
    report.expires_in_seconds = Math.max(0, Math.floor((Date.parse(me.expires_at) - context.now()) / 1000));
    report.logged_in = true;
  } catch (error) {
    if (!(error instanceof DbgateError)) throw error;
    failure = error;
    report.problem = error.message;
    if (error.code === 'GATEWAY_UNREACHABLE') {
      // The stored login still stands; only the check against the gateway could not be made.
      report.gateway_reachable = false;
      report.logged_in = true;
    } else {
      report.gateway_reachable = true;
    }
  }

  if (options.json) writeLine(context.stdout, JSON.stringify(report));
  else printReport(report, context);
  if (failure) {
    writeLine(context.stderr, `dbgate: ${failure.message}`);
    if (failure.hint) writeLine(context.stderr, `hint: ${failure.hint}`);
    throw new ExitWith(failure.exitCode);
  }
}

function printReport(report: StatusReport, context: CommandContext): void {
  const identity = report.identity;
  const out = (label: string, value: string): void => writeLine(context.stdout, `  ${`${label}:`.padEnd(13)}${value}`);
  const gatewayName = report.gateway_name ? ` (gateway "${report.gateway_name}")` : '';
  if (identity) {
    const name = identity.name && identity.name !== identity.subject ? `${identity.name} (${identity.subject})` : identity.subject;
    writeLine(context.stdout, `Logged in to ${report.gateway}${gatewayName} as ${name}`);
    if (identity.email) out('email', identity.email);
    out('kind', identity.kind);
    out('groups', identity.groups.length > 0 ? identity.groups.join(', ') : '(none)');
    if (identity.actors.length > 0) out('acting', `${identity.actors.join(' for ')} on behalf of ${identity.subject}`);
  } else {
    writeLine(context.stdout, `Using a credential for ${report.gateway}${gatewayName}`);
  }
  const left = (report.expires_in_seconds ?? 0) * 1000;
  out('credential', `${left > 0 ? `valid for ${formatDuration(left)}` : 'expired'} (until ${report.expires_at})` +
    `${report.renewable ? ', renewed automatically' : ''}`);
  if (report.session_id) out('session', report.session_id);
  out('secrets', report.storage === 'env' ? 'DBGATE_CREDENTIAL (environment)' : report.storage_location ?? '-');
  out('profile', report.profile);
}

export function registerStatus(program: Command, context: CommandContext): void {
  program
    .command('status')
    .alias('whoami')
    .description('show who you are logged in as, at which gateway, until when, and where secrets are stored')
    .option('--profile <name>', 'the login to show (default: DBGATE_PROFILE or "default")')
    .option('--gateway <url>', 'gateway API URL (default: DBGATE_GATEWAY or the stored login)')
    .option('--json', 'print one JSON object (stable shape) on stdout')
    .addHelpText('after', [
      '',
      'Examples:',
      '  dbgate status',
      '  dbgate status --json | jq -r .expires_at',
      '  dbgate status --profile staging',
      '',
    ].join('\n'))
    .action((flags: StatusOptions) => statusRun(flags, context));
}
