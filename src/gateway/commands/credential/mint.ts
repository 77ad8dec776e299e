import type { Command } from 'commander';
import { writeLine, type CommandContext } from '../../../shared/cli-runtime.js';
import { parseDuration } from '../../../shared/duration.js';
import { DbgateError } from '../../../shared/errors.js';
import { AuditWriter } from '../../audit/audit-writer.js';
import { loadGatewayConfig } from '../../config/load.js';
import { CredentialAuthority, type IdentityKind } from '../../identity/credentials.js';
import { StateStore } from '../../store/state-store.js';
import { issueSessionCredential } from '../../identity/sessions.js';
import { configFileFrom } from '../config-source.js';

export interface MintOptions {
  state?: string;
  config?: string;
  user: string;
  email?: string;
  groups?: string;
  kind: string;
  ttl: string;
}

/**
 * Mints a credential directly with the gateway's key: break-glass access and service tokens. The session is
 * recorded in the state store (so it can be revoked) and the minting itself is audited.
 */
export async function mintRun(options: MintOptions, context: CommandContext): Promise<void> {
  const config = await loadGatewayConfig(configFileFrom(options), context.env);
  const ttlMs = parseDuration(options.ttl);
  if (ttlMs === null || ttlMs <= 0) throw new DbgateError('USAGE', `--ttl: not a duration: ${options.ttl}`, { hint: 'e.g. 15m, 1h' });
  if (ttlMs > config.credentials.maxTtlMs) {
    throw new DbgateError('USAGE', `--ttl ${options.ttl} is longer than this gateway's credentials.max_ttl`);
  }
  if (!['human', 'agent', 'service'].includes(options.kind)) {
    throw new DbgateError('USAGE', `--kind must be human, agent or service (got ${options.kind})`);
  }
  if (!/^[\w.@+-]{1,128}$/.test(options.user)) {
    throw new DbgateError('USAGE', `--user: letters, digits and . _ @ + - only (got ${JSON.stringify(options.user)})`);
  }
  const groups = (options.groups ?? '').split(',').map((g) => g.trim()).filter(Boolean);
  const authority = new CredentialAuthority(config.credentials.signingKeyJwk.reveal(), config.audience, context.now);
  const store = new StateStore({ url: config.stateStore.url, password: config.stateStore.password, maxConnections: 1 });
  let token: string;
  try {
    await store.migrate();
    const audit = new AuditWriter(store, { gateway: config.name });
    ({ token } = await issueSessionCredential(
      { authority, store, audit },
      { subject: options.user, email: options.email, groups, kind: options.kind as IdentityKind, ttlMs },
      'credential-mint',
      { minted_by: `os-user:${context.env['USER'] ?? context.env['LOGNAME'] ?? 'unknown'}` },
    ));
    await audit.close();
  } finally {
    await store.close();
  }
  writeLine(context.stdout, token);
}

export function registerCredentialMint(credential: Command, context: CommandContext): void {
  credential
    .command('mint')
    .description('mint a credential with the gateway key (break-glass and service tokens; audited)')
    .option('--state <dir>', 'a dev stack state directory')
    .option('--config <file>', 'a gateway config file')
    .requiredOption('--user <id>', 'subject of the credential (the PostgreSQL user name clients connect as)')
    .option('--email <email>', 'email claim')
    .option('--groups <a,b>', 'comma-separated groups')
    .option('--kind <kind>', 'human, agent or service', 'human')
    .option('--ttl <duration>', 'lifetime, e.g. 15m or 1h', '15m')
    .addHelpText('after', '\nExamples:\n  dbgate-gateway credential mint --state ~/.local/state/dbgate/dev --user alice --groups engineering\n' +
      '  PGPASSWORD=$(dbgate-gateway credential mint --config gateway.yaml --user ops --ttl 5m) psql ...\n')
    .action((options: MintOptions) => mintRun(options, context));
}
