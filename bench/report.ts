/**
 * Turns pgbench runs into the comparison table, the verdicts against the targets, and the BENCHMARKS.md section.
 *
 * Comparisons are made between medians over rounds (ratio of median TPS, difference of 10⁶/median TPS). On the shared
 * machine this runs on, noise comes in bursts (another job's test suite) that hit single runs; a per-system median
 * drops one burst, while a ratio paired within a round is hit whenever either side of the pair was. Round-by-round
 * pairings are still reported as counts ("ahead in k of n rounds").
 */
import type { PgbenchResult } from './pgbench.js';

/** The systems, in the order they run within each round. */
export const SYSTEMS = ['direct', 'pgbouncer', 'node-relay', 'gateway', 'gateway-tls'] as const;
export type SystemId = (typeof SYSTEMS)[number];

/** What each system is, for the table legend. */
export const SYSTEM_DESCRIPTIONS: Record<SystemId, string> = {
  direct: 'pgbench → PostgreSQL over TCP loopback, SCRAM login, no TLS',
  pgbouncer: 'pgbench → PgBouncer (session pooling) → PostgreSQL, no TLS',
  'node-relay': 'pgbench → a bare Node.js TCP relay (`bench/node-relay.ts`: bytes forwarded as they arrive, no parsing, no policy, no audit; same node flags and memory settings as the gateway) → PostgreSQL: the floor under any proxy on this runtime, for reference (no target)',
  gateway: 'pgbench → dbgate gateway (`dbgate-gateway dev`, credential login as bob, groups dba, target `scratch`; every statement parsed, decided by the policy and audited) → PostgreSQL, `sslmode=disable`',
  'gateway-tls': 'the same gateway with `sslmode=require` (TLS between pgbench and the gateway)',
};

/** One pgbench run: its summary, or why it does not count (aborted clients, failed transactions). */
export type Measurement = {
  round: number;
  system: SystemId;
  clients: number;
  /** CPU time (user + system) the proxy process spent per transaction of this run, in µs; absent for direct. */
  proxyCpuUs?: number | undefined;
} & ({ result: PgbenchResult; failure?: undefined } | { result?: undefined; failure: string });

/** A run that completed with 0 failed transactions. */
type GoodMeasurement = Measurement & { result: PgbenchResult };

const succeeded = (m: Measurement | undefined): m is GoodMeasurement => m?.result !== undefined;

/** One line of the comparison table. */
export interface SummaryRow {
  system: SystemId;
  clients: number;
  /** TPS of each round, in round order; undefined where the run failed. */
  tpsByRound: Array<number | undefined>;
  /** Runs that did not count, and the first reason. */
  failedRuns: number;
  firstFailure: string | undefined;
  medianTps: number;
  /** medianTps / medianTps(direct) at the same client count. */
  ratioToDirect: number;
  medianLatencyMs: number;
  /** Median over rounds of the proxy's CPU µs per transaction; NaN for direct. */
  medianProxyCpuUs: number;
  /**
   * clients·10⁶/medianTps − clients·10⁶/medianTps(direct), in µs: the time each round trip gains through this
   * system. At one client that is 10⁶/tps_sys − 10⁶/tps_direct; at more clients it is the difference of the average
   * latencies and includes queueing for the machine's CPUs.
   */
  addedUsPerRoundTrip: number;
  /** Added µs of each round against the direct run of the same round (rounds where both completed). */
  pairedAddedUs: number[];
}

/** A target and whether this run met it. */
export interface Verdict {
  target: string;
  measured: string;
  pass: boolean;
}

/** Targets: the gateway must keep up with PgBouncer under load and add little latency to a single client. */
export const TARGET_MAX_ADDED_US_AT_ONE_CLIENT = 60;
export const TARGET_CLIENTS_UNDER_LOAD = 8;

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  // Both middle values exist: mid - 1 ≥ 0 when the length is even and non-zero.
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function find(measurements: readonly Measurement[], system: SystemId, clients: number, round: number): Measurement | undefined {
  return measurements.find((m) => m.system === system && m.clients === clients && m.round === round);
}

