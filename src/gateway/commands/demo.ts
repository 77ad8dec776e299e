import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ExitWith, writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { startDevStack } from '../../dev/dev-stack.js';
import { createJsonLogger } from '../log.js';
import { issueSessionCredential } from '../identity/sessions.js';

/** bin/dbgate of this package, so the demo runs the same CLI a user would. */
const DBGATE_BIN = fileURLToPath(new URL('../../../bin/dbgate', import.meta.url));

export interface DemoOptions {
  state?: string;
  /**
   * true: sign in through the browser even without a detected display (the URL is printed; tests drive it).
   * false: never; mint alice's credential directly. Default: the browser when this machine has a display.
   */
  browser?: boolean;
}

/** Whether a browser can be opened here: macOS and Windows always have one; Linux when a display is set. */
function hasDisplay(env: NodeJS.ProcessEnv): boolean {
  return process.platform === 'darwin' || process.platform === 'win32' || Boolean(env['DISPLAY'] || env['WAYLAND_DISPLAY']);
}

/** Runs bin/dbgate with the terminal attached; resolves with its exit code. Ctrl-C belongs to the child. */
function runDbgate(args: string[], env: NodeJS.ProcessEnv, context: CommandContext, forwardInterrupt: boolean): Promise<number> {
  const child = spawn(process.execPath, [DBGATE_BIN, ...args], { stdio: 'inherit', env });
  const unsubscribe = context.onSignal((signal) => {
    if (signal === 'SIGTERM' || forwardInterrupt) child.kill(signal);
  });
  return new Promise<number>((resolve) => child.once('exit', (exitCode) => {
    unsubscribe();
    resolve(exitCode ?? 1);
  }));
}

/**
 * The quickstart in one command: the dev stack on its embedded PostgreSQL, alice signed in (in the browser when
 * there is one), and psql through `dbgate connect prod-orders`. Ends, and stops everything, when psql ends.
 */
export async function demoRun(options: DemoOptions, context: CommandContext): Promise<void> {
  writeLine(context.stderr, 'dbgate demo: starting the dev stack (embedded PostgreSQL, identity provider, demo data, gateway)...');
  const stack = await startDevStack({ upstream: undefined, stateDir: options.state, pgPort: 0, apiPort: 0, idpPort: 0,
    log: createJsonLogger(context.stderr, 'warn'), env: context.env });
  try {
    const api = stack.gateway.apiUrl;
    // The demo's login lives in the dev state dir, apart from any real dbgate login of this user.
    const env: NodeJS.ProcessEnv = { ...context.env, DBGATE_GATEWAY: api, DBGATE_CONFIG_DIR: join(stack.stateDir, 'cli') };
    delete env['DBGATE_CREDENTIAL'];
    if (options.browser ?? hasDisplay(context.env)) {
      writeLine(context.stderr, 'dbgate demo: sign in as alice (password dbgate-dev) in your browser.');
      // File storage in the dev state dir: a demo login does not belong in the user's real keychain.
      const code = await runDbgate(['login', '--gateway', api, '--insecure-storage'], env, context, true);
      if (code !== 0) throw new ExitWith(code);
    } else {
      const { token } = await issueSessionCredential(
        { authority: stack.gateway.credentials, store: stack.gateway.store, audit: stack.gateway.audit },
        { subject: 'alice', email: 'alice@example.com', groups: ['engineering'], kind: 'human', ttlMs: 3_600_000 },
        'demo',
      );
      env['DBGATE_CREDENTIAL'] = token;
      writeLine(context.stderr, 'dbgate demo: no browser on this machine, so alice (engineering) is signed in directly.');
    }
    const hasPsql = spawnSync('psql', ['--version'], { stdio: 'ignore' }).status === 0;
    writeLine(context.stderr, `dbgate demo: gateway at ${api}; you are alice (engineering: read access, PII masked).`);
    if (!hasPsql) {
      writeLine(context.stderr, 'dbgate demo: psql is not installed (apt-get install postgresql-client); opening the tunnel only.');
    } else {
      writeLine(context.stderr, 'dbgate demo: try  select name, email from customers limit 5;   and \\q to finish.');
    }
    const code = await runDbgate(['connect', 'prod-orders', ...(hasPsql ? ['--', 'psql'] : [])], env, context, !hasPsql);
    if (code !== 0) throw new ExitWith(code);
  } finally {
    await stack.close();
  }
}

export function registerDemo(program: Command, context: CommandContext): void {
  program
    .command('demo')
    .description('try dbgate: dev stack on embedded PostgreSQL, sign in as alice, psql through dbgate connect')
    .option('--state <dir>', 'dev state directory (default $XDG_STATE_HOME/dbgate/dev)')
    .option('--browser', 'sign in through the browser even when no display is detected (the URL is printed)')
    .option('--no-browser', 'do not use a browser: sign alice in directly')
    .addHelpText('after', '\nExamples:\n  npm run demo                         # = dbgate-gateway demo\n' +
      '  dbgate-gateway demo --no-browser     # over SSH\n')
    .action((options: DemoOptions) => demoRun(options, context));
}
