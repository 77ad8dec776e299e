/**
 * `npm run bench`: the gateway's performance record, on one throwaway PostgreSQL cluster and one gateway process
 * (`dbgate-gateway dev`, which enforces the demo policy), in three parts that each write their section of
 * BENCHMARKS.md:
 *
 * - pgbench: pgbench's select-only workload straight against PostgreSQL, through PgBouncer, through a bare Node.js
 *   relay (the runtime's floor), and through the gateway (with and without TLS) as bob (groups dba: admin on target
 *   `scratch`, no rules), systems alternated per round;
 * - policy: the same workload through the gateway with the policy deciding `mask` (alice, engineering, on
 *   `prod-orders`) against the lightest policy path (bob on `scratch`: `allow`), alternated per round;
 * - streaming: `SELECT * FROM customers` (1,000,000 rows) read with psql as alice (3 masked columns) and as carol
 *   (security: read, nothing masked), rows per second and the gateway's peak RSS, and a check that alice's rows
 *   really are masked.
 *
 * Flags: --quick (1 round, 3 s runs, 100,000 streamed rows; does not touch BENCHMARKS.md), --parts a,b (a subset of
 * pgbench,policy,streaming), --rounds N, --seconds S, --warmup S (pgbench and streaming parts), --policy-rounds N,
 * --policy-seconds S (policy part: 6 × 3 s by default), --stream-rows N, --profile (runs the gateway
 * under `node --cpu-prof` and prints its top self-time functions over the whole run — combine with --parts to
 * profile one part; the profiler slows the gateway, so BENCHMARKS.md is left alone), --systems a,b (a subset of
 * direct,pgbouncer,node-relay,gateway,gateway-tls), --clients 1|8 (one client count, pgbench and policy parts), --no-write,
 * --write. Only a full, unfiltered, unprofiled run writes BENCHMARKS.md unless --write says otherwise.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startPgBouncer, startPgCluster, type PgCluster } from '../test/support/pg-cluster.js';
import { readSelfTime, renderSelfTime } from './cpu-profile.js';
import {
  PROJECT_ROOT,
  gatewayErrorSummary,
  gatewayLaunchSettings,
  listenerPid,
  mintCredential,
  processCpuUs,
  processRssKiB,
  startGatewayProcess,
  type BenchIdentity,
  type GatewayProcess,
} from './gateway-process.js';
import { describeMachine, formatLoad, machineLines, type MachineInfo } from './machine.js';
import { firstPgbenchError, killRunningPgbench, parsePgbenchOutput, runPgbench, type PgbenchEndpoint, type PgbenchResult } from './pgbench.js';
import {
  POLICY_MODES,
  TARGET_POLICY_RATIO,
  judgePolicy,
  renderPolicyTable,
  summarizePolicy,
  type PolicyMeasurement,
  type PolicyMode,
  type PolicyRow,
} from './policy-report.js';
import {
  SYSTEMS,
  SYSTEM_DESCRIPTIONS,
  TARGET_CLIENTS_UNDER_LOAD,
  floorLines,
  judge,
  renderMarkdownTable,
  renderTextTable,
  renderVerdicts,
  summarize,
  upsertSection,
  type Measurement,
  type SystemId,
  type Verdict,
} from './report.js';
import {
  TARGET_MASKED_RATIO,
  TARGET_MAX_RSS_BYTES,
  capturePsql,
  checkSample,
  judgeStreaming,
  renderStreamTable,
  summarizeStreams,
  timedStream,
  type PsqlEndpoint,
  type SampleCheck,
  type StreamId,
  type StreamMeasurement,
  type StreamRow,
} from './streaming.js';

const BENCHMARKS_FILE = join(PROJECT_ROOT, 'BENCHMARKS.md');
const PARTS = ['pgbench', 'policy', 'streaming'] as const;
type PartId = (typeof PARTS)[number];
const SECTION_TITLES: Record<PartId, string> = {
  pgbench: 'pgbench -S: direct vs pgbouncer vs gateway',
  policy: 'pgbench -S through the gateway: policy on vs off',
  streaming: 'masked streaming: SELECT * FROM customers through the gateway',
};

/** pgbench scale: 10 → 1,000,000 rows in pgbench_accounts. */
const SCALE = 10;
/** Client counts and their pgbench thread counts (-c / -j). */
const CLIENT_CONFIGS = [
  { clients: 1, threads: 1 },
  { clients: TARGET_CLIENTS_UNDER_LOAD, threads: 2 },
] as const;
const BOUNCER_POOL_SIZE = 10;
const SERVICE_ROLE = 'dbgate_service';
/** The dev stack's playground target: dba has admin there and no rule applies. */
const SCRATCH_TARGET = 'scratch';
const SCRATCH_DATABASE = 'dbgate_scratch';
/** The demo target: read for engineering/agents/security, masking for engineering and agents. */
const DEMO_TARGET = 'prod-orders';
const DEMO_DATABASE = 'prod_orders';
/** Who connects through the gateway; the demo policy grants by group. */
const BOB: BenchIdentity = { user: 'bob', groups: ['dba'] };
const ALICE: BenchIdentity = { user: 'alice', groups: ['engineering'] };
const CAROL: BenchIdentity = { user: 'carol', groups: ['security'] };
const STREAM_SQL = 'select * from customers';
/** Every 100th customer: the demo rows and the generated ones, both through the gateway, to check masking. */
const SAMPLE_SQL = 'select * from customers where id % 100 = 0 order by id';
const STREAM_WARMUP_SQL = 'select * from customers limit 100000';
const POLICY_LABELS: Record<PolicyMode, string> = {
  'policy-off': 'off: bob (dba) → scratch, allow',
  'policy-on': 'on: alice (engineering) → prod-orders, mask',
};
const STREAM_LABELS: Record<StreamId, string> = {
  direct: `direct (psql → PostgreSQL as ${SERVICE_ROLE})`,
  unmasked: 'unmasked: carol (security) via gateway',
  masked: 'masked: alice (engineering) via gateway',
};

