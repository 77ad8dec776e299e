/**
 * "masked streaming": one large `SELECT * FROM customers` read with psql, straight from PostgreSQL and through the
 * gateway as an identity whose results are masked and as one whose results are not; rows per second, the gateway's
 * CPU per row and its peak resident memory while it streams, and a check on a sample that masking really happened.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { processCpuUs, sampleRss } from './gateway-process.js';
import { renderTable, median, type Verdict } from './report.js';

/** Where psql connects and how. */
export interface PsqlEndpoint {
  host: string;
  port: number;
  user: string;
  database: string;
  password: string;
  sslmode: 'disable' | 'require';
}

/** The streams measured, in the order they are described. */
export const STREAMS = ['direct', 'unmasked', 'masked'] as const;
export type StreamId = (typeof STREAMS)[number];

/** Targets of this part. */
export const TARGET_MASKED_RATIO = 0.7;
/** 200 MB in bytes (decimal megabytes, the stricter reading of "200 MB"). */
export const TARGET_MAX_RSS_BYTES = 200e6;

export function psqlBin(): string {
  for (const candidate of ['/usr/lib/postgresql/15/bin/psql', '/usr/bin/psql']) {
    if (existsSync(candidate)) return candidate;
  }
  return 'psql';
}

/** Only our settings: a PGSERVICE, PGOPTIONS or PGSSLMODE from the caller's shell must not change what is measured. */
function psqlEnv(endpoint: PsqlEndpoint): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG')));
  env['PGPASSWORD'] = endpoint.password;
  env['PGSSLMODE'] = endpoint.sslmode;
  env['PGAPPNAME'] = 'dbgate-bench';
  return env;
}

function psqlArgs(endpoint: PsqlEndpoint, sql: string): string[] {
  // -X: no ~/.psqlrc; -At: unaligned tuples only, one line per row; no FETCH_COUNT: one simple-protocol query.
  return ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', endpoint.host, '-p', String(endpoint.port), '-U', endpoint.user,
    '-d', endpoint.database, '-c', sql];
}

/** One timed read of a whole result. */
export interface StreamRun {
  /** Lines psql printed: one per row with -At (no value here contains a newline). */
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  /** CPU time the gateway used during the run, per row (µs); undefined for direct. */
  gatewayCpuUsPerRow: number | undefined;
  /** Largest VmRSS of the gateway sampled every 100 ms during the run (bytes); undefined for direct. */
  maxRssBytes: number | undefined;
  rssSamples: number;
}

/**
 * Runs `psql -At -c sql` and counts the lines it prints without keeping them. The clock runs from spawn to exit, so it
 * includes psql's login (milliseconds) and psql printing the result it has read (the same for every stream).
 *
 * @param gatewayPid when the stream goes through the gateway: its CPU time and RSS are sampled during the run.
 */
export function timedStream(endpoint: PsqlEndpoint, sql: string, gatewayPid: number | undefined): Promise<StreamRun> {
  return new Promise((resolve, reject) => {
    const cpuBefore = gatewayPid === undefined ? undefined : processCpuUs(gatewayPid);
    const rss = gatewayPid === undefined ? undefined : sampleRss(gatewayPid, 100);
    const started = process.hrtime.bigint();
    const child = spawn(psqlBin(), psqlArgs(endpoint, sql), { env: psqlEnv(endpoint), stdio: ['ignore', 'pipe', 'pipe'] });
    let lines = 0;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4096)));
    child.once('error', (error) => {
      rss?.stop();
      reject(new Error(`cannot run psql: ${error.message}`, { cause: error }));
    });
    child.once('close', (code, signal) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const sampled = rss?.stop();
      const cpuAfter = gatewayPid === undefined ? undefined : processCpuUs(gatewayPid);
      if (code !== 0) {
        reject(new Error(`psql ${code === null ? `killed by ${String(signal)}` : `exited with code ${code}`}: ${stderr.trim() || '(no message)'}`));
        return;
      }
      const cpuUs = cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined;
      resolve({
        rows: lines,
        seconds,
        rowsPerSecond: lines / seconds,
        gatewayCpuUsPerRow: cpuUs === undefined || lines === 0 ? undefined : cpuUs / lines,
        maxRssBytes: sampled?.maxKiB === undefined ? undefined : sampled.maxKiB * 1024,
        rssSamples: sampled?.samples ?? 0,
      });
    });
  });
}

/** Runs `psql -At -c sql` and returns what it printed (for samples small enough to hold). */
export function capturePsql(endpoint: PsqlEndpoint, sql: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(psqlBin(), psqlArgs(endpoint, sql), { env: psqlEnv(endpoint), stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', (error) => reject(new Error(`cannot run psql: ${error.message}`, { cause: error })));
    child.once('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`psql exited with code ${String(code)}: ${stderr.trim()}`));
    });
  });
}