/** Summarises the runs per system and client count. */
export function summarize(measurements: readonly Measurement[], clientCounts: readonly number[]): SummaryRow[] {
  const rounds = [...new Set(measurements.map((m) => m.round))].sort((a, b) => a - b);
  const rows: SummaryRow[] = [];
  for (const clients of clientCounts) {
    const directTps = rounds
      .map((round) => find(measurements, 'direct', clients, round))
      .filter(succeeded)
      .map((m) => m.result.tps);
    const directMedian = median(directTps);
    for (const system of SYSTEMS) {
      const tpsByRound: Array<number | undefined> = [];
      const latencies: number[] = [];
      const proxyCpu: number[] = [];
      const pairedAddedUs: number[] = [];
      let failedRuns = 0;
      let firstFailure: string | undefined;
      for (const round of rounds) {
        const run = find(measurements, system, clients, round);
        if (!run) continue;
        if (!succeeded(run)) {
          failedRuns++;
          firstFailure ??= run.failure;
          tpsByRound.push(undefined);
          continue;
        }
        tpsByRound.push(run.result.tps);
        latencies.push(run.result.latencyMs);
        if (run.proxyCpuUs !== undefined) proxyCpu.push(run.proxyCpuUs);
        const direct = find(measurements, 'direct', clients, round);
        if (succeeded(direct)) pairedAddedUs.push((clients * 1e6) / run.result.tps - (clients * 1e6) / direct.result.tps);
      }
      if (tpsByRound.length === 0) continue;
      const medianTps = median(tpsByRound.filter((tps): tps is number => tps !== undefined));
      rows.push({
        system,
        clients,
        tpsByRound,
        failedRuns,
        firstFailure,
        medianTps,
        ratioToDirect: medianTps / directMedian,
        medianLatencyMs: median(latencies),
        medianProxyCpuUs: median(proxyCpu),
        addedUsPerRoundTrip: (clients * 1e6) / medianTps - (clients * 1e6) / directMedian,
        pairedAddedUs,
      });
    }
  }
  return rows;
}

function row(rows: readonly SummaryRow[], system: SystemId, clients: number): SummaryRow | undefined {
  return rows.find((r) => r.system === system && r.clients === clients);
}

/** How many rounds `a` had at least the TPS of `b` (same round, same client count). */
function roundsAhead(measurements: readonly Measurement[], a: SystemId, b: SystemId, clients: number): [number, number] {
  let ahead = 0;
  let total = 0;
  for (const runA of measurements.filter((m) => m.system === a && m.clients === clients)) {
    const runB = find(measurements, b, clients, runA.round);
    if (!succeeded(runB)) continue;
    total++;
    if (!succeeded(runA)) continue;
    if (runA.result.tps >= runB.result.tps) ahead++;
  }
  return [ahead, total];
}

const fmtTps = (tps: number | undefined): string =>
  tps === undefined ? 'FAILED' : Number.isFinite(tps) ? Math.round(tps).toLocaleString('en-US') : 'n/a';
const fmtUs = (us: number): string => (Number.isFinite(us) ? `${us >= 0 ? '+' : ''}${us.toFixed(1)}` : 'n/a');

/** Why a row cannot pass however fast its good runs were, or undefined when every run counted. */
function failureNote(r: SummaryRow): string | undefined {
  if (r.failedRuns === 0) return undefined;
  return `${r.failedRuns} of ${r.tpsByRound.length} runs failed (${r.firstFailure ?? 'no reason recorded'})`;
}

/**
 * Judges `system` against the targets. A missing measurement or a failed run is a MISS, never a pass: a proxy that
 * refuses statements under load has not met a throughput target, whatever TPS it reached before refusing.
 */
