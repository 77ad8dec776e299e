/**
 * `npm run bench`: pgbench's select-only workload straight against PostgreSQL, through PgBouncer, and through the
 * dbgate gateway (with and without TLS), on one throwaway cluster, with the systems alternated within each round.
 * Prints the comparison and the verdicts against the targets, and regenerates its section of BENCHMARKS.md.
 *
 * Flags: --quick (1 round × 3 s, does not touch BENCHMARKS.md), --rounds N, --seconds S, --warmup S,
 * --profile (runs the gateway under `node --cpu-prof` and prints its top self-time functions; the profiler slows
 * the gateway, so BENCHMARKS.md is left alone), --systems a,b (a subset of direct,pgbouncer,gateway,gateway-tls),
 * --clients 1|8 (one client count), --no-write, --write. Only a full, unfiltered, unprofiled run writes BENCHMARKS.md
 * unless --write says otherwise.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pgBinDir, startPgBouncer, startPgCluster } from '../test/support/pg-cluster.js';
import { readSelfTime, renderSelfTime } from './cpu-profile.js';
import { firstPgbenchError, killRunningPgbench, parsePgbenchOutput, pgbenchBin, runPgbench, type PgbenchEndpoint, type PgbenchResult } from './pgbench.js';
import {
  SYSTEMS,
  SYSTEM_DESCRIPTIONS,
  TARGET_CLIENTS_UNDER_LOAD,
  judge,
  renderMarkdownTable,
  renderTextTable,
  renderVerdicts,
  summarize,
  upsertSection,
  type Measurement,
  type SystemId,
} from './report.js';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SECTION_TITLE = 'pgbench -S: direct vs pgbouncer vs gateway';
const BENCHMARKS_FILE = join(PROJECT_ROOT, 'BENCHMARKS.md');

/** pgbench scale: 10 → 1,000,000 rows in pgbench_accounts. */
const SCALE = 10;
/** Client counts and their pgbench thread counts (-c / -j). */
const CLIENT_CONFIGS = [
  { clients: 1, threads: 1 },
  { clients: TARGET_CLIENTS_UNDER_LOAD, threads: 2 },
] as const;
const BOUNCER_POOL_SIZE = 10;
const DEMO_DATABASE = 'prod_orders';
const DEMO_TARGET = 'prod-orders';
const SERVICE_ROLE = 'dbgate_service';
const BENCH_USER = 'alice';
const GATEWAY_READY_TIMEOUT_MS = 60_000;
const GATEWAY_STOP_TIMEOUT_MS = 15_000;

interface BenchOptions {
  systems: SystemId[];
  clientConfigs: Array<(typeof CLIENT_CONFIGS)[number]>;
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  quick: boolean;
  profile: boolean;
  write: boolean;
}

class UsageError extends Error {}