interface BenchOptions {
  parts: PartId[];
  systems: SystemId[];
  clientConfigs: Array<(typeof CLIENT_CONFIGS)[number]>;
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  /** The policy part alternates more, shorter runs: its two modes are close and the machine's noise comes in bursts. */
  policyRounds: number;
  policySeconds: number;
  streamRows: number;
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
        parts: { type: 'string' },
        rounds: { type: 'string' },
        seconds: { type: 'string' },
        warmup: { type: 'string' },
        'stream-rows': { type: 'string' },
        'policy-rounds': { type: 'string' },
        'policy-seconds': { type: 'string' },
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
  const list = (value: string | undefined, all: readonly string[], flag: string): string[] => {
    const names = value === undefined ? [...all] : value.split(',').map((name) => name.trim());
    for (const name of names) if (!all.includes(name)) throw new UsageError(`${flag}: unknown name ${name} (${all.join(', ')})`);
    return names;
  };
  const parts = list(values.parts, PARTS, '--parts');
  const systems = list(values.systems, SYSTEMS, '--systems');
  const clientConfigs = CLIENT_CONFIGS.filter((c) => values.clients === undefined || String(c.clients) === values.clients);
  if (clientConfigs.length === 0) {
    throw new UsageError(`--clients must be one of ${CLIENT_CONFIGS.map((c) => c.clients).join(', ')}`);
  }
  const streamRows = positiveInteger(values['stream-rows'], '--stream-rows', quick ? 100_000 : 1_000_000);
  const filtered = values.systems !== undefined || values.clients !== undefined || values.parts !== undefined;
  // A quick, filtered or profiled run is not the record: only a full run writes BENCHMARKS.md unless asked.
  const write = values['no-write'] === true ? false : values.write === true ? true : !quick && !profile && !filtered;
  return {
    parts: PARTS.filter((p) => parts.includes(p)),
    systems: SYSTEMS.filter((s) => systems.includes(s)),
    clientConfigs,
    quick,
    profile,
    write,
    rounds: positiveInteger(values.rounds, '--rounds', quick ? 1 : 3),
    seconds: positiveInteger(values.seconds, '--seconds', quick ? 3 : 5),
    warmupSeconds: positiveInteger(values.warmup, '--warmup', quick ? 1 : 2),
    policyRounds: positiveInteger(values['policy-rounds'], '--policy-rounds', quick ? 1 : 6),
    policySeconds: positiveInteger(values['policy-seconds'], '--policy-seconds', 3),
    streamRows,
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

function databaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'dbgate-bench' });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Statement events in the audit trail, by subject, target and policy decision: "alice → prod-orders, mask: 1,234". */
async function auditSummary(adminUrl: string): Promise<Map<string, number> | undefined> {
  try {
    return await withClient(databaseUrl(adminUrl, 'dbgate_state'), async (client) => {
      const { rows } = await client.query<{ subject: string | null; target: string | null; decision: string | null; n: string }>(
        `select subject, target, detail->>'decision' as decision, count(*) as n
           from dbgate_audit_events where event = 'statement' group by 1, 2, 3 order by 4 desc`);
      return new Map(rows.map((r) => [`${r.subject ?? '?'} → ${r.target ?? '?'}, ${r.decision ?? 'no decision'}`, Number(r.n)]));
    });
  } catch (error) {
    progress(`could not count audit events: ${(error as Error).message}`);
    return undefined;
  }
}

/** What the audit trail recorded for the streaming reads: per subject, reads, rows and the masked columns named. */
async function streamAudit(adminUrl: string): Promise<string | undefined> {
  try {
    return await withClient(databaseUrl(adminUrl, 'dbgate_state'), async (client) => {
      const { rows } = await client.query<{ subject: string; decision: string | null; reads: string; rows: string | null; masked: string | null }>(
        `select subject, detail->>'decision' as decision, count(*) as reads, sum(rows) as rows,
                string_agg(distinct coalesce(detail->>'masked_columns', 'none'), ' | ') as masked
           from dbgate_audit_events where event = 'statement' and statement = $1 group by 1, 2 order by 1`,
        [STREAM_SQL]);
      return rows.map((r) => `${r.subject} (${r.decision ?? 'no decision'}): ${r.reads} read(s), ${fmtInt(Number(r.rows ?? 0))} rows, ` +
        `masked columns ${r.masked ?? 'none'}`).join('; ');
    });
  } catch (error) {
    progress(`could not read the streaming audit events: ${(error as Error).message}`);
    return undefined;
  }
}

function renderAudit(audit: Map<string, number> | undefined, prefix: string): string {
  if (!audit) return 'audit: could not count the audit events';
  const parts = [...audit.entries()].filter(([key]) => key.startsWith(prefix)).map(([key, n]) => `${key}: ${n.toLocaleString('en-US')}`);
  return parts.length === 0 ? `audit: no statement events for ${prefix.trim()}` : parts.join('; ');
}

/** The .cpuprofile files in `dir`, oldest first (one per gateway process: a restart starts a new one). */
async function profilesIn(dir: string): Promise<string[]> {
  const files = await Promise.all((await readdir(dir)).filter((name) => name.endsWith('.cpuprofile')).map(async (name) => {
    const path = join(dir, name);
    return { path, mtime: (await stat(path)).mtimeMs };
  }));
  return files.sort((a, b) => a.mtime - b.mtime).map((file) => file.path);
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

// ---------------------------------------------------------------------------------------------------------------

interface Stack {
  cluster: PgCluster;
  stateDir: string;
  profileDir: string | undefined;
  servicePassword: string;
  credentials: Map<string, string>;
  gateway: GatewayProcess;
  gatewayRestarts: number;
  /** VmRSS of the first gateway process once it was ready (bytes). */
  startRssBytes: number | undefined;
  /** Transactions pgbench reported through the gateway, by gateway user. */
  gatewayTransactions: Map<string, number>;
}

/** A pgbench workload: where it connects, and which process (if any) proxies it. */
interface PgbenchWorkload {
  name: string;
  endpoint: () => PgbenchEndpoint;
  proxy: 'gateway' | 'pgbouncer' | 'node-relay' | undefined;
  /** The PgBouncer or relay process, whose CPU time is charged to it. */
  proxyPid?: number | undefined;
}

type Outcome = { result: PgbenchResult; proxyCpuUs: number | undefined } | { failure: string };

/**
 * One pgbench -S run. A run with aborted clients or failed transactions does not count; if it went through the
 * gateway, the gateway is restarted so that one failure does not decide every later run (the reason is kept).
 */
async function measurePgbench(stack: Stack, failures: string[], label: string, workload: PgbenchWorkload,
  clients: number, threads: number, seconds: number): Promise<Outcome> {
  const args = ['-S', '-n', '-M', 'simple', '-T', String(seconds), '-c', String(clients), '-j', String(threads)];
  const isGateway = workload.proxy === 'gateway';
  const endpoint = workload.endpoint();
  const proxyPid = isGateway ? stack.gateway.pid : workload.proxyPid;
  const cpuBefore = proxyPid === undefined ? undefined : processCpuUs(proxyPid);
  const exit = await runPgbench(endpoint, args);
  const cpuAfter = proxyPid === undefined ? undefined : processCpuUs(proxyPid);
  let result: PgbenchResult | undefined;
  let failure: string | undefined;
  try {
    result = parsePgbenchOutput(exit.output);
  } catch (error) {
    failure = (error as Error).message.split('\n')[0];
  }
  if (isGateway && result) {
    stack.gatewayTransactions.set(endpoint.user, (stack.gatewayTransactions.get(endpoint.user) ?? 0) + result.transactions);
  }
  if (exit.exitCode !== 0) failure = firstPgbenchError(exit.output) ?? `pgbench exited with code ${exit.exitCode}`;
  else if (result && result.failed !== 0) failure = `${result.failed} failed transactions`;
  if (result && failure === undefined) {
    const cpuUs = cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined;
    return { result, proxyCpuUs: cpuUs === undefined || result.transactions === 0 ? undefined : cpuUs / result.transactions };
  }

  // The gateway tells clients only the protocol-level refusal; the cause is in its own log.
  const gatewayLog = isGateway ? gatewayErrorSummary(stack.gateway.logTail()) : undefined;
  const reason = `${failure ?? 'no summary from pgbench'}${gatewayLog ? ` — gateway log: ${gatewayLog}` : ''}`;
  failures.push(`${label}, ${workload.name} -c ${clients}: ${reason}`);
  progress(`  FAILED ${label} ${workload.name} -c ${clients}: ${reason}\n${exit.output.trim().split('\n').slice(-12).join('\n')}`);
  if (isGateway) await restartGateway(stack);
  return { failure: reason };
}

/**
 * bench/node-relay.ts in a child process, forwarding to the cluster, started as the gateway's executable starts node
 * (its first line's memory settings and flags), so the two differ only in what they do with the bytes.
 */
async function startNodeRelay(cluster: PgCluster): Promise<{ port: number; pid: number | undefined }> {
  const launch = gatewayLaunchSettings();
  const child = spawn(process.execPath, [...launch.nodeFlags, '--import', 'tsx', join(PROJECT_ROOT, 'bench', 'node-relay.ts'), cluster.host, String(cluster.port)],
    { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...launch.env } });
  cleanups.push({
    name: 'node relay',
    run: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
    },
  });
  // Its first line is its port; if it dies first, the line never comes.
  const line = await Promise.race([
    once(createInterface({ input: child.stdout! }), 'line').then(([first]) => first as string),
    once(child, 'exit').then(([code, signal]) => {
      throw new Error(`the node relay exited before it listened (${String(signal ?? code)})`);
    }),
  ]);
  const port = Number(line);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`the node relay printed no port: ${line}`);
  return { port, pid: child.pid };
}

