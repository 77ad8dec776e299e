/**
 * Runs pgbench and reads its summary. Only the lines pgbench 15 prints at the end of a run are parsed; anything
 * missing is an error rather than a guess, because a benchmark that silently reads 0 TPS is worse than none.
 *
 * @see https://www.postgresql.org/docs/15/pgbench.html
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Where to connect and how: what libpq needs, passed through pgbench's flags and environment. */
export interface PgbenchEndpoint {
  host: string;
  port: number;
  user: string;
  database: string;
  password: string;
  sslmode: 'disable' | 'require';
}

/** The summary of one pgbench run. */
export interface PgbenchResult {
  /** `tps = … (without initial connection time)`. */
  tps: number;
  /** `latency average = … ms`, in milliseconds. */
  latencyMs: number;
  /** `number of transactions actually processed: …`. */
  transactions: number;
  /** `number of failed transactions: …`. */
  failed: number;
}

/** Finds pgbench: Debian puts a wrapper in /usr/bin and the real binary under /usr/lib/postgresql/<major>/bin. */
export function pgbenchBin(): string {
  for (const candidate of ['/usr/bin/pgbench', '/usr/lib/postgresql/15/bin/pgbench']) {
    if (existsSync(candidate)) return candidate;
  }
  return 'pgbench';
}

/** The child currently running, so a signal handler can stop it before tearing down the servers it talks to. */
let running: ChildProcess | undefined;

/** Stops the pgbench run in progress, if any. */
export function killRunningPgbench(): void {
  running?.kill('SIGKILL');
}

/** What a pgbench process left behind. */
export interface PgbenchExit {
  /** 0 on success; pgbench exits 2 when a client aborted (e.g. on an ErrorResponse). */
  exitCode: number;
  /** stdout and stderr, interleaved as they arrived. */
  output: string;
}

/**
 * Runs pgbench with `args` against `endpoint`. Resolves whatever the exit code (the caller decides what a failed
 * run means); rejects only when pgbench could not run or was killed.
 */
export function runPgbench(endpoint: PgbenchEndpoint, args: readonly string[]): Promise<PgbenchExit> {
  const argv = [...args, '-h', endpoint.host, '-p', String(endpoint.port), '-U', endpoint.user, endpoint.database];
  // Only our settings: a PGSERVICE, PGOPTIONS or PGSSLMODE from the caller's shell must not change what is measured.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG')));
  env['PGPASSWORD'] = endpoint.password;
  env['PGSSLMODE'] = endpoint.sslmode;
  env['PGAPPNAME'] = 'dbgate-bench';
  return new Promise((resolve, reject) => {
    const child = spawn(pgbenchBin(), argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    running = child;
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.once('error', (error) => {
      running = undefined;
      reject(new Error(`cannot run pgbench: ${error.message}`, { cause: error }));
    });
    child.once('close', (code, signal) => {
      running = undefined;
      if (code !== null) resolve({ exitCode: code, output });
      else reject(new Error(`pgbench ${argv.join(' ')} was killed by ${String(signal)}\n${output.trim()}`));
    });
  });
}

/** The first error pgbench reports (e.g. the ErrorResponse that aborted a client), on one line. */
export function firstPgbenchError(output: string): string | undefined {
  const match = /^pgbench: error: (?:client \d+ script \d+ aborted in command \d+ query \d+: )?(.+)$/m.exec(output);
  return match?.[1]?.trim();
}

function matchNumber(output: string, pattern: RegExp, what: string): number {
  const match = pattern.exec(output);
  const value = match?.[1] === undefined ? Number.NaN : Number(match[1]);
  if (!Number.isFinite(value)) throw new Error(`pgbench output has no ${what}:\n${output.trim()}`);
  return value;
}

/**
 * Reads TPS, average latency, transaction and failure counts from a pgbench 15 summary.
 *
 * @throws Error when a line is missing (e.g. an older pgbench without the failed-transactions line).
 */
export function parsePgbenchOutput(output: string): PgbenchResult {
  return {
    tps: matchNumber(output, /^tps = ([\d.]+) \(without initial connection time\)$/m, 'tps line'),
    latencyMs: matchNumber(output, /^latency average = ([\d.]+) ms$/m, 'latency average'),
    transactions: matchNumber(output, /^number of transactions actually processed: (\d+)/m, 'transaction count'),
    failed: matchNumber(output, /^number of failed transactions: (\d+)/m, 'failed transaction count'),
  };
}