function positiveInteger(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive integer, got ${value}`);
  return n;
}

function parseOptions(argv: string[]): BenchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        quick: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        seconds: { type: 'string' },
        warmup: { type: 'string' },
        profile: { type: 'boolean', default: false },
        systems: { type: 'string' },
        clients: { type: 'string' },
        write: { type: 'boolean' },
        'no-write': { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const quick = values.quick === true;
  const profile = values.profile === true;
  const systems = values.systems === undefined ? [...SYSTEMS] : values.systems.split(',').map((name) => name.trim());
  for (const name of systems) {
    if (!(SYSTEMS as readonly string[]).includes(name)) throw new UsageError(`--systems: unknown system ${name} (${SYSTEMS.join(', ')})`);
  }
  const clientConfigs = CLIENT_CONFIGS.filter((c) => values.clients === undefined || String(c.clients) === values.clients);
  if (clientConfigs.length === 0) {
    throw new UsageError(`--clients must be one of ${CLIENT_CONFIGS.map((c) => c.clients).join(', ')}`);
  }
  const filtered = values.systems !== undefined || values.clients !== undefined;
  // A quick, filtered or profiled run is not the record: only a full run writes BENCHMARKS.md unless asked.
  const write = values['no-write'] === true ? false : values.write === true ? true : !quick && !profile && !filtered;
  return {
    systems: SYSTEMS.filter((s) => systems.includes(s)),
    clientConfigs,
    quick,
    profile,
    write,
    rounds: positiveInteger(values.rounds, '--rounds', quick ? 1 : 3),
    seconds: positiveInteger(values.seconds, '--seconds', quick ? 3 : 5),
    warmupSeconds: positiveInteger(values.warmup, '--warmup', quick ? 1 : 2),
  };
}

const progress = (message: string): void => void process.stderr.write(`${message}\n`);

// ---------------------------------------------------------------------------------------------------------------
// Cleanup: everything started registers how to stop it; a failure or a signal stops all of it, newest first.

const cleanups: Array<{ name: string; run: () => Promise<void> }> = [];
let cleaning: Promise<void> | undefined;

function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    killRunningPgbench();
    for (const { name, run } of cleanups.splice(0).reverse()) {
      try {
        await run();
      } catch (error) {
        progress(`cleanup of ${name} failed: ${(error as Error).message}`);
      }
    }
  })();
  return cleaning;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    progress(`\n${signal}: stopping pgbench, the gateway, pgbouncer and the cluster…`);
    void cleanUp().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The gateway as a child process, the way an operator runs it.

interface GatewayProcess {
  pg: { host: string; port: number };
  /** The gateway's own process (node), whose CPU time is charged to it. */
  pid: number | undefined;
  stop(): Promise<void>;
  /** The last part of what the gateway wrote to stderr, for error messages. */
  logTail(): string;
}

async function startGatewayProcess(upstreamUrl: string, stateDir: string, profileDir: string | undefined): Promise<GatewayProcess> {
  const nodeFlags = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const child: ChildProcess = spawn(
    process.execPath,
    [...nodeFlags, join(PROJECT_ROOT, 'bin', 'dbgate-gateway'), 'dev', '--upstream', upstreamUrl, '--state', stateDir,
      '--pg-port', '0', '--api-port', '0', '--json'],
    { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Keep draining both pipes for the whole run: a full pipe would stall the gateway and the measurement with it.
  let log = '';
  const keep = (chunk: string): void => {
    log = (log + chunk).slice(-16_384);
  };
  child.stderr?.setEncoding('utf8').on('data', keep);
  let exit: string | undefined;
  const exited = new Promise<void>((resolveExit) => {
    child.once('exit', (code, signal) => {
      exit = signal ? `killed by ${signal}` : `exited with code ${String(code)}`;
      resolveExit();
    });
  });
  child.once('error', (error) => {
    exit = `failed to start: ${error.message}`;
  });

  // If this process dies without cleaning up (SIGKILL, a crash), a detached shell stops the gateway and removes its
  // state dir, as test/support/pg-cluster.ts does for the cluster and PgBouncer.
  const watchdog = spawn(
    'sh',
    ['-c', 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -TERM "$2" 2>/dev/null; sleep 3; kill -KILL "$2" 2>/dev/null; rm -rf "$3"',
      'dbgate-bench-watchdog', String(process.pid), String(child.pid), stateDir],
    { detached: true, stdio: 'ignore' },
  );
  watchdog.on('error', () => undefined); // Losing the watchdog only loses leak protection.
  watchdog.unref();

  const stop = async (): Promise<void> => {
    if (watchdog.pid !== undefined) {
      try {
        process.kill(-watchdog.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    if (exit !== undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), GATEWAY_STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };

  const ready = await new Promise<{ pg: string }>((resolveReady, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`the gateway printed no ready line within ${GATEWAY_READY_TIMEOUT_MS / 1000} s`)), GATEWAY_READY_TIMEOUT_MS);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const newline = stdout.indexOf('\n');
      if (newline === -1) return;
      clearTimeout(timer);
      try {
        resolveReady(JSON.parse(stdout.slice(0, newline)) as { pg: string });
      } catch {
        reject(new Error(`the gateway's ready line is not JSON: ${stdout.slice(0, newline)}`));
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the gateway ${exit ?? 'exited'} before it was ready`));
    });
  }).catch(async (error: unknown) => {
    await stop();
    throw new Error(`${(error as Error).message}\n--- gateway stderr ---\n${log.trim()}`, { cause: error });
  });

  const match = /^(.+):(\d+)$/.exec(ready.pg);
  if (!match?.[1] || !match[2]) {
    await stop();
    throw new Error(`unexpected pg address in the gateway's ready line: ${ready.pg}`);
  }
  return { pg: { host: match[1], port: Number(match[2]) }, pid: child.pid, stop, logTail: () => log.trim() };
}