/** What a sample of `customers` shows: rows, and how many of them carry each kind of cleartext PII. */
export interface SampleCheck {
  rows: number;
  /** Lines with a generated email's local part (`bench<n>@`). */
  benchEmails: number;
  /** Lines with an email address whose local part is longer than one character (masked ones read `x***@domain`). */
  clearEmails: number;
  /** Lines with a cleartext SSN (`123-45-6789`). */
  ssns: number;
  /** Lines with a cleartext phone number (`+1-555-123-4567`). */
  phones: number;
}

export function checkSample(output: string): SampleCheck {
  const lines = output.split('\n').filter((line) => line !== '');
  const count = (pattern: RegExp): number => lines.filter((line) => pattern.test(line)).length;
  return {
    rows: lines.length,
    benchEmails: count(/bench\d+@/),
    clearEmails: count(/[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9-]+\./),
    ssns: count(/(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)/),
    phones: count(/\+1-555-\d{3}-\d{4}/),
  };
}

/** One timed stream of one round. */
export interface StreamMeasurement {
  round: number;
  stream: StreamId;
  run?: StreamRun;
  failure?: string;
}

export interface StreamRow {
  stream: StreamId;
  /** Runs in round order; undefined where it failed. */
  byRound: Array<StreamRun | undefined>;
  failedRuns: number;
  firstFailure: string | undefined;
  rows: number;
  medianSeconds: number;
  medianRowsPerSecond: number;
  medianGatewayCpuUsPerRow: number;
  maxRssBytes: number | undefined;
}

export function summarizeStreams(measurements: readonly StreamMeasurement[]): StreamRow[] {
  const rows: StreamRow[] = [];
  for (const stream of STREAMS) {
    const mine = measurements.filter((m) => m.stream === stream).sort((a, b) => a.round - b.round);
    if (mine.length === 0) continue;
    const good = mine.flatMap((m) => (m.run ? [m.run] : []));
    const rss = good.flatMap((run) => (run.maxRssBytes === undefined ? [] : [run.maxRssBytes]));
    rows.push({
      stream,
      byRound: mine.map((m) => m.run),
      failedRuns: mine.length - good.length,
      firstFailure: mine.find((m) => m.failure !== undefined)?.failure,
      rows: median(good.map((run) => run.rows)),
      medianSeconds: median(good.map((run) => run.seconds)),
      medianRowsPerSecond: median(good.map((run) => run.rowsPerSecond)),
      medianGatewayCpuUsPerRow: median(good.flatMap((run) => (run.gatewayCpuUsPerRow === undefined ? [] : [run.gatewayCpuUsPerRow]))),
      maxRssBytes: rss.length === 0 ? undefined : Math.max(...rss),
    });
  }
  return rows;
}

const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const fmtMB = (bytes: number | undefined): string => (bytes === undefined ? '—' : `${(bytes / 1e6).toFixed(1)} MB`);

export interface StreamingVerdictInput {
  rows: readonly StreamRow[];
  expectedRows: number;
  /** Idle RSS of the gateway just before the first stream, bytes. */
  rssBeforeBytes: number | undefined;
  /** RSS of the gateway process that served earlier benchmarks, replaced by a fresh one for this part (bytes). */
  previousRssBytes?: number | undefined;
  masked: SampleCheck | undefined;
  unmasked: SampleCheck | undefined;
  sampleFailure: string | undefined;
}

