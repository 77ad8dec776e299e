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

/**
 * Runs pgbench with `args` against `endpoint` and resolves with its combined output.
 *
 * @throws Error with the output when pgbench exits non-zero (pgbench exits 2 when a client aborted).
 */
export function runPgbench(endpoint: PgbenchEndpoint, args: readonly string[]): Promise<string> {
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
      if (code === 0) resolve(output);
      else {
        const how = signal ? `was killed by ${signal}` : `exited with code ${String(code)}`;
        reject(new Error(`pgbench ${argv.join(' ')} ${how}\n${output.trim()}`));
      }
    });
  });
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
