import type { Command } from 'commander';
import { parsePort, untilAborted, writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { startDevStack } from '../../dev/dev-stack.js';
import { createJsonLogger } from '../log.js';

export interface DevOptions {
  upstream?: string;
  state?: string;
  pgPort?: number;
  apiPort?: number;
  idpPort?: number;
  json?: boolean;
}

/** Starts the dev stack, prints how to use it (or the one JSON ready line), and runs until SIGINT/SIGTERM. */
export async function devRun(options: DevOptions, context: CommandContext): Promise<void> {
  // With --json, stdout carries exactly one line; the gateway's own log goes to stderr, at warn and above.
  const log = createJsonLogger(context.stderr, options.json ? 'warn' : 'info');
  const stack = await startDevStack({
    upstream: options.upstream,
    stateDir: options.state,
    pgPort: options.pgPort,
    apiPort: options.apiPort,
    idpPort: options.idpPort,
    log,
    env: context.env,
  });
  if (options.json) {
    writeLine(context.stdout, JSON.stringify(stack.readyLine));
  } else {
    const { pg, api, idp, state } = stack.readyLine;
    writeLine(context.stdout, `dbgate dev gateway is ready`);
    writeLine(context.stdout, `  PostgreSQL  ${pg}   (target prod-orders)`);
    writeLine(context.stdout, `  API         ${api}`);
    writeLine(context.stdout, `  IdP         ${idp}   (alice, bob, carol; password dbgate-dev)`);
    writeLine(context.stdout, `  state       ${state}`);
    writeLine(context.stdout, '');
    writeLine(context.stdout, 'Next, in another terminal:');
    writeLine(context.stdout, `  dbgate login --gateway ${api}`);
    writeLine(context.stdout, '  dbgate connect prod-orders -- psql');
    writeLine(context.stdout, '');
    writeLine(context.stdout, 'Or without a browser login (automation):');
    writeLine(context.stdout, `  export DBGATE_GATEWAY=${api}`);
    writeLine(context.stdout, `  export DBGATE_CREDENTIAL=$(dbgate-gateway credential mint --state ${state} --user alice --groups engineering)`);
  }
  await untilAborted(context.signal);
  await stack.close();
}

export function registerDev(program: Command, context: CommandContext): void {
  program
    .command('dev')
    .description('run a complete dev gateway with the demo target (prod-orders)')
    .option('--upstream <postgres-url>', 'use this PostgreSQL server instead of the embedded one (needs CREATEROLE/CREATEDB)')
    .option('--state <dir>', 'where config, keys and certificate live (default $XDG_STATE_HOME/dbgate/dev)')
    .option('--pg-port <n>', 'PostgreSQL port of the gateway (0 = random)', parsePort)
    .option('--api-port <n>', 'HTTP API port (0 = random)', parsePort)
    .option('--idp-port <n>', 'dev IdP port (0 = random)', parsePort)
    .option('--json', 'print one JSON line when ready, nothing else on stdout')
    .addHelpText('after', '\nExamples:\n  dbgate-gateway dev --upstream postgres://postgres:secret@127.0.0.1:5432/postgres\n' +
      '  dbgate-gateway dev --upstream "$URL" --state /tmp/dbgate --pg-port 0 --api-port 0 --json\n')
    .action((options: DevOptions) => devRun(options, context));
}
