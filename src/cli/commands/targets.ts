/**
 * `dbgate targets`: the targets the gateway's policy lets you reach, with your access level on each (GET /v1/targets).
 * A table in a terminal, one tab-separated line per target in a pipe, a JSON array with `--json`.
 */
import type { Command } from 'commander';
import type { TargetSummary } from '../../shared/api.js';
import { writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { fetchOf } from '../context-services.js';
import { openCredentialSource } from '../credential-source.js';
import { GatewayApi } from '../gateway-api.js';
import { renderTable } from '../output/table.js';
import { terminalStyle } from '../output/terminal-style.js';


export interface TargetsOptions {
  json?: boolean | undefined;
  profile?: string | undefined;
  gateway?: string | undefined;
}

export async function targetsRun(options: TargetsOptions, context: CommandContext): Promise<void> {
  const { targets, groups } = await reachableTargets(options, context);
  if (options.json) {
    writeLine(context.stdout, JSON.stringify(targets));
    return;
  }
  if (targets.length === 0) {
    writeLine(context.stderr, 'dbgate: the gateway grants you no targets');
    writeLine(context.stderr, `hint: access comes from the gateway policy's grants to your groups (${groups.length > 0 ? groups.join(', ') : 'none'}); ask its operator`);
    return;
  }
  if (context.stdoutIsTTY) {
    const style = terminalStyle(context);
    writeLine(context.stdout, renderTable({
      head: ['TARGET', 'ACCESS', 'DESCRIPTION'],
      rows: targets.map((target) => [target.name, target.access, target.description ?? '']),
    }, style));
    return;
  }
  // Pipes get one line per target and no header: `dbgate targets | cut -f1`.
  for (const target of targets) {
    writeLine(context.stdout, [target.name, target.access, oneLine(target.description ?? '')].join('\t'));
  }
}

/** The caller's targets from the gateway, and the groups their credential names (for messages). */
export async function reachableTargets(
  options: Pick<TargetsOptions, 'profile' | 'gateway'>,
  context: CommandContext,
): Promise<{ targets: TargetSummary[]; groups: string[] }> {
  const source = await openCredentialSource(context, { profile: options.profile, gateway: options.gateway });
  const credential = await source.credential();
  const targets = await new GatewayApi(source.gateway, fetchOf(context)).listTargets(credential.token);
  return { targets, groups: credential.groups };
}

/** Descriptions are written by operators in YAML and may span lines; a tab-separated line must not. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

export function registerTargets(program: Command, context: CommandContext): void {
  program
    .command('targets')
    .description('list the targets the gateway lets you reach, with your access level (read, write, admin)')
    .option('--json', 'print a JSON array of {name, access, description} on stdout')
    .option('--profile <name>', 'the login to use (default: DBGATE_PROFILE or "default")')
    .option('--gateway <url>', 'gateway API URL (default: DBGATE_GATEWAY or the stored login)')
    .addHelpText('after', [
      '',
      'Examples:',
      '  dbgate targets                              # a table in a terminal',
      '  dbgate targets | cut -f1                    # in a pipe: name<TAB>access<TAB>description per line',
      "  dbgate targets --json | jq -r '.[] | select(.access != \"read\") | .name'",
      '',
    ].join('\n'))
    .action((flags: TargetsOptions) => targetsRun(flags, context));
}
