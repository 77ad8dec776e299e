/**
 * Turns pgbench runs into the comparison table, the verdicts against the targets, and the BENCHMARKS.md section.
 *
 * Every comparison is paired by round: the systems run back to back within a round, so a ratio or a difference
 * taken inside a round cancels most of the drift a shared machine has between rounds. The medians of those paired
 * values are what is quoted.
 */
import type { PgbenchResult } from './pgbench.js';

/** The systems, in the order they run within each round. */
export const SYSTEMS = ['direct', 'pgbouncer', 'gateway', 'gateway-tls'] as const;
export type SystemId = (typeof SYSTEMS)[number];

/** What each system is, for the table legend. */
export const SYSTEM_DESCRIPTIONS: Record<SystemId, string> = {
  direct: 'pgbench → PostgreSQL over TCP loopback, SCRAM login, no TLS',
  pgbouncer: 'pgbench → PgBouncer (session pooling) → PostgreSQL, no TLS',
  gateway: 'pgbench → dbgate gateway (`dbgate-gateway dev`, credential login as alice, every statement audited) → PostgreSQL, `sslmode=disable`',
  'gateway-tls': 'the same gateway with `sslmode=require` (TLS between pgbench and the gateway)',
};

/** One pgbench run. */
export interface Measurement {
  round: number;
  system: SystemId;
  clients: number;
  result: PgbenchResult;
}

/** One line of the comparison table. */
export interface SummaryRow {
  system: SystemId;
  clients: number;
  /** TPS of each round, in round order. */
  tpsByRound: number[];
  medianTps: number;
  /** Median over rounds of tps(system) / tps(direct) in the same round. */
  ratioToDirect: number;
  medianLatencyMs: number;
  /**
   * Median over rounds of clients·10⁶/tps(system) − clients·10⁶/tps(direct), in µs: the time each round trip
   * gains through this system. At one client that is 10⁶/tps_sys − 10⁶/tps_direct; at more clients it is the
   * difference of the average latencies and includes queueing for the machine's CPUs.
   */
  addedUsPerRoundTrip: number;
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

/** Summarises the runs per system and client count, comparing each round with the direct run of that round. */
export function summarize(measurements: readonly Measurement[], clientCounts: readonly number[]): SummaryRow[] {
  const rounds = [...new Set(measurements.map((m) => m.round))].sort((a, b) => a - b);
  const rows: SummaryRow[] = [];
  for (const clients of clientCounts) {
    for (const system of SYSTEMS) {
      const tpsByRound: number[] = [];
      const latencies: number[] = [];
      const ratios: number[] = [];
      const added: number[] = [];
      for (const round of rounds) {
        const run = find(measurements, system, clients, round);
        if (!run) continue;
        tpsByRound.push(run.result.tps);
        latencies.push(run.result.latencyMs);
        const direct = find(measurements, 'direct', clients, round);
        if (!direct) continue;
        ratios.push(run.result.tps / direct.result.tps);
        added.push((clients * 1e6) / run.result.tps - (clients * 1e6) / direct.result.tps);
      }
      if (tpsByRound.length === 0) continue;
      rows.push({
        system,
        clients,
        tpsByRound,
        medianTps: median(tpsByRound),
        ratioToDirect: median(ratios),
        medianLatencyMs: median(latencies),
        addedUsPerRoundTrip: median(added),
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
    if (!runB) continue;
    total++;
    if (runA.result.tps >= runB.result.tps) ahead++;
  }
  return [ahead, total];
}

const fmtTps = (tps: number): string => Math.round(tps).toLocaleString('en-US');
const fmtUs = (us: number): string => `${us >= 0 ? '+' : ''}${us.toFixed(1)}`;

/**
 * Judges `system` against the targets. A missing measurement is a MISS, never a pass.
 */
export function judge(rows: readonly SummaryRow[], measurements: readonly Measurement[], system: SystemId = 'gateway'): Verdict[] {
  const verdicts: Verdict[] = [];
  const loaded = TARGET_CLIENTS_UNDER_LOAD;
  const gwLoaded = row(rows, system, loaded);
  const bouncerLoaded = row(rows, 'pgbouncer', loaded);
  if (gwLoaded && bouncerLoaded) {
    const [ahead, total] = roundsAhead(measurements, system, 'pgbouncer', loaded);
    verdicts.push({
      target: `${system} TPS ≥ pgbouncer TPS at -c ${loaded}`,
      measured:
        `median ${fmtTps(gwLoaded.medianTps)} vs ${fmtTps(bouncerLoaded.medianTps)} TPS ` +
        `(${((gwLoaded.medianTps / bouncerLoaded.medianTps) * 100).toFixed(1)} % of pgbouncer; ` +
        `${system} ahead in ${ahead} of ${total} rounds)`,
      pass: gwLoaded.medianTps >= bouncerLoaded.medianTps,
    });
  } else {
    verdicts.push({ target: `${system} TPS ≥ pgbouncer TPS at -c ${loaded}`, measured: 'not measured', pass: false });
  }
  const gwSingle = row(rows, system, 1);
  const bouncerSingle = row(rows, 'pgbouncer', 1);
  const target = `${system} adds ≤ ${TARGET_MAX_ADDED_US_AT_ONE_CLIENT} µs per round trip at -c 1`;
  if (gwSingle) {
    const reference = bouncerSingle ? `; pgbouncer adds ${fmtUs(bouncerSingle.addedUsPerRoundTrip)} µs` : '';
    verdicts.push({
      target,
      measured: `median ${fmtUs(gwSingle.addedUsPerRoundTrip)} µs per round trip vs direct${reference}`,
      pass: gwSingle.addedUsPerRoundTrip <= TARGET_MAX_ADDED_US_AT_ONE_CLIENT,
    });
  } else {
    verdicts.push({ target, measured: 'not measured', pass: false });
  }
  return verdicts;
}

const HEADERS = ['system', 'clients', 'median TPS', 'TPS per round', 'vs direct', 'median latency', 'added µs / round trip'];

function tableCells(r: SummaryRow): string[] {
  return [
    r.system,
    String(r.clients),
    fmtTps(r.medianTps),
    r.tpsByRound.map(fmtTps).join(' / '),
    r.system === 'direct' ? '1.00×' : `${r.ratioToDirect.toFixed(2)}×`,
    `${r.medianLatencyMs.toFixed(3)} ms`,
    r.system === 'direct' ? '—' : fmtUs(r.addedUsPerRoundTrip),
  ];
}

/** The comparison table as aligned plain text, for the terminal. */
export function renderTextTable(rows: readonly SummaryRow[]): string {
  const lines = [HEADERS, ...rows.map(tableCells)];
  const widths = HEADERS.map((_, i) => Math.max(...lines.map((cells) => (cells[i] ?? '').length)));
  // Left-align the names, right-align the numbers.
  const pad = (cells: string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [pad(HEADERS), rule, ...rows.map((r) => pad(tableCells(r)))].join('\n');
}

/** The comparison table as GitHub Markdown. */
export function renderMarkdownTable(rows: readonly SummaryRow[]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  const align = HEADERS.map((_, i) => (i === 0 ? ':--' : '--:'));
  return [line(HEADERS), line(align), ...rows.map((r) => line(tableCells(r)))].join('\n');
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
