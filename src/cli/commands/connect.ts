import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { ExitWith, parsePort, untilAborted, writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { formatDuration } from '../../shared/duration.js';
import { DbgateError } from '../../shared/errors.js';
import { fetchOf } from '../context-services.js';
import { openCredentialSource } from '../credential-source.js';
import { GatewayApi } from '../gateway-api.js';
import { LocalTunnel, type TunnelEvent } from '../tunnel/local-tunnel.js';
import { resolveGatewayEndpoint } from '../tunnel/gateway-endpoint.js';
import type { RunningLiveView, startConnectLiveView } from '../ui/connect-live-view.js';
import type { TunnelActivity } from '../ui/tunnel-activity.js';
import type { TunnelActivityPoller } from '../ui/tunnel-activity-poller.js';

export interface ConnectOptions {
  target: string;
  port?: number | undefined;
  json?: boolean | undefined;
  gateway?: string | undefined;
  profile?: string | undefined;
  /** Trust this CA for the gateway certificate instead of the pinned fingerprint from discovery. */
  gatewayCa?: string | undefined;
  /** A command to launch with PG* variables pointing at the tunnel; the tunnel closes when it exits. */
  command: string[];
}

/** The automation contract's ready line (`--json`). */
export interface ConnectReadyLine {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  uri: string;
}

export async function connectRun(options: ConnectOptions, context: CommandContext): Promise<void> {
  const source = await openCredentialSource(context, { profile: options.profile, gateway: options.gateway });
  const credential = await source.credential();
  const gateway = await resolveGatewayEndpoint(source.gateway, options.gatewayCa, context);
  // A person at a terminal gets the live view; scripts (--json), pipes, a terminal that cannot move its cursor
  // (TERM=dumb), CI logs (where ink draws only the last frame) and a launched client get plain lines or none.
  const wantsLiveView = context.stdoutIsTTY && context.env['TERM'] !== 'dumb' && !runsInCi(context.env) &&
    !options.json && options.command.length === 0;
  const live = wantsLiveView ? await loadLiveView(credential.expiresAt) : undefined;
  // Asked for every new connection (and by the live view's poller): a long-running tunnel renews the credential
  // before it expires, so new connections always log in with a valid one while open connections keep their session.
  const currentToken = async (): Promise<string> => {
    const current = await source.credential();
    live?.activity.credentialRenewed(current.expiresAt);
    return current.token;
  };
  let poller: TunnelActivityPoller | undefined;
  const tunnel = new LocalTunnel({
    target: options.target,
    user: credential.subject,
    gateway,
    credential: currentToken,
    port: options.port,
    observeStatements: live !== undefined,
    onEvent: live
      ? (event) => {
        live.activity.record(event);
        poller?.record(event);
      }
      : options.command.length > 0 || options.json ? undefined : printTunnelEvent(context),
  });
  // The live view's statement counts come from the gateway's audit trail, which knows what the wire does not (masking).
  poller = live && new live.TunnelActivityPoller({
    api: new GatewayApi(source.gateway, fetchOf(context)),
    tunnelId: tunnel.tunnelId,
    credential: currentToken,
    activity: live.activity,
  });
  let address: { host: string; port: number };
  try {
    address = await tunnel.listen();
  } catch (error) {
    throw new DbgateError('USAGE', `cannot listen on 127.0.0.1:${options.port ?? 0}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
      hint: 'pick another --port, or omit it for a random one',
    });
  }
  const ready: ConnectReadyLine = {
    host: address.host,
    port: address.port,
    user: credential.subject,
    password: tunnel.password,
    database: options.target,
    uri: `postgres://${encodeURIComponent(credential.subject)}:${tunnel.password}@${address.host}:${address.port}/${encodeURIComponent(options.target)}?sslmode=disable`,
  };
  let view: RunningLiveView | undefined;
  try {
    if (options.command.length > 0) {
      throw new ExitWith(await runClient(options.command, ready, context));
    }
    if (options.json) writeLine(context.stdout, JSON.stringify(ready));
    else if (live) {
      view = live.start({
        target: options.target,
        gateway: source.gateway.origin,
        uri: ready.uri,
        identity: { subject: credential.subject, groups: credential.groups },
        renewable: source.renewable(),
        activity: live.activity,
        now: context.now,
        color: live.colorWanted(context),
      }, context.stdout as NodeJS.WriteStream); // stdoutIsTTY: the process's own tty.WriteStream, which ink draws on
      poller?.start();
    } else {
      writeLine(context.stdout, `dbgate: tunnel to ${options.target} is ready on ${address.host}:${address.port}` +
        ` (as ${credential.subject}; credential valid for ${formatDuration(credential.expiresAt - context.now())}` +
        `${source.renewable() ? ', renewed automatically' : ''})`);
      writeLine(context.stdout, `  psql "${ready.uri}"`);
      writeLine(context.stdout, 'Press Ctrl-C to close the tunnel.');
    }
    await untilAborted(context.signal);
  } finally {
    poller?.stop();
    // Tunnel first: its last close events still reach the view, so the final frame is the tunnel's real end state.
    await tunnel.close();
    await view?.close();
  }
}

/** Plain mode: connection events as lines on stderr (stdout keeps only the ready lines). */
function printTunnelEvent(context: CommandContext): (event: TunnelEvent) => void {
  return (event) => {
    if (event.type === 'refused') writeLine(context.stderr, `dbgate: connection ${event.id} refused: ${event.reason}`);
    else if (event.type === 'open' || event.type === 'close') {
      writeLine(context.stderr, `dbgate: connection ${event.id} ${event.type === 'open' ? 'opened' : 'closed'} (${event.open} open)`);
    }
  };
}

/** ink and React are loaded here, on demand, and only for the live view: `dbgate --help` must not pay for them. */
async function loadLiveView(credentialExpiresAt: number): Promise<{
  activity: TunnelActivity;
  start: typeof startConnectLiveView;
  colorWanted: (context: CommandContext) => boolean;
  TunnelActivityPoller: typeof TunnelActivityPoller;
}> {
  const [view, { TunnelActivity }, { TunnelActivityPoller }] = await Promise.all([
    import('../ui/connect-live-view.js'),
    import('../ui/tunnel-activity.js'),
    import('../ui/tunnel-activity-poller.js'),
  ]);
  return { activity: new TunnelActivity(credentialExpiresAt), start: view.startConnectLiveView, colorWanted: view.colorWanted, TunnelActivityPoller };
}

/** Launches the client with PG* variables set; resolves with its exit code (128+n when killed by signal n). */
function runClient(command: string[], ready: ConnectReadyLine, context: CommandContext): Promise<number> {
  const [file, ...args] = command as [string, ...string[]];
  const child = spawn(file, args, {
    stdio: 'inherit',
    env: {
      ...context.env,
      PGHOST: ready.host,
      PGPORT: String(ready.port),
      PGUSER: ready.user,
      PGPASSWORD: ready.password,
      PGDATABASE: ready.database,
      // The tunnel is loopback-only and plaintext by design; TLS happens between the tunnel and the gateway.
      PGSSLMODE: 'disable',
    },
  });
  // Ctrl-C reaches the child directly from the terminal (psql cancels the query); we only forward SIGTERM.
  const unsubscribe = context.onSignal((signal) => {
    if (signal === 'SIGTERM') child.kill('SIGTERM');
  });
  return new Promise((resolve, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) => {
      unsubscribe();
      reject(new DbgateError('USAGE', `cannot run ${file}: ${error.code === 'ENOENT' ? 'command not found' : error.message}`));
    });
    child.once('exit', (code, signal) => {
      unsubscribe();
      resolve(code ?? 128 + (signal ? signalNumber(signal) : 1));
    });
  });
}