async function restartGateway(stack: Stack, afterFailure = true): Promise<void> {
  await stack.gateway.stop();
  stack.gateway = await startGatewayProcess(stack.cluster.adminUrl, stack.stateDir, stack.profileDir);
  if (afterFailure) stack.gatewayRestarts++;
  progress(`  gateway restarted: ${stack.gateway.pg.host}:${stack.gateway.pg.port}`);
}

/** pgbench's tables at SCALE in `database`, created directly as the service role (the owner of both databases). */
async function pgbenchInit(stack: Stack, database: string): Promise<void> {
  progress(`pgbench -i -s ${SCALE} on ${database} as ${SERVICE_ROLE} (direct)…`);
  const init = await runPgbench(
    { host: stack.cluster.host, port: stack.cluster.port, user: SERVICE_ROLE, password: stack.servicePassword, database, sslmode: 'disable' },
    ['-i', '-s', String(SCALE), '-q'],
  );
  if (init.exitCode !== 0) throw new Error(`pgbench -i on ${database} failed:\n${init.output.trim()}`);
}

function gatewayRssBytes(stack: Stack): number | undefined {
  const kib = stack.gateway.pid === undefined ? undefined : processRssKiB(stack.gateway.pid);
  return kib === undefined ? undefined : kib * 1024;
}

const fmtMB = (bytes: number | undefined): string => (bytes === undefined ? 'unknown' : `${(bytes / 1e6).toFixed(1)} MB`);

function viaGateway(stack: Stack, identity: BenchIdentity, target: string): Omit<PgbenchEndpoint, 'sslmode'> {
  const password = stack.credentials.get(identity.user);
  if (password === undefined) throw new Error(`no credential minted for ${identity.user}`);
  return { host: stack.gateway.pg.host, port: stack.gateway.pg.port, user: identity.user, password, database: target };
}

// ---------------------------------------------------------------------------------------------------------------
// Part 1: direct vs pgbouncer vs gateway (bob on scratch) vs gateway-tls.

interface PgbenchPartResult {
  rows: ReturnType<typeof summarize>;
  /** The gateway's VmRSS when the part ended (bytes). */
  rssAfterBytes: number | undefined;
  verdicts: Verdict[];
  tlsInfo: Verdict[];
  failures: string[];
  loadBefore: string;
  loadAfter: string;
}

