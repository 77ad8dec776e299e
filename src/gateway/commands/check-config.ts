import type { Command } from 'commander';
import { writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { loadGatewayConfig } from '../config/load.js';

/** Validates a config file and everything it points at (secrets, certificate, key), without starting anything. */
export async function checkConfigRun(file: string, context: CommandContext): Promise<void> {
  const config = await loadGatewayConfig(file, context.env);
  writeLine(context.stdout, `${config.source}: ok`);
  writeLine(context.stdout, `  gateway ${config.name}, PostgreSQL on ${config.listen.pg.host}:${config.listen.pg.port}` +
    ` (TLS ${config.tls.require ? 'required' : 'optional on loopback'}), API on ${config.listen.api.host}:${config.listen.api.port}`);
  writeLine(context.stdout, `  certificate SHA-256 ${config.tls.fingerprint256}`);
  for (const target of config.targets.values()) {
    writeLine(context.stdout, `  target ${target.name} -> ${target.host}:${target.port}/${target.database} as ${target.user} (tls ${target.tls})`);
  }
  writeLine(context.stdout, config.identity
    ? `  logins through ${config.identity.issuer} (client ${config.identity.clientId}, groups from claim "${config.identity.groupsClaim}")`
    : '  no identity provider: only minted credentials are accepted');
  const policy = config.policy;
  if (!policy) {
    writeLine(context.stderr, `warning: ${config.source} has no policy section: every statement will be denied (fail closed)`);
    return;
  }
  writeLine(context.stdout, `  policy ${policy.version}: ${policy.grants.length} grant(s), ${policy.rules.length} rule(s)` +
    `, inference protection ${policy.inferenceProtection ? 'on' : 'off'}`);
  for (const grant of policy.grants) {
    writeLine(context.stdout, `    grant ${grant.access} on ${[...grant.targets].join(', ')} to ${[...grant.groups].join(', ')}`);
  }
  for (const rule of policy.rules) writeLine(context.stdout, `    rule ${rule.id}: ${rule.action}`);
}

export function registerCheckConfig(program: Command, context: CommandContext): void {
  program
    .command('check-config')
    .description('validate a gateway config file (syntax, schema, secrets, certificate, keys)')
    .argument('<file>', 'gateway config (YAML)')
    .addHelpText('after', '\nExample:\n  dbgate-gateway check-config /etc/dbgate/gateway.yaml\n')
    .action((file: string) => checkConfigRun(file, context));
}