export function judge(rows: readonly SummaryRow[], measurements: readonly Measurement[], system: SystemId = 'gateway'): Verdict[] {
  const verdicts: Verdict[] = [];
  const loaded = TARGET_CLIENTS_UNDER_LOAD;
  const gwLoaded = row(rows, system, loaded);
  const bouncerLoaded = row(rows, 'pgbouncer', loaded);
  const loadTarget = `${system} TPS ≥ pgbouncer TPS at -c ${loaded}`;
  if (gwLoaded && bouncerLoaded) {
    const [ahead, total] = roundsAhead(measurements, system, 'pgbouncer', loaded);
    const failures = [failureNote(gwLoaded), failureNote(bouncerLoaded) && `pgbouncer: ${failureNote(bouncerLoaded)}`]
      .filter((note): note is string => note !== undefined);
    const compared = Number.isFinite(gwLoaded.medianTps) && Number.isFinite(bouncerLoaded.medianTps)
      ? `median ${fmtTps(gwLoaded.medianTps)} vs ${fmtTps(bouncerLoaded.medianTps)} TPS ` +
        `(${((gwLoaded.medianTps / bouncerLoaded.medianTps) * 100).toFixed(1)} % of pgbouncer; ` +
        `${system} ahead in ${ahead} of ${total} rounds)`
      : 'no completed run to compare';
    verdicts.push({
      target: loadTarget,
      measured: [compared, ...failures].join('; '),
      pass: failures.length === 0 && gwLoaded.medianTps >= bouncerLoaded.medianTps,
    });
  } else {
    verdicts.push({ target: loadTarget, measured: 'not measured', pass: false });
  }
  const gwSingle = row(rows, system, 1);
  const bouncerSingle = row(rows, 'pgbouncer', 1);
  const latencyTarget = `${system} adds ≤ ${TARGET_MAX_ADDED_US_AT_ONE_CLIENT} µs per round trip at -c 1`;
  if (gwSingle) {
    const reference = bouncerSingle ? `; pgbouncer adds ${fmtUs(bouncerSingle.addedUsPerRoundTrip)} µs` : '';
    const failure = failureNote(gwSingle);
    const within = gwSingle.pairedAddedUs.filter((us) => us <= TARGET_MAX_ADDED_US_AT_ONE_CLIENT).length;
    const paired = gwSingle.pairedAddedUs.length;
    verdicts.push({
      target: latencyTarget,
      measured:
        `${fmtUs(gwSingle.addedUsPerRoundTrip)} µs per round trip vs direct (from median TPS)${reference}; ` +
        `within target in ${within} of ${paired} rounds${failure ? `; ${failure}` : ''}`,
      pass: failure === undefined && gwSingle.addedUsPerRoundTrip <= TARGET_MAX_ADDED_US_AT_ONE_CLIENT,
    });
  } else {
    verdicts.push({ target: latencyTarget, measured: 'not measured', pass: false });
  }
  return verdicts;
}

const HEADERS = [
  'system',
  'clients',
  'median TPS',
  'TPS per round',
  'vs direct',
  'median latency',
  'added µs / round trip',
  'proxy CPU µs / query',
];

function tableCells(r: SummaryRow): string[] {
  return [
    r.system,
    String(r.clients),
    fmtTps(r.medianTps),
    r.tpsByRound.map(fmtTps).join(' / '),
    r.system === 'direct' ? '1.00×' : Number.isFinite(r.ratioToDirect) ? `${r.ratioToDirect.toFixed(2)}×` : 'n/a',
    Number.isFinite(r.medianLatencyMs) ? `${r.medianLatencyMs.toFixed(3)} ms` : 'n/a',
    r.system === 'direct' ? '—' : fmtUs(r.addedUsPerRoundTrip),
    Number.isFinite(r.medianProxyCpuUs) ? r.medianProxyCpuUs.toFixed(1) : '—',
  ];
}

/**
 * A table as aligned plain text (names left, numbers right) for the terminal, or as GitHub Markdown. Every bench
 * part renders its table through this.
 */