async function runPgbenchPart(stack: Stack, options: BenchOptions): Promise<PgbenchPartResult> {
  const loadBefore = formatLoad();
  await pgbenchInit(stack, SCRATCH_DATABASE);
  let bouncerPid: number | undefined;
  let bouncer: { host: string; port: number } | undefined;
  if (options.systems.includes('pgbouncer')) {
    const instance = await startPgBouncer({
      upstream: stack.cluster,
      database: SCRATCH_DATABASE,
      user: SERVICE_ROLE,
      password: stack.servicePassword,
      poolMode: 'session',
      poolSize: BOUNCER_POOL_SIZE,
    });
    cleanups.push({ name: 'pgbouncer', run: () => instance.stop() });
    bouncer = instance;
    bouncerPid = listenerPid(instance.port);
    progress(`pgbouncer: ${instance.host}:${instance.port} (session mode, pool size ${BOUNCER_POOL_SIZE})`);
  }
  let relay: { port: number; pid: number | undefined } | undefined;
  if (options.systems.includes('node-relay')) {
    relay = await startNodeRelay(stack.cluster);
    progress(`node relay: 127.0.0.1:${relay.port}`);
  }
  const service = { user: SERVICE_ROLE, password: stack.servicePassword, database: SCRATCH_DATABASE, sslmode: 'disable' } as const;
  const workloads: Record<SystemId, PgbenchWorkload> = {
    direct: { name: 'direct', proxy: undefined, endpoint: () => ({ host: stack.cluster.host, port: stack.cluster.port, ...service }) },
    pgbouncer: {
      name: 'pgbouncer',
      proxy: 'pgbouncer',
      proxyPid: bouncerPid,
      endpoint: () => {
        if (!bouncer) throw new Error('pgbouncer is not running');
        return { host: bouncer.host, port: bouncer.port, ...service };
      },
    },
    'node-relay': {
      name: 'node-relay',
      proxy: 'node-relay',
      proxyPid: relay?.pid,
      endpoint: () => {
        if (!relay) throw new Error('the node relay is not running');
        return { host: '127.0.0.1', port: relay.port, ...service };
      },
    },
    // Functions, not values: the gateway's port changes when it is restarted after a failed run.
    gateway: { name: 'gateway', proxy: 'gateway', endpoint: () => ({ ...viaGateway(stack, BOB, SCRATCH_TARGET), sslmode: 'disable' }) },
    'gateway-tls': { name: 'gateway-tls', proxy: 'gateway', endpoint: () => ({ ...viaGateway(stack, BOB, SCRATCH_TARGET), sslmode: 'require' }) },
  };

  const failures: string[] = [];
  // Warm-up, unrecorded: the gateway's JIT, PgBouncer's server pool and PostgreSQL's caches.
  for (const system of options.systems) {
    const { clients, threads } = options.clientConfigs[options.clientConfigs.length - 1]!;
    const outcome = await measurePgbench(stack, failures, 'warm-up', workloads[system], clients, threads, options.warmupSeconds);
    if ('result' in outcome) progress(`warm-up  ${system.padEnd(11)} -c ${clients}  ${Math.round(outcome.result.tps)} TPS`);
  }

  const measurements: Measurement[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const { clients, threads } of options.clientConfigs) {
      for (const system of options.systems) {
        const outcome = await measurePgbench(stack, failures, `round ${round}`, workloads[system], clients, threads, options.seconds);
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
  const rows = summarize(measurements, options.clientConfigs.map((c) => c.clients));
  return {
    rows,
    verdicts: judge(rows, measurements, 'gateway'),
    tlsInfo: judge(rows, measurements, 'gateway-tls'),
    failures,
    loadBefore,
    loadAfter: formatLoad(),
    rssAfterBytes: gatewayRssBytes(stack),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Part 2: policy on (alice on prod-orders: mask) vs off (bob on scratch: allow).

interface PolicyPartResult {
  rows: PolicyRow[];
  /** The gateway's VmRSS when the part ended (bytes). */
  rssAfterBytes: number | undefined;
  verdicts: Verdict[];
  failures: string[];
  loadBefore: string;
  loadAfter: string;
}

async function runPolicyPart(stack: Stack, options: BenchOptions): Promise<PolicyPartResult> {
  const loadBefore = formatLoad();
  // The scratch copy exists already when the pgbench part ran; prod_orders gets its own, read by alice.
  if (!options.parts.includes('pgbench')) await pgbenchInit(stack, SCRATCH_DATABASE);
  await pgbenchInit(stack, DEMO_DATABASE);
  const workloads: Record<PolicyMode, PgbenchWorkload> = {
    'policy-off': { name: 'policy-off', proxy: 'gateway', endpoint: () => ({ ...viaGateway(stack, BOB, SCRATCH_TARGET), sslmode: 'disable' }) },
    'policy-on': { name: 'policy-on', proxy: 'gateway', endpoint: () => ({ ...viaGateway(stack, ALICE, DEMO_TARGET), sslmode: 'disable' }) },
  };
  const failures: string[] = [];
  for (const mode of POLICY_MODES) {
    const { clients, threads } = options.clientConfigs[options.clientConfigs.length - 1]!;
    const outcome = await measurePgbench(stack, failures, 'warm-up', workloads[mode], clients, threads, options.warmupSeconds);
    if ('result' in outcome) progress(`warm-up  ${mode.padEnd(10)} -c ${clients}  ${Math.round(outcome.result.tps)} TPS`);
  }
  const measurements: PolicyMeasurement[] = [];
  for (let round = 1; round <= options.policyRounds; round++) {
    // Odd rounds run off first, even rounds on first: whatever the first run leaves behind (the audit writer's
    // backlog, cache state) does not always fall on the same mode.
    const order = round % 2 === 1 ? POLICY_MODES : [...POLICY_MODES].reverse();
    for (const { clients, threads } of options.clientConfigs) {
      for (const mode of order) {
        const outcome = await measurePgbench(stack, failures, `policy round ${round}`, workloads[mode], clients, threads, options.policySeconds);
        measurements.push({ round, mode, clients, ...outcome });
        if ('result' in outcome) {
          progress(`policy round ${round}/${options.policyRounds}  -c ${clients}  ${mode.padEnd(10)} ${Math.round(outcome.result.tps).toString().padStart(6)} TPS  ` +
            `${outcome.result.latencyMs.toFixed(3)} ms  ${outcome.proxyCpuUs?.toFixed(1) ?? '?'} µs CPU/query`);
        }
      }
    }
  }
  const clientCounts = options.clientConfigs.map((c) => c.clients);
  const rows = summarizePolicy(measurements, clientCounts);
  return { rows, verdicts: judgePolicy(rows, clientCounts), failures, loadBefore, loadAfter: formatLoad(), rssAfterBytes: gatewayRssBytes(stack) };
}

/** The gateway executable's memory tunables, as the benchmark's description quotes them. */
function launchSettingsText(): string {
  const { env, nodeFlags } = gatewayLaunchSettings();
  return [...nodeFlags.map((flag) => `node \`${flag}\``), ...Object.entries(env).map(([name, value]) => `\`${name}=${value}\``)].join(', ');
}

// ---------------------------------------------------------------------------------------------------------------
// Part 3: masked streaming.

interface StreamingPartResult {
  rows: StreamRow[];
  /** VmRSS of the gateway that served the earlier parts, just before it was replaced for this one (bytes). */
  previousRssBytes: number | undefined;
  verdicts: Verdict[];
  expectedRows: number;
  insertedRows: number;
  insertSeconds: number;
  rssBeforeBytes: number | undefined;
  masked: SampleCheck | undefined;
  unmasked: SampleCheck | undefined;
  loadBefore: string;
  loadAfter: string;
}

async function runStreamingPart(stack: Stack, options: BenchOptions): Promise<StreamingPartResult> {
  const loadBefore = formatLoad();
  // A fresh gateway process: the memory measured is the streaming's, not what the earlier parts left in the heap
  // (that is recorded separately), and the part measures the same thing whether it runs alone or after the others.
  let previousRssBytes: number | undefined;
  if (options.parts.some((part) => part !== 'streaming')) {
    previousRssBytes = gatewayRssBytes(stack);
    progress(`restarting the gateway for the streaming part (RSS after the earlier parts: ${fmtMB(previousRssBytes)})`);
    await restartGateway(stack, false);
  }
  const demoUrl = databaseUrl(stack.cluster.adminUrl, DEMO_DATABASE);
  // Grow customers to the row count asked for, directly as the superuser, and vacuum so that the first read does
  // not pay for setting hint bits on a million fresh tuples.
  const insertStarted = Date.now();
  const { existing, inserted } = await withClient(demoUrl, async (client) => {
    const before = Number((await client.query<{ n: string }>('select count(*) as n from customers')).rows[0]?.n);
    const missing = Math.max(0, options.streamRows - before);
    progress(`customers: ${fmtInt(before)} rows; inserting ${fmtInt(missing)} generated rows (direct, superuser)…`);
    if (missing > 0) {
      await client.query(
        `insert into customers (name, email, phone, ssn, created_at)
         select 'Bench ' || g, 'bench' || g || '@example.com',
                '+1-555-' || lpad((g % 1000)::text, 3, '0') || '-' || lpad((g % 10000)::text, 4, '0'),
                lpad((100 + g % 500)::text, 3, '0') || '-' || lpad((g % 99 + 1)::text, 2, '0') || '-' || lpad((g % 9999 + 1)::text, 4, '0'),
                now()
           from generate_series(1, $1::int) g`,
        [missing],
      );
    }
    await client.query('vacuum (analyze) customers');
    return { existing: before, inserted: missing };
  });
  const insertSeconds = (Date.now() - insertStarted) / 1000;
  const expectedRows = existing + inserted;

  const endpoints: Record<StreamId, () => PsqlEndpoint> = {
    direct: () => ({ host: stack.cluster.host, port: stack.cluster.port, user: SERVICE_ROLE, password: stack.servicePassword, database: DEMO_DATABASE, sslmode: 'disable' }),
    unmasked: () => ({ ...viaGateway(stack, CAROL, DEMO_TARGET), sslmode: 'disable' }),
    masked: () => ({ ...viaGateway(stack, ALICE, DEMO_TARGET), sslmode: 'disable' }),
  };
  const viaGatewayStream = (stream: StreamId): boolean => stream !== 'direct';

  // Warm-up, unrecorded: the masking code's JIT and the table in the page cache.
  for (const stream of ['direct', 'unmasked', 'masked'] as const) {
    await timedStream(endpoints[stream](), STREAM_WARMUP_SQL, undefined).catch((error: unknown) =>
      progress(`  warm-up stream ${stream} failed: ${(error as Error).message}`));
  }
  const rssBeforeKiB = stack.gateway.pid === undefined ? undefined : processRssKiB(stack.gateway.pid);

  const measurements: StreamMeasurement[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    const gatewayOrder: StreamId[] = round % 2 === 1 ? ['unmasked', 'masked'] : ['masked', 'unmasked'];
    for (const stream of ['direct', ...gatewayOrder] as StreamId[]) {
      try {
        const run = await timedStream(endpoints[stream](), STREAM_SQL, viaGatewayStream(stream) ? stack.gateway.pid : undefined);
        measurements.push({ round, stream, run });
        progress(
          `stream round ${round}/${options.rounds}  ${stream.padEnd(8)} ${fmtInt(run.rows)} rows in ${run.seconds.toFixed(2)} s = ` +
            `${fmtInt(run.rowsPerSecond).padStart(9)} rows/s` +
            (run.gatewayCpuUsPerRow === undefined ? '' : `  gateway ${run.gatewayCpuUsPerRow.toFixed(2)} µs CPU/row, max RSS ${((run.maxRssBytes ?? 0) / 1e6).toFixed(1)} MB`),
        );
      } catch (error) {
        const reason = (error as Error).message;
        const gatewayLog = viaGatewayStream(stream) ? gatewayErrorSummary(stack.gateway.logTail()) : undefined;
        measurements.push({ round, stream, failure: `${reason}${gatewayLog ? ` — gateway log: ${gatewayLog}` : ''}` });
        progress(`  FAILED stream round ${round} ${stream}: ${reason}`);
        if (viaGatewayStream(stream)) await restartGateway(stack);
      }
    }
  }

  // Masking, checked on a sample rather than on every timed run (which would put the check's CPU into the timing).
  let masked: SampleCheck | undefined;
  let unmasked: SampleCheck | undefined;
  let sampleFailure: string | undefined;
  try {
    masked = checkSample(await capturePsql(endpoints.masked(), SAMPLE_SQL));
    unmasked = checkSample(await capturePsql(endpoints.unmasked(), SAMPLE_SQL));
  } catch (error) {
    sampleFailure = `sample failed: ${(error as Error).message}`;
  }
  const rows = summarizeStreams(measurements);
  const rssBeforeBytes = rssBeforeKiB === undefined ? undefined : rssBeforeKiB * 1024;
  return {
    rows,
    verdicts: judgeStreaming({ rows, expectedRows, rssBeforeBytes, previousRssBytes, masked, unmasked, sampleFailure }),
    previousRssBytes,
    expectedRows,
    insertedRows: inserted,
    insertSeconds,
    rssBeforeBytes,
    masked,
    unmasked,
    loadBefore,
    loadAfter: formatLoad(),
  };
}

// ---------------------------------------------------------------------------------------------------------------

async function run(options: BenchOptions): Promise<number> {
  const machine = describeMachine();
  const startedAt = new Date();
  progress(`machine: ${machine.nproc} CPUs (${machine.cpuModel}), ${machine.node}, ${machine.postgres}; load ${formatLoad()}`);
  progress(`plan: parts ${options.parts.join(', ')}; ${options.rounds} round(s) × ${options.seconds} s runs; policy ` +
    `${options.policyRounds} round(s) × ${options.policySeconds} s; ${fmtInt(options.streamRows)} streamed rows`);

  const cluster = await startPgCluster({ maxConnections: 100 });
  cleanups.push({ name: 'PostgreSQL cluster', run: () => cluster.stop() });
  progress(`cluster: ${cluster.host}:${cluster.port}`);

  const stateDir = await mkdtemp(join(tmpdir(), 'dbgate-bench-state-'));
  cleanups.push({ name: 'gateway state dir', run: () => rm(stateDir, { recursive: true, force: true }) });
  const profileDir = options.profile ? await mkdtemp(join(tmpdir(), 'dbgate-bench-profile-')) : undefined;

  const gateway = await startGatewayProcess(cluster.adminUrl, stateDir, profileDir);
  const stack: Stack = {
    cluster,
    stateDir,
    profileDir,
    servicePassword: (await readFile(join(stateDir, 'secrets', 'service-password'), 'utf8')).trim(),
    credentials: new Map(),
    gateway,
    gatewayRestarts: 0,
    startRssBytes: undefined,
    gatewayTransactions: new Map(),
  };
  stack.startRssBytes = gatewayRssBytes(stack);
  cleanups.push({ name: 'gateway', run: () => stack.gateway.stop() });
  progress(`gateway: ${gateway.pg.host}:${gateway.pg.port}${profileDir ? ` (profiling into ${profileDir})` : ''}`);

  // The stack is thrown away at the end of the run; the credentials may as well outlive any run length.
  for (const identity of [BOB, ALICE, CAROL]) stack.credentials.set(identity.user, await mintCredential(stateDir, identity, '12h'));

  const pgbenchPart = options.parts.includes('pgbench') ? await runPgbenchPart(stack, options) : undefined;
  const policyPart = options.parts.includes('policy') ? await runPolicyPart(stack, options) : undefined;
  const streamingPart = options.parts.includes('streaming') ? await runStreamingPart(stack, options) : undefined;

  await stack.gateway.stop();
  const audit = await auditSummary(cluster.adminUrl);
  const streamAuditLine = streamingPart ? await streamAudit(cluster.adminUrl) : undefined;
  const restarts = stack.gatewayRestarts === 0 ? [] : [`gateway restarted ${stack.gatewayRestarts} time(s) after failed runs`];

  const out: string[] = [];
  if (pgbenchPart) {
    out.push(
      '',
      `== ${SECTION_TITLES.pgbench}`,
      `pgbench -S -n -M simple, scale ${SCALE} in ${SCRATCH_DATABASE}, gateway as bob (dba) on ${SCRATCH_TARGET}, ` +
        `${options.rounds} round(s) × ${options.seconds} s per run; medians over rounds`,
      '',
      renderTextTable(pgbenchPart.rows),
      '',
      ...floorLines(pgbenchPart.rows),
      '',
      'targets (gateway = sslmode=disable):',
      renderVerdicts(pgbenchPart.verdicts, false),
      '',
      'gateway-tls, same measures (information; no target):',
      renderVerdicts(pgbenchPart.tlsInfo, false),
      '',
      failedRunsLine(pgbenchPart.failures),
      loadLine(pgbenchPart),
      `gateway VmRSS at the end of this part: ${fmtMB(pgbenchPart.rssAfterBytes)}`,
    );
  }
  if (policyPart) {
    out.push(
      '',
      `== ${SECTION_TITLES.policy}`,
      renderPolicyTable(policyPart.rows, POLICY_LABELS, false),
      '',
      renderVerdicts(policyPart.verdicts, false),
      failedRunsLine(policyPart.failures),
      loadLine(policyPart),
      `gateway VmRSS at the end of this part: ${fmtMB(policyPart.rssAfterBytes)}`,
    );
  }
  if (streamingPart) {
    out.push(
      '',
      `== ${SECTION_TITLES.streaming}`,
      `${fmtInt(streamingPart.expectedRows)} rows (${fmtInt(streamingPart.insertedRows)} inserted in ${streamingPart.insertSeconds.toFixed(1)} s)`,
      renderStreamTable(streamingPart.rows, STREAM_LABELS, false),
      '',
      renderVerdicts(streamingPart.verdicts, false),
      loadLine(streamingPart),
      `audit of \`${STREAM_SQL}\`: ${streamAuditLine ?? 'unavailable'}`,
    );
  }
  out.push('', `audit (statement events by subject → target, decision): ${renderAudit(audit, '')}`, ...restarts);

  if (profileDir) {
    const profiles = await profilesIn(profileDir);
    if (profiles.length === 0) out.push('', `no .cpuprofile was written to ${profileDir}`);
    for (const [index, path] of profiles.entries()) {
      // Gateway processes in order: the first serves pgbench and policy, a fresh one the streaming part, and
      // another one after every failed run.
      out.push('', `gateway CPU profile ${index + 1} of ${profiles.length} (parts: ${options.parts.join(', ')}): ${path}`,
        renderSelfTime(await readSelfTime(path, PROJECT_ROOT)));
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);

  if (options.write) {
    const context: SectionContext = {
      options, machine, startedAt, audit,
      gatewayRestarts: stack.gatewayRestarts,
      gatewayTransactions: stack.gatewayTransactions,
      startRssBytes: stack.startRssBytes,
      streamAuditLine,
    };
    let document = await readFile(BENCHMARKS_FILE, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (pgbenchPart) document = upsertSection(document, SECTION_TITLES.pgbench, renderPgbenchSection(context, pgbenchPart));
    if (policyPart) document = upsertSection(document, SECTION_TITLES.policy, renderPolicySection(context, policyPart));
    if (streamingPart) document = upsertSection(document, SECTION_TITLES.streaming, renderStreamingSection(context, streamingPart));
    await writeFile(BENCHMARKS_FILE, document ?? '');
    progress(`\nwrote ${options.parts.map((p) => `"${SECTION_TITLES[p]}"`).join(', ')} in ${BENCHMARKS_FILE}`);
  } else {
    progress('\nBENCHMARKS.md left alone (quick, filtered, profiled or --no-write run; pass --write to record it)');
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// BENCHMARKS.md sections.

interface SectionContext {
  options: BenchOptions;
  machine: MachineInfo;
  startedAt: Date;
  audit: Map<string, number> | undefined;
  gatewayRestarts: number;
  gatewayTransactions: Map<string, number>;
  startRssBytes: number | undefined;
  streamAuditLine: string | undefined;
}

function commandLine(options: BenchOptions): string {
  const flags: string[] = [];
  if (options.parts.length !== PARTS.length) flags.push(`--parts ${options.parts.join(',')}`);
  if (options.rounds !== 3 || options.seconds !== 5 || options.warmupSeconds !== 2) {
    flags.push(`--rounds ${options.rounds}`, `--seconds ${options.seconds}`, `--warmup ${options.warmupSeconds}`);
  }
  if (options.policyRounds !== 6 || options.policySeconds !== 3) {
    flags.push(`--policy-rounds ${options.policyRounds}`, `--policy-seconds ${options.policySeconds}`);
  }
  if (options.streamRows !== 1_000_000) flags.push(`--stream-rows ${options.streamRows}`);
  if (options.systems.length !== SYSTEMS.length) flags.push(`--systems ${options.systems.join(',')}`);
  if (options.clientConfigs.length !== CLIENT_CONFIGS.length) flags.push(`--clients ${options.clientConfigs[0]?.clients ?? ''}`);
  if (options.profile) flags.push('--profile');
  if (flags.length > 0) flags.push('--write');
  return flags.length === 0 ? 'npm run bench' : `npm run bench -- ${flags.join(' ')}`;
}

function measuredLine(context: SectionContext): string {
  return `Measured ${context.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC with \`${commandLine(context.options)}\` ` +
    '(`bench/run.ts`); gateway code under Machine' +
    (context.options.parts.length === PARTS.length
      ? `; the sections "${SECTION_TITLES.pgbench}", "${SECTION_TITLES.policy}" and "${SECTION_TITLES.streaming}" come from this one run.`
      : '.');
}

const NOISE_NOTE = [
  'The machine is shared with other work and noisy: absolute numbers move between runs (even between rounds of the',
  'same system) by more than some of the differences measured here, so tables quote medians over rounds, and ratios',
  'are computed from those medians; round-by-round comparisons are given as counts. The benchmark clients,',
  'PostgreSQL and the gateway share the same CPUs. Treat few-percent differences as noise.',
];

function failureBlock(failures: readonly string[], restarts: number): string[] {
  if (failures.length === 0) return ['Every run completed with 0 failed transactions.'];
  return [
    '### Failed runs',
    '',
    'These runs do not count in the medians (shown as FAILED above); after each failed gateway run the gateway',
    `was restarted (${restarts} time(s) in the whole bench run) so later runs measure a fresh process.`,
    '',
    ...failures.map((f) => `- ${f}`),
  ];
}

function renderPgbenchSection(context: SectionContext, part: PgbenchPartResult): string {
  const { options, machine } = context;
  const bobTransactions = context.gatewayTransactions.get(BOB.user) ?? 0;
  return [
    measuredLine(context),
    '',
    '### What is measured',
    '',
    `pgbench's built-in select-only script (\`pgbench -S -n -M simple -T ${options.seconds}\`): every transaction is one`,
    '`SELECT abalance FROM pgbench_accounts WHERE aid = :aid` in the simple query protocol, i.e. one round trip, on a',
    `scale-${SCALE} database (1,000,000 accounts) created with \`pgbench -i -s ${SCALE}\` in \`${SCRATCH_DATABASE}\` as \`${SERVICE_ROLE}\`.`,
    'Everything runs on one machine over TCP loopback against one throwaway PostgreSQL cluster (fsync off):',
    '',
    ...SYSTEMS.map((s) => `- **${s}**: ${SYSTEM_DESCRIPTIONS[s]}`),
    '',
    `The gateway enforces the demo policy (\`DEMO_POLICY_YAML\`): \`${SCRATCH_DATABASE}\` is its target \`${SCRATCH_TARGET}\`, where`,
    "group `dba` has an `admin` grant and no rule applies, so every statement is classified and decided `allow`,",
    'audited, and its result rows stream through untouched. pgbench -M simple puts each random `aid` into the',
    "statement text; texts that differ only in literals share one decision (found by the text's literal shape, see",
    '`src/gateway/policy/literal-shape.ts`), so after the first few statements none is parsed again. The cost of the',
    'policy deciding `mask` is the next section.',
    '',
    `PgBouncer runs in session mode with a pool of ${BOUNCER_POOL_SIZE} server connections to \`${SCRATCH_DATABASE}\`, logging in as`,
    `\`${SERVICE_ROLE}\`, the role the gateway uses upstream. Each run uses \`-c 1 -j 1\` and \`-c 8 -j 2\`. The systems alternate`,
    `within each round (${options.systems.join(', ')} at -c 1, then the same at -c 8), ${options.rounds} round(s) of`,
    `${options.seconds} s per run after a ${options.warmupSeconds} s unrecorded warm-up of each system. Every run is checked for 0 failed transactions.`,
    '',
    '### Machine',
    '',
    ...machineLines(machine, part.loadBefore, part.loadAfter, 'this part'),
    '',
    ...NOISE_NOTE,
    '',
    '### Results',
    '',
    renderMarkdownTable(part.rows),
    '',
    '"vs direct" is median TPS / median TPS of direct. "added µs / round trip" is clients·10⁶/median TPS(system) −',
    'clients·10⁶/median TPS(direct): at -c 1 the latency the system adds to each round trip; at -c 8 the difference in',
    'average latency, queueing for the CPUs included. "proxy CPU µs / query" is the CPU time (user + system, all',
    'threads, from /proc/<pid>/stat) the PgBouncer, relay or gateway process used during the run divided by the transactions',
    'pgbench completed: the least noisy figure here, since it does not depend on who else had the CPUs. It does not',
    "include the PostgreSQL time of the gateway's own audit inserts.",
    ...(part.rows.some((row) => row.system === 'node-relay') ? ['', ...floorLines(part.rows).map((line) => `- ${line}`)] : []),
    '',
    '### Verdicts',
    '',
    'Targets for the gateway without TLS (PgBouncer has no TLS here either):',
    '',
    renderVerdicts(part.verdicts, true),
    '',
    'The same measures for the gateway with TLS, for information (no target):',
    '',
    renderVerdicts(part.tlsInfo, true),
    '',
    ...failureBlock(part.failures, context.gatewayRestarts),
    '',
    `Gateway memory: VmRSS ${fmtMB(part.rssAfterBytes)} at the end of this part (${fmtMB(context.startRssBytes)} when the process was ready).`,
    '',
    `Sanity: ${fmtInt(bobTransactions)} transactions pgbench reported through the gateway as bob (this part and the`,
    `policy-off runs of the next, warm-ups included); audit statement events stored: ${renderAudit(context.audit, `${BOB.user} `)}`,
    '(pgbench adds a few setup statements per run).',
  ].join('\n');
}

function renderPolicySection(context: SectionContext, part: PolicyPartResult): string {
  const { options, machine } = context;
  const aliceTransactions = context.gatewayTransactions.get(ALICE.user) ?? 0;
  return [
    measuredLine(context),
    '',
    '### What is measured',
    '',
    `The workload of the previous section (\`pgbench -S -n -M simple\`, scale ${SCALE}), through the same gateway process,`,
    'with the policy on the two paths it can take for a read:',
    '',
    `- **off** — bob (groups \`dba\`) on target \`${SCRATCH_TARGET}\` (\`${SCRATCH_DATABASE}\`), where \`dba\` has an`,
    '  `admin` grant and no rule applies. Every statement is still parsed, classified and decided (`allow`); result',
    "  rows are relayed in bulk without being looked at. This is the lightest path the policy has: it is not a gateway",
    '  without a policy, because a gateway without a policy section refuses every statement by design (fail closed).',
    `- **on** — alice (groups \`engineering\`) on target \`${DEMO_TARGET}\` (\`${DEMO_DATABASE}\`),`,
    "  reading a second copy of pgbench's tables created there directly as the service role. `engineering` has a",
    '  `read` grant and rule `mask-pii` matches her on that target, so every statement is decided `mask`: the gateway',
    '  parses each backend message of the result and hands every DataRow to the result masker. pgbench_accounts is a',
    '  plain table with no masked column, known to the masked-column catalog at her login, so its columns are planned',
    "  `pass` and the rows leave unchanged; what is measured is the cost of the decision and of inspecting rows, not of",
    '  rewriting them (that is the next section).',
    '',
    'The two copies of the tables are identical (same scale, same query); they live in different databases only',
    "because the grants differ by target. As in the previous section, the random `aid` in each statement's text makes",
    'the decision caches miss for both modes.',
    '',
    `Each round runs both modes at -c 1 and at -c 8 (-j 2), ${options.policySeconds} s per run, ${options.policyRounds} round(s) after a ` +
      `${options.warmupSeconds} s unrecorded warm-up of each mode`,
    '(more and shorter runs than the previous section: the two modes are close, and the noise of this shared machine',
    'comes in bursts that a median over more alternations absorbs better); odd rounds run off first, even rounds on',
    'first. The ratio is median TPS(on) / median TPS(off).',
    '',
    '### Machine',
    '',
    ...machineLines(machine, part.loadBefore, part.loadAfter, 'this part'),
    '',
    ...NOISE_NOTE,
    '',
    '### Results',
    '',
    renderPolicyTable(part.rows, POLICY_LABELS, true),
    '',
    '"gateway CPU µs / query" is the CPU time of the gateway process during the run divided by the transactions',
    'pgbench completed (/proc/<pid>/stat).',
    '',
    '### Verdicts',
    '',
    `Target: policy on keeps ≥ ${TARGET_POLICY_RATIO} of the throughput of policy off, measured in the same run. The verdict is`,
    'judged on the ratio of median TPS; the per-round ratios and the ratio of CPU per query (off/on: the throughput',
    "ratio to expect where the gateway's CPU is the bottleneck, and less sensitive to other work on the machine) are",
    'given to show how firm it is.',
    '',
    renderVerdicts(part.verdicts, true),
    '',
    ...failureBlock(part.failures, context.gatewayRestarts),
    '',
    `Gateway memory: VmRSS ${fmtMB(part.rssAfterBytes)} at the end of this part (same process as the previous section).`,
    '',
    `Sanity: ${fmtInt(aliceTransactions)} transactions pgbench reported through the gateway as alice (warm-up included);`,
    `audit statement events stored for her: ${renderAudit(context.audit, `${ALICE.user} `)} (her streaming reads of the`,
    'next section included, pgbench adds a few setup statements per run).',
  ].join('\n');
}

function renderStreamingSection(context: SectionContext, part: StreamingPartResult): string {
  const { options, machine } = context;
  const masked = part.masked;
  const unmasked = part.unmasked;
  return [
    measuredLine(context),
    '',
    '### What is measured',
    '',
    `\`customers\` in \`${DEMO_DATABASE}\` is grown to ${fmtInt(part.expectedRows)} rows (the ${fmtInt(part.expectedRows - part.insertedRows)} demo rows plus`,
    `${fmtInt(part.insertedRows)} generated ones inserted directly as the superuser in ${part.insertSeconds.toFixed(1)} s, then \`VACUUM (ANALYZE)\`), and`,
    `\`${STREAM_SQL}\` (6 columns: id, name, email, phone, ssn, created_at) is read whole with`,
    '`psql -X -At -c …` (one simple-protocol query, no FETCH_COUNT; output counted and discarded by the bench) as:',
    '',
    `- **direct** — psql → PostgreSQL as \`${SERVICE_ROLE}\`, for reference;`,
    `- **unmasked** — psql → gateway → PostgreSQL as carol (groups \`security\`): \`read\` grant on \`${DEMO_TARGET}\`, no rule`,
    '  matches her, decision `allow`: rows are relayed in bulk, untouched;',
    '- **masked** — the same as alice (groups `engineering`): rule `mask-pii`, decision `mask`. Every DataRow is',
    '  parsed; email, phone and ssn are masked by catalog (table OID + column number in RowDescription) in the',
    '  `partial` style (each value classified as email / card / IBAN / SSN / phone / other, on its bytes when ASCII);',
    '  id, name and created_at are stored columns of a plain table and pass untouched. Every row is rewritten.',
    '',
    `Each round reads direct, then the two gateway streams (unmasked first in odd rounds, masked first in even ones),`,
    `${options.rounds} round(s) after an unrecorded warm-up read of 100,000 rows each. Time runs from starting psql to its`,
    'exit (login and psql printing included, the same for every stream); rows/s = rows printed / that time. While a',
    "stream goes through the gateway, the gateway process's CPU time is read before and after, and its VmRSS",
    '(/proc/<pid>/status) is sampled every 100 ms; the table gives the largest sample. MB = 10⁶ bytes. The gateway',
    `runs with what the first line of \`bin/dbgate-gateway\` sets for every way of running it: ${launchSettingsText()}`,
    '(why: see there; without them this part measured 222-253 MB on 2026-11-26).',
    ...(part.previousRssBytes === undefined ? [] : [
      'This part runs on a fresh gateway process (same state, same credentials): the one that served the two pgbench',
      `sections was at ${fmtMB(part.previousRssBytes)} VmRSS when it was replaced, memory the streaming did not cause.`,
    ]),
    '',
    `Masking is checked on a sample read through the gateway as both identities (\`${SAMPLE_SQL}\`,`,
    "every 100th customer): in alice's output no line may contain a generated email's local part (/bench\\d+@/), any",
    "email with a cleartext local part, an SSN (ddd-dd-dddd) or a phone number (+1-555-ddd-dddd); in carol's, every",
    'line must contain them.',
    '',
    '### Machine',
    '',
    ...machineLines(machine, part.loadBefore, part.loadAfter, 'this part'),
    '',
    ...NOISE_NOTE,
    '',
    '### Results',
    '',
    renderStreamTable(part.rows, STREAM_LABELS, true),
    '',
    masked && unmasked
      ? `Sample (${fmtInt(masked.rows)} rows each): alice ${masked.benchEmails} lines with /bench\\d+@/, ${masked.clearEmails} with a cleartext email, ` +
        `${masked.ssns} with an SSN, ${masked.phones} with a phone number; carol ${fmtInt(unmasked.benchEmails)}, ${fmtInt(unmasked.clearEmails)}, ` +
        `${fmtInt(unmasked.ssns)}, ${fmtInt(unmasked.phones)}.`
      : 'The masking sample could not be read (see the verdict).',
    '',
    '### Verdicts',
    '',
    `Targets: masked streaming keeps ≥ ${TARGET_MASKED_RATIO} of the unmasked rate through the same gateway in the same run, and the`,
    `gateway's RSS stays under ${TARGET_MAX_RSS_BYTES / 1e6} MB while it streams; masking must actually happen.`,
    '',
    renderVerdicts(part.verdicts, true),
    '',
    `Sanity: the audit trail recorded for \`${STREAM_SQL}\` (warm-up reads with LIMIT not included): ${context.streamAuditLine ?? 'unavailable'}.`,
  ].join('\n');
}

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    progress(
      `bench: ${error.message}\nusage: npm run bench -- [--quick] [--parts pgbench,policy,streaming] [--rounds N] [--seconds S] ` +
        '[--warmup S] [--policy-rounds N] [--policy-seconds S] [--stream-rows N] [--profile] [--systems direct,pgbouncer,node-relay,gateway,gateway-tls] [--clients 1|8] [--write|--no-write]',
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

/** "failed runs: none", or one indented line per failed run. */
function failedRunsLine(failures: readonly string[]): string {
  return failures.length === 0 ? 'failed runs: none' : `failed runs:\n${failures.map((f) => `  - ${f}`).join('\n')}`;
}

/** The machine's load average before and after a part (the bench shares the CPUs with everything else). */
function loadLine(part: { loadBefore: string; loadAfter: string }): string {
  return `load average (1/5/15 min): ${part.loadBefore} before, ${part.loadAfter} after`;
}
