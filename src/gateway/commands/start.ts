import type { Command } from 'commander';
import { untilAborted, type CommandContext } from '../../shared/cli-runtime.js';
import { loadGatewayConfig } from '../config/load.js';
import { startGateway } from '../gateway.js';

export interface StartOptions {
  config: string;
}

/** Runs the gateway until SIGINT/SIGTERM. */
export async function startRun(options: StartOptions, context: CommandContext): Promise<void> {
  const config = await loadGatewayConfig(options.config, context.env);
  const gateway = await startGateway(config);
  await untilAborted(context.signal);
  await gateway.close();
}

export function registerStart(program: Command, context: CommandContext): void {
  program
    .command('start')
    .description('run the gateway with a config file')
    .requiredOption('-c, --config <file>', 'gateway config (YAML)')
    .addHelpText('after', '\nExample:\n  dbgate-gateway start --config /etc/dbgate/gateway.yaml\n')
    .action((options: StartOptions) => startRun(options, context));
}