export function judgeStreaming(input: StreamingVerdictInput): Verdict[] {
  const verdicts: Verdict[] = [];
  const find = (stream: StreamId): StreamRow | undefined => input.rows.find((r) => r.stream === stream);
  const masked = find('masked');
  const unmasked = find('unmasked');
  const problems = (row: StreamRow | undefined, name: string): string[] => {
    if (!row) return [`${name}: not measured`];
    const notes: string[] = [];
    if (row.failedRuns > 0) notes.push(`${name}: ${row.failedRuns} of ${row.byRound.length} runs failed (${row.firstFailure ?? '?'})`);
    const short = row.byRound.filter((run) => run !== undefined && run.rows !== input.expectedRows).length;
    if (short > 0) notes.push(`${name}: ${short} run(s) did not return ${fmtInt(input.expectedRows)} rows`);
    return notes;
  };

  const ratioTarget = `masked rows/s ≥ ${TARGET_MASKED_RATIO} × unmasked rows/s`;
  const notes = [...problems(masked, 'masked'), ...problems(unmasked, 'unmasked')];
  if (masked && unmasked && Number.isFinite(masked.medianRowsPerSecond) && Number.isFinite(unmasked.medianRowsPerSecond)) {
    const ratio = masked.medianRowsPerSecond / unmasked.medianRowsPerSecond;
    const paired = masked.byRound.map((run, i) => {
      const other = unmasked.byRound[i];
      return run && other ? run.rowsPerSecond / other.rowsPerSecond : undefined;
    }).filter((r): r is number => r !== undefined);
    verdicts.push({
      target: ratioTarget,
      measured: `median ${fmtInt(masked.medianRowsPerSecond)} vs ${fmtInt(unmasked.medianRowsPerSecond)} rows/s = ${ratio.toFixed(2)}× ` +
        `(per round: ${paired.map((r) => `${r.toFixed(2)}×`).join(', ')})${notes.length > 0 ? `; ${notes.join('; ')}` : ''}`,
      pass: notes.length === 0 && ratio >= TARGET_MASKED_RATIO,
    });
  } else {
    verdicts.push({ target: ratioTarget, measured: notes.join('; ') || 'not measured', pass: false });
  }

  const rssTarget = `gateway RSS < ${TARGET_MAX_RSS_BYTES / 1e6} MB while streaming`;
  const peaks = [masked, unmasked].flatMap((row) => (row?.maxRssBytes === undefined ? [] : [{ name: row.stream, bytes: row.maxRssBytes }]));
  if (peaks.length === 2) {
    const max = Math.max(...peaks.map((p) => p.bytes));
    verdicts.push({
      target: rssTarget,
      measured: `max VmRSS ${fmtMB(max)} (${peaks.map((p) => `${p.name} ${fmtMB(p.bytes)}`).join(', ')}; ` +
        `${fmtMB(input.rssBeforeBytes)} before the first timed stream, after the warm-up reads), sampled every 100 ms` +
        (input.previousRssBytes === undefined ? '' : `; for comparison, the gateway that had served the pgbench parts was at ` +
          `${fmtMB(input.previousRssBytes)} before it was replaced by the fresh one measured here`),
      pass: max < TARGET_MAX_RSS_BYTES,
    });
  } else {
    verdicts.push({ target: rssTarget, measured: 'not sampled', pass: false });
  }

  const maskTarget = "masked identity's sample shows no cleartext email, SSN or phone; the unmasked one's does";
  if (input.masked && input.unmasked) {
    const m = input.masked;
    const u = input.unmasked;
    verdicts.push({
      target: maskTarget,
      measured:
        `masked: ${fmtInt(m.rows)} rows, ${m.benchEmails} with /bench\\d+@/, ${m.clearEmails} with a cleartext email, ` +
        `${m.ssns} with an SSN, ${m.phones} with a phone number; unmasked: ${fmtInt(u.rows)} rows, ${fmtInt(u.benchEmails)} / ` +
        `${fmtInt(u.clearEmails)} / ${fmtInt(u.ssns)} / ${fmtInt(u.phones)}`,
      pass: m.rows > 0 && m.rows === u.rows && m.benchEmails + m.clearEmails + m.ssns + m.phones === 0 &&
        u.benchEmails > 0 && u.clearEmails === u.rows && u.ssns === u.rows && u.phones === u.rows,
    });
  } else {
    verdicts.push({ target: maskTarget, measured: input.sampleFailure ?? 'not checked', pass: false });
  }
  return verdicts;
}

const HEADERS = ['stream', 'rows', 'median time', 'median rows/s', 'rows/s per round', 'vs unmasked', 'gateway CPU µs / row', 'max gateway RSS'];

function cells(r: StreamRow, unmasked: StreamRow | undefined, labels: Record<StreamId, string>): string[] {
  const ratio = unmasked ? r.medianRowsPerSecond / unmasked.medianRowsPerSecond : Number.NaN;
  return [
    labels[r.stream],
    fmtInt(r.rows),
    Number.isFinite(r.medianSeconds) ? `${r.medianSeconds.toFixed(2)} s` : 'n/a',
    fmtInt(r.medianRowsPerSecond),
    r.byRound.map((run) => (run ? fmtInt(run.rowsPerSecond) : 'FAILED')).join(' / '),
    Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : 'n/a',
    Number.isFinite(r.medianGatewayCpuUsPerRow) ? r.medianGatewayCpuUsPerRow.toFixed(2) : '—',
    fmtMB(r.maxRssBytes),
  ];
}

export function renderStreamTable(rows: readonly StreamRow[], labels: Record<StreamId, string>, markdown: boolean): string {
  const unmasked = rows.find((r) => r.stream === 'unmasked');
  return renderTable(HEADERS, rows.map((r) => cells(r, unmasked, labels)), markdown);
}