/** The CI convention ink follows too (is-in-ci): CI or CONTINUOUS_INTEGRATION set, and not "0" or "false". */
function runsInCi(env: NodeJS.ProcessEnv): boolean {
  return ['CI', 'CONTINUOUS_INTEGRATION'].some((name) => name in env && env[name] !== '0' && env[name] !== 'false');
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return numbers[signal] ?? 1;
}

export function registerConnect(program: Command, context: CommandContext): void {
  program
    .command('connect')
    .description('open a local PostgreSQL port that forwards to a target through the gateway')
    .argument('<target>', 'target name, e.g. prod-orders')
    .argument('[command...]', 'after --: a client to launch against the tunnel (e.g. -- psql)')
    .option('-p, --port <n>', 'local port on 127.0.0.1 (default: random)', parsePort)
    .option('--json', 'print one JSON line with host, port, user, password, database, uri when listening')
    .option('--gateway <url>', 'gateway API URL (default: DBGATE_GATEWAY or the stored login)')
    .option('--profile <name>', 'the login to use (default: DBGATE_PROFILE or "default")')
    .option('--gateway-ca <file>', "verify the gateway's certificate with this CA instead of the pinned fingerprint")
    .addHelpText('after', [
      '',
      'Examples:',
      '  dbgate connect prod-orders                 # shows the psql URI and a live view, runs until Ctrl-C',
      '  dbgate connect prod-orders -- psql         # launches psql through the tunnel',
      '  dbgate connect prod-orders --port 15432 --json',
      '',
    ].join('\n'))
    .action((target: string, command: string[], flags: Omit<ConnectOptions, 'target' | 'command'>) =>
      connectRun({ ...flags, target, command }, context));
}
