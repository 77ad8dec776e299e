/**
 * "policy on vs off": the same pgbench select-only workload through the same gateway, once as an identity whose every
 * statement the policy decides `mask` (its result rows are inspected), once on the lightest policy path (an admin
 * grant with no rules: `allow`, rows stream untouched). Medians over alternating rounds, as in report.ts.
 */
import type { PgbenchResult } from './pgbench.js';
import { renderTable, median, type Verdict } from './report.js';

export const POLICY_MODES = ['policy-off', 'policy-on'] as const;
export type PolicyMode = (typeof POLICY_MODES)[number];

/** Target: the policy deciding and inspecting costs at most 10 % of throughput. */
export const TARGET_POLICY_RATIO = 0.9;

export type PolicyMeasurement = {
  round: number;
  mode: PolicyMode;
  clients: number;
  /** Gateway CPU µs per transaction during the run. */
  proxyCpuUs?: number | undefined;
} & ({ result: PgbenchResult; failure?: undefined } | { result?: undefined; failure: string });

export interface PolicyRow {
  mode: PolicyMode;
  clients: number;
  tpsByRound: Array<number | undefined>;
  failedRuns: number;
  firstFailure: string | undefined;
  medianTps: number;
  medianLatencyMs: number;
  medianProxyCpuUs: number;
  /** medianTps / medianTps(policy-off) at the same client count. */
  ratioToOff: number;
  /** on/off TPS of each round where both completed (policy-off rows: empty). */
  pairedRatios: number[];
}

export function summarizePolicy(measurements: readonly PolicyMeasurement[], clientCounts: readonly number[]): PolicyRow[] {
  const rounds = [...new Set(measurements.map((m) => m.round))].sort((a, b) => a - b);
  const find = (mode: PolicyMode, clients: number, round: number): PolicyMeasurement | undefined =>
    measurements.find((m) => m.mode === mode && m.clients === clients && m.round === round);
  const rows: PolicyRow[] = [];
  for (const clients of clientCounts) {
    const offTps = rounds.flatMap((round) => {
      const run = find('policy-off', clients, round);
      return run?.result ? [run.result.tps] : [];
    });
    for (const mode of POLICY_MODES) {
      const tpsByRound: Array<number | undefined> = [];
      const latencies: number[] = [];
      const cpu: number[] = [];
      const pairedRatios: number[] = [];
      let failedRuns = 0;
      let firstFailure: string | undefined;
      for (const round of rounds) {
        const run = find(mode, clients, round);
        if (!run) continue;
        if (!run.result) {
          failedRuns++;
          firstFailure ??= run.failure;
          tpsByRound.push(undefined);
          continue;
        }
        tpsByRound.push(run.result.tps);
        latencies.push(run.result.latencyMs);
        if (run.proxyCpuUs !== undefined) cpu.push(run.proxyCpuUs);
        const off = find('policy-off', clients, round);
        if (mode === 'policy-on' && off?.result) pairedRatios.push(run.result.tps / off.result.tps);
      }
      if (tpsByRound.length === 0) continue;
      const medianTps = median(tpsByRound.filter((t): t is number => t !== undefined));
      rows.push({
        mode,
        clients,
        tpsByRound,
        failedRuns,
        firstFailure,
        medianTps,
        medianLatencyMs: median(latencies),
        medianProxyCpuUs: median(cpu),
        ratioToOff: medianTps / median(offTps),
        pairedRatios,
      });
    }
  }
  return rows;
}

const fmtTps = (tps: number | undefined): string =>
  tps === undefined ? 'FAILED' : Number.isFinite(tps) ? Math.round(tps).toLocaleString('en-US') : 'n/a';

export function judgePolicy(rows: readonly PolicyRow[], clientCounts: readonly number[]): Verdict[] {
  return clientCounts.map((clients) => {
    const target = `policy-on TPS ≥ ${TARGET_POLICY_RATIO} × policy-off TPS at -c ${clients}`;
    const on = rows.find((r) => r.mode === 'policy-on' && r.clients === clients);
    const off = rows.find((r) => r.mode === 'policy-off' && r.clients === clients);
    if (!on || !off) return { target, measured: 'not measured', pass: false };
    const failures = [on, off]
      .filter((r) => r.failedRuns > 0)
      .map((r) => `${r.mode}: ${r.failedRuns} of ${r.tpsByRound.length} runs failed (${r.firstFailure ?? 'no reason recorded'})`);
    const within = on.pairedRatios.filter((ratio) => ratio >= TARGET_POLICY_RATIO).length;
    // When the gateway's CPU is the bottleneck, throughput goes as 1/CPU per query: a second, less noisy reading.
    const cpu = Number.isFinite(on.medianProxyCpuUs) && Number.isFinite(off.medianProxyCpuUs)
      ? `; gateway CPU ${on.medianProxyCpuUs.toFixed(1)} vs ${off.medianProxyCpuUs.toFixed(1)} µs/query ` +
        `(off/on = ${(off.medianProxyCpuUs / on.medianProxyCpuUs).toFixed(2)}×)`
      : '';
    return {
      target,
      measured:
        `median ${fmtTps(on.medianTps)} vs ${fmtTps(off.medianTps)} TPS = ${on.ratioToOff.toFixed(2)}× ` +
        `(within target in ${within} of ${on.pairedRatios.length} rounds: ${on.pairedRatios.map((r) => `${r.toFixed(2)}×`).join(', ')})${cpu}` +
        `${failures.length > 0 ? `; ${failures.join('; ')}` : ''}`,
      pass: failures.length === 0 && on.ratioToOff >= TARGET_POLICY_RATIO,
    };
  });
}

const HEADERS = ['mode', 'clients', 'median TPS', 'TPS per round', 'on / off', 'median latency', 'gateway CPU µs / query'];

function cells(r: PolicyRow, labels: Record<PolicyMode, string>): string[] {
  return [
    labels[r.mode],
    String(r.clients),
    fmtTps(r.medianTps),
    r.tpsByRound.map(fmtTps).join(' / '),
    r.mode === 'policy-off' ? '1.00×' : Number.isFinite(r.ratioToOff) ? `${r.ratioToOff.toFixed(2)}×` : 'n/a',
    Number.isFinite(r.medianLatencyMs) ? `${r.medianLatencyMs.toFixed(3)} ms` : 'n/a',
    Number.isFinite(r.medianProxyCpuUs) ? r.medianProxyCpuUs.toFixed(1) : '—',
  ];
}

export function renderPolicyTable(rows: readonly PolicyRow[], labels: Record<PolicyMode, string>, markdown: boolean): string {
  return renderTable(HEADERS, rows.map((r) => cells(r, labels)), markdown);
}