function mintCredential(stateDir: string, ttl: string): Promise<string> {
  return new Promise((resolveMint, reject) => {
    execFile(
      process.execPath,
      [join(PROJECT_ROOT, 'bin', 'dbgate-gateway'), 'credential', 'mint', '--state', stateDir, '--user', BENCH_USER, '--ttl', ttl],
      { cwd: PROJECT_ROOT, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`credential mint failed: ${error.message}\n${stderr}`, { cause: error }));
        else resolveMint(stdout.trim());
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The machine, for the record.

interface MachineInfo {
  /** The code measured: commit, and whether the working tree differed from it (dist/ is built from the tree). */
  revision: string;
  nproc: string;
  cpuModel: string;
  kernel: string;
  memory: string;
  node: string;
  postgres: string;
  pgbench: string;
  pgbouncer: string;
}

function firstLine(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8' }).split('\n')[0]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function describeMachine(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpuModel;
  } catch {
    // Not Linux: os.cpus() is as good as it gets.
  }
  const pgbouncer = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].find((path) => {
    try {
      return execFileSync(path, ['--version'], { stdio: 'ignore' }) !== undefined;
    } catch {
      return false;
    }
  });
  const commit = firstLine('git', ['-C', PROJECT_ROOT, 'rev-parse', '--short', 'HEAD']);
  let dirty = false;
  try {
    dirty = execFileSync('git', ['-C', PROJECT_ROOT, 'status', '--porcelain', '--', 'src', 'bin'], { encoding: 'utf8' }).trim() !== '';
  } catch {
    // Not a git checkout: the commit already says unknown.
  }
  return {
    revision: `${commit}${dirty ? ' with uncommitted changes in src/ or bin/' : ''}`,
    nproc: firstLine('nproc', []),
    cpuModel,
    kernel: `Linux ${release()}`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    postgres: firstLine(join(pgBinDir(), 'postgres'), ['--version']),
    pgbench: firstLine(pgbenchBin(), ['--version']),
    pgbouncer: pgbouncer ? firstLine(pgbouncer, ['--version']) : 'unknown',
  };
}

/** The distinct error events in the gateway's JSON log, e.g. `audit.write_failed: <reason>`. */
function gatewayErrorSummary(log: string): string | undefined {
  const events = new Set<string>();
  for (const line of log.split('\n')) {
    try {
      const entry = JSON.parse(line) as { level?: string; event?: string; reason?: string };
      if (entry.level === 'error') events.add(`${entry.event ?? 'error'}${entry.reason ? `: ${entry.reason}` : ''}`);
    } catch {
      // Not a log line (a stack trace, say): the tail is printed in full elsewhere.
    }
  }
  return events.size === 0 ? undefined : [...events].join('; ');
}

const CLOCK_TICKS_PER_SECOND = Number(firstLine('getconf', ['CLK_TCK'])) || 100;

/**
 * CPU time (user + system, all threads) a process has used so far, in µs, from /proc/<pid>/stat; undefined when it
 * cannot be read (not Linux, process gone). Resolution is one clock tick (10 ms), negligible over a 5 s run.
 *
 * @see https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html (fields 14 utime and 15 stime)
 */
function processCpuUs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: count fields from after its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[14 - 3]);
    const stime = Number(fields[15 - 3]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
    return ((utime + stime) * 1e6) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** The pid of the process listening on a local TCP port (PgBouncer runs under runuser, so its child pid is not it). */
function listenerPid(port: number): number | undefined {
  try {
    const out = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' });
    const pid = /pid=(\d+)/.exec(out)?.[1];
    return pid === undefined ? undefined : Number(pid);
  } catch {
    return undefined;
  }
}

const formatLoad = (): string => loadavg().map((n) => n.toFixed(2)).join(' / ');

// ---------------------------------------------------------------------------------------------------------------

async function countAuditedStatements(adminUrl: string): Promise<number | undefined> {
  const url = new URL(adminUrl);
  url.pathname = '/dbgate_state';
  const client = new pg.Client({ connectionString: url.toString() });
  try {
    await client.connect();
    const result = await client.query<{ n: string }>("select count(*) as n from dbgate_audit_events where event = 'statement'");
    return Number(result.rows[0]?.n);
  } catch (error) {
    progress(`could not count audit events: ${(error as Error).message}`);
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function newestProfile(dir: string): Promise<string | undefined> {
  const files = (await readdir(dir)).filter((name) => name.endsWith('.cpuprofile'));
  let best: { path: string; size: number } | undefined;
  for (const name of files) {
    const path = join(dir, name);
    const { size } = await stat(path);
    if (!best || size > best.size) best = { path, size };
  }
  return best?.path;
}

async function run(options: BenchOptions): Promise<number> {
  const machine = describeMachine();
  const loadBefore = formatLoad();
  const startedAt = new Date();
  progress(`machine: ${machine.nproc} CPUs (${machine.cpuModel}), ${machine.node}, ${machine.postgres}; load ${loadBefore}`);
  progress(`plan: ${options.rounds} round(s) × ${options.systems.length} systems × ${options.clientConfigs.length} client counts × ${options.seconds} s`);

  const cluster = await startPgCluster({ maxConnections: 100 });
  cleanups.push({ name: 'PostgreSQL cluster', run: () => cluster.stop() });
  progress(`cluster: ${cluster.host}:${cluster.port}`);

  const stateDir = await mkdtemp(join(tmpdir(), 'dbgate-bench-state-'));
  cleanups.push({ name: 'gateway state dir', run: () => rm(stateDir, { recursive: true, force: true }) });
  const profileDir = options.profile ? await mkdtemp(join(tmpdir(), 'dbgate-bench-profile-')) : undefined;

  let gateway = await startGatewayProcess(cluster.adminUrl, stateDir, profileDir);
  cleanups.push({ name: 'gateway', run: () => gateway.stop() });
  progress(`gateway: ${gateway.pg.host}:${gateway.pg.port}${profileDir ? ` (profiling into ${profileDir})` : ''}`);

  const servicePassword = (await readFile(join(stateDir, 'secrets', 'service-password'), 'utf8')).trim();
  const bouncer = await startPgBouncer({
    upstream: cluster,
    database: DEMO_DATABASE,
    user: SERVICE_ROLE,
    password: servicePassword,
    poolMode: 'session',
    poolSize: BOUNCER_POOL_SIZE,
  });
  cleanups.push({ name: 'pgbouncer', run: () => bouncer.stop() });
  progress(`pgbouncer: ${bouncer.host}:${bouncer.port} (session mode, pool size ${BOUNCER_POOL_SIZE})`);
  const bouncerPid = listenerPid(bouncer.port);

  // Long enough for the whole run: pgbench logs in once per client at the start of every run.
  const plannedSeconds = options.rounds * options.systems.length * options.clientConfigs.length * options.seconds;
  const credential = await mintCredential(stateDir, `${Math.min(12 * 60, Math.max(60, Math.ceil((plannedSeconds * 3) / 60)))}m`);

  const service = { user: SERVICE_ROLE, password: servicePassword, database: DEMO_DATABASE, sslmode: 'disable' } as const;
  // A function, not a table: the gateway's port changes when it is restarted after a failed run.
  const endpointOf = (system: SystemId): PgbenchEndpoint => {
    const viaGateway = { host: gateway.pg.host, port: gateway.pg.port, user: BENCH_USER, password: credential, database: DEMO_TARGET };
    switch (system) {
      case 'direct':
        return { host: cluster.host, port: cluster.port, ...service };
      case 'pgbouncer':
        return { host: bouncer.host, port: bouncer.port, ...service };
      case 'gateway':
        return { ...viaGateway, sslmode: 'disable' };
      case 'gateway-tls':
        return { ...viaGateway, sslmode: 'require' };
    }
  };

  progress(`pgbench -i -s ${SCALE} on ${DEMO_DATABASE} as ${SERVICE_ROLE} (direct)…`);
  const init = await runPgbench(endpointOf('direct'), ['-i', '-s', String(SCALE), '-q']);
  if (init.exitCode !== 0) throw new Error(`pgbench -i failed:\n${init.output.trim()}`);

  let gatewayTransactions = 0;
  let gatewayRestarts = 0;
  const failures: string[] = [];
  /**
   * One pgbench run. A run with aborted clients or failed transactions does not count; if it went through the
   * gateway, the gateway is restarted so that one failure does not decide every later run (the reason is kept).
   */
  const measure = async (label: string, system: SystemId, clients: number, threads: number, seconds: number):
    Promise<{ result: PgbenchResult; proxyCpuUs: number | undefined } | { failure: string }> => {
    const args = ['-S', '-n', '-M', 'simple', '-T', String(seconds), '-c', String(clients), '-j', String(threads)];
    const isGateway = system === 'gateway' || system === 'gateway-tls';
    const proxyPid = system === 'direct' ? undefined : isGateway ? gateway.pid : bouncerPid;
    const cpuBefore = proxyPid === undefined ? undefined : processCpuUs(proxyPid);
    const exit = await runPgbench(endpointOf(system), args);
    const cpuAfter = proxyPid === undefined ? undefined : processCpuUs(proxyPid);
    let result: PgbenchResult | undefined;
    let failure: string | undefined;
    try {
      result = parsePgbenchOutput(exit.output);
    } catch (error) {
      failure = (error as Error).message.split('\n')[0];
    }
    if (isGateway && result) gatewayTransactions += result.transactions;
    if (exit.exitCode !== 0) failure = firstPgbenchError(exit.output) ?? `pgbench exited with code ${exit.exitCode}`;
    else if (result && result.failed !== 0) failure = `${result.failed} failed transactions`;
    if (result && failure === undefined) {
      const cpuUs = cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined;
      return { result, proxyCpuUs: cpuUs === undefined || result.transactions === 0 ? undefined : cpuUs / result.transactions };
    }

    // The gateway tells clients only the protocol-level refusal; the cause is in its own log.
    const gatewayLog = isGateway ? gatewayErrorSummary(gateway.logTail()) : undefined;
    const reason = `${failure ?? 'no summary from pgbench'}${gatewayLog ? ` — gateway log: ${gatewayLog}` : ''}`;
    failures.push(`${label}, ${system} -c ${clients}: ${reason}`);
    progress(`  FAILED ${label} ${system} -c ${clients}: ${reason}\n${exit.output.trim().split('\n').slice(-12).join('\n')}`);
    if (isGateway) {
      await gateway.stop();
      gateway = await startGatewayProcess(cluster.adminUrl, stateDir, profileDir);
      gatewayRestarts++;
      progress(`  gateway restarted: ${gateway.pg.host}:${gateway.pg.port}`);
    }
    return { failure: reason };
  };

  // Warm-up, unrecorded: the gateway's JIT, PgBouncer's server pool and PostgreSQL's caches.
  for (const system of options.systems) {
    const { clients, threads } = options.clientConfigs[options.clientConfigs.length - 1]!;
    const outcome = await measure('warm-up', system, clients, threads, options.warmupSeconds);
    if ('result' in outcome) progress(`warm-up  ${system.padEnd(11)} -c ${clients}  ${Math.round(outcome.result.tps)} TPS`);
  }

  const measurements: Measurement[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const { clients, threads } of options.clientConfigs) {
      for (const system of options.systems) {
        const outcome = await measure(`round ${round}`, system, clients, threads, options.seconds);
        measurements.push({ round, system, clients, ...outcome });
        if ('result' in outcome) {
          const { tps, latencyMs, failed } = outcome.result;
          progress(
            `round ${round}/${options.rounds}  -c ${clients}  ${system.padEnd(11)} ${Math.round(tps).toString().padStart(6)} TPS  ` +
              `${latencyMs.toFixed(3)} ms  ${failed} failed`,
          );
        }
      }
    }
  }
  const loadAfter = formatLoad();

  await gateway.stop();
  const audited = await countAuditedStatements(cluster.adminUrl);

  const clientCounts = options.clientConfigs.map((c) => c.clients);
  const rows = summarize(measurements, clientCounts);
  const verdicts = judge(rows, measurements, 'gateway');
  const tlsInfo = judge(rows, measurements, 'gateway-tls');
  const auditLine =
    audited === undefined
      ? 'audit: could not count the audit events'
      : `audit: ${audited.toLocaleString('en-US')} statement events stored for ${gatewayTransactions.toLocaleString('en-US')} ` +
        'transactions pgbench reported through the gateway (warm-up included; pgbench adds a few setup statements per run)';
  const failureLines = failures.length === 0
    ? ['failed runs: none']
    : [`failed runs (${failures.length}; gateway restarted ${gatewayRestarts} time(s) after them):`, ...failures.map((f) => `  - ${f}`)];

  const out: string[] = [
    '',
    `pgbench -S -n -M simple, scale ${SCALE}, ${options.rounds} round(s) × ${options.seconds} s per run; medians over rounds`,
    '',
    renderTextTable(rows),
    '',
    'targets (gateway = sslmode=disable):',
    renderVerdicts(verdicts, false),
    '',
    'gateway-tls, same measures (information; no target):',
    renderVerdicts(tlsInfo, false),
    '',
    ...failureLines,
    auditLine,
    `load average (1/5/15 min): ${loadBefore} before, ${loadAfter} after`,
  ];

  if (profileDir) {
    const profilePath = await newestProfile(profileDir);
    if (profilePath) {
      out.push('', `gateway CPU profile: ${profilePath}`, renderSelfTime(await readSelfTime(profilePath, PROJECT_ROOT)));
    } else {
      out.push('', `no .cpuprofile was written to ${profileDir}`);
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);

  if (options.write) {
    const body = renderSection({ options, machine, startedAt, loadBefore, loadAfter, rows, verdicts, tlsInfo, auditLine, failures, gatewayRestarts });
    const existing = await readFile(BENCHMARKS_FILE, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    await writeFile(BENCHMARKS_FILE, upsertSection(existing, SECTION_TITLE, body));
    progress(`\nwrote section "${SECTION_TITLE}" of ${BENCHMARKS_FILE}`);
  } else {
    progress('\nBENCHMARKS.md left alone (quick, filtered, profiled or --no-write run; pass --write to record it)');
  }
  return 0;
}

interface SectionInput {
  options: BenchOptions;
  machine: MachineInfo;
  startedAt: Date;
  loadBefore: string;
  loadAfter: string;
  rows: ReturnType<typeof summarize>;
  verdicts: ReturnType<typeof judge>;
  tlsInfo: ReturnType<typeof judge>;
  auditLine: string;
  failures: string[];
  gatewayRestarts: number;
}

function renderSection(input: SectionInput): string {
  const { options, machine } = input;
  const flags: string[] = [];
  if (options.rounds !== 3 || options.seconds !== 5 || options.warmupSeconds !== 2) {
    flags.push(`--rounds ${options.rounds}`, `--seconds ${options.seconds}`, `--warmup ${options.warmupSeconds}`);
  }
  if (options.systems.length !== SYSTEMS.length) flags.push(`--systems ${options.systems.join(',')}`);
  if (options.clientConfigs.length !== CLIENT_CONFIGS.length) flags.push(`--clients ${options.clientConfigs[0]?.clients ?? ''}`);
  if (options.profile) flags.push('--profile');
  if (flags.length > 0) flags.push('--write');
  const command = flags.length === 0 ? 'npm run bench' : `npm run bench -- ${flags.join(' ')}`;
  return [
    `Measured ${input.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC with \`${command}\` (\`bench/run.ts\`).`,
    '',
    '### What is measured',
    '',
    `pgbench's built-in select-only script (\`pgbench -S -n -M simple -T ${options.seconds}\`): every transaction is one`,
    '`SELECT abalance FROM pgbench_accounts WHERE aid = :aid` in the simple query protocol, i.e. one round trip, on a',
    `scale-${SCALE} database (1,000,000 accounts) created with \`pgbench -i -s ${SCALE}\` in \`${DEMO_DATABASE}\` as \`${SERVICE_ROLE}\`.`,
    'Everything runs on one machine over TCP loopback against one throwaway PostgreSQL cluster (fsync off):',
    '',
    ...SYSTEMS.map((s) => `- **${s}**: ${SYSTEM_DESCRIPTIONS[s]}`),
    '',
    `PgBouncer runs in session mode with a pool of ${BOUNCER_POOL_SIZE} server connections, logging in as \`${SERVICE_ROLE}\`,`,
    'the role the gateway uses upstream. Each run uses `-c 1 -j 1` and `-c 8 -j 2`. The systems alternate within each',
    `round (direct, pgbouncer, gateway, gateway-tls at -c 1, then the same at -c 8), ${options.rounds} round(s) of`,
    `${options.seconds} s per run after a ${options.warmupSeconds} s unrecorded warm-up of each system. Every run is checked for 0 failed transactions.`,
    '',
    '### Machine',
    '',
    `- ${machine.nproc} CPUs: ${machine.cpuModel}; ${machine.memory} RAM; ${machine.kernel}`,
    `- Node ${machine.node}; ${machine.postgres}; ${machine.pgbench}; ${machine.pgbouncer}`,
    `- gateway code: ${machine.revision}`,
    `- load average (1/5/15 min): ${input.loadBefore} before the run, ${input.loadAfter} after`,
    '',
    'The machine is shared with other work and noisy: absolute TPS moves between runs (even between rounds of the same',
    'system) by more than some of the differences measured here, so the table quotes medians over rounds, and the',
    'ratios and added latencies are computed from those medians; round-by-round comparisons are given as counts.',
    'pgbench, PostgreSQL and the proxy share the same CPUs, so at -c 8 the numbers measure how much CPU each proxy',
    'spends per query as much as latency. Treat single-digit-µs and few-percent differences as noise.',
    '',
    '### Results',
    '',
    renderMarkdownTable(input.rows),
    '',
    '"vs direct" is median TPS / median TPS of direct. "added µs / round trip" is clients·10⁶/median TPS(system) −',
    'clients·10⁶/median TPS(direct): at -c 1 the latency the system adds to each round trip; at -c 8 the difference in',
    'average latency, queueing for the CPUs included. "proxy CPU µs / query" is the CPU time (user + system, all',
    'threads, from /proc/<pid>/stat) the PgBouncer or gateway process used during the run divided by the transactions',
    'pgbench completed: the least noisy figure here, since it does not depend on who else had the CPUs. It does not',
    "include the PostgreSQL time of the gateway's own audit inserts.",
    '',
    '### Verdicts',
    '',
    'Targets for the gateway without TLS (PgBouncer has no TLS here either):',
    '',
    renderVerdicts(input.verdicts, true),
    '',
    'The same measures for the gateway with TLS, for information (no target):',
    '',
    renderVerdicts(input.tlsInfo, true),
    '',
    ...(input.failures.length === 0
      ? ['Every run completed with 0 failed transactions.']
      : [
          '### Failed runs',
          '',
          `These runs do not count in the medians (shown as FAILED above); after each failed gateway run the gateway`,
          `was restarted (${input.gatewayRestarts} time(s)) so later runs measure a fresh process.`,
          '',
          ...input.failures.map((f) => `- ${f}`),
        ]),
    '',
    `Sanity: ${input.auditLine}.`,
  ].join('\n');
}

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    progress(
      `bench: ${error.message}\nusage: npm run bench -- [--quick] [--rounds N] [--seconds S] [--warmup S] [--profile] ` +
        '[--systems direct,pgbouncer,gateway,gateway-tls] [--clients 1|8] [--write|--no-write]',
    );
    return 2;
  }
  try {
    return await run(options);
  } catch (error) {
    if (interrupted) return 130;
    progress(`\nbench failed: ${(error as Error).stack ?? String(error)}`);
    return 1;
  } finally {
    await cleanUp();
  }
}

const code = await main();
// The signal handler exits on its own once cleanup is done.
if (!interrupted) process.exit(code);