export function renderTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>, markdown: boolean): string {
  if (markdown) {
    const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
    return [line(headers), line(headers.map((_, i) => (i === 0 ? ':--' : '--:'))), ...rows.map(line)].join('\n');
  }
  const widths = headers.map((_, i) => Math.max(...[headers, ...rows].map((cells) => (cells[i] ?? '').length)));
  const pad = (cells: readonly string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  return [pad(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(pad)].join('\n');
}

/** The comparison table as aligned plain text, for the terminal. */
export function renderTextTable(rows: readonly SummaryRow[]): string {
  return renderTable(HEADERS, rows.map(tableCells), false);
}

/** The comparison table as GitHub Markdown. */
export function renderMarkdownTable(rows: readonly SummaryRow[]): string {
  return renderTable(HEADERS, rows.map(tableCells), true);
}

export function renderVerdicts(verdicts: readonly Verdict[], markdown: boolean): string {
  return verdicts
    .map((v) => {
      const mark = v.pass ? 'PASS' : 'MISS';
      return markdown ? `- **${mark}** — ${v.target}: ${v.measured}` : `${mark}  ${v.target}: ${v.measured}`;
    })
    .join('\n');
}

const FILE_HEADER = [
  '# Benchmarks',
  '',
  'Each section below is written by the command named in it; rerunning that command regenerates its section and',
  'leaves the others alone.',
  '',
].join('\n');

/**
 * Replaces the `## <title>` section of a Markdown document (up to the next `## ` heading outside a code fence), or
 * appends it when absent. Creates the document header when there is no document yet.
 */
export function upsertSection(document: string | undefined, title: string, body: string): string {
  const heading = `## ${title}`;
  const section = `${heading}\n\n${body.trim()}\n`;
  if (document === undefined || document.trim() === '') return `${FILE_HEADER}\n${section}`;
  const lines = document.split('\n');
  let start = -1;
  let end = lines.length;
  let inFence = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    if (inFence || !line.startsWith('## ')) continue;
    if (start === -1 && line.trim() === heading) start = i;
    else if (start !== -1) {
      end = i;
      break;
    }
  }
  if (start === -1) return `${document.trimEnd()}\n\n${section}`;
  const before = lines.slice(0, start).join('\n').trimEnd();
  const after = lines.slice(end).join('\n').trim();
  return `${before ? `${before}\n\n` : ''}${section}${after ? `\n${after}\n` : ''}`;
}

/**
 * What the runtime costs and what the gateway's own work costs, per client count: the bare Node.js relay's TPS and
 * CPU per query against PgBouncer's, and the gateway's CPU per query above the relay's. Empty without those rows.
 */
export function floorLines(rows: readonly SummaryRow[]): string[] {
  const lines: string[] = [];
  for (const clients of [...new Set(rows.map((row) => row.clients))]) {
    const at = (system: SystemId): SummaryRow | undefined => rows.find((row) => row.system === system && row.clients === clients);
    const relay = at('node-relay');
    const bouncer = at('pgbouncer');
    const gateway = at('gateway');
    if (!relay) continue;
    const parts: string[] = [];
    if (bouncer) {
      parts.push(`the bare Node.js relay runs at ${(relay.medianTps / bouncer.medianTps).toFixed(2)}× PgBouncer's TPS with ` +
        `${relay.medianProxyCpuUs.toFixed(1)} vs ${bouncer.medianProxyCpuUs.toFixed(1)} µs CPU per query`);
    }
    if (gateway) {
      parts.push(`the gateway spends ${(gateway.medianProxyCpuUs - relay.medianProxyCpuUs).toFixed(1)} µs per query more than the relay ` +
        `(${gateway.medianProxyCpuUs.toFixed(1)} µs: its own work, parsing, deciding, auditing)`);
    }
    if (parts.length > 0) lines.push(`-c ${clients}: ${parts.join('; ')}.`);
  }
  return lines;
}
