/**
 * `tsx bench/startup.ts`: how long `node bin/dbgate --help` takes, wall time, as a person at a prompt feels it. The
 * median of 20 runs (after 3 warm-up runs, so the file cache is warm), with hyperfine when it is installed and a
 * spawn loop otherwise; `node -e ''` is measured the same way as the floor no CLI can go below. Target: ≤ 150 ms.
 *
 * Needs a build (bin/dbgate runs dist/). Flags: --runs N (default 20), --no-write (leave BENCHMARKS.md alone).
 * Writes its section "CLI start: dbgate --help" of BENCHMARKS.md.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { upsertSection } from './report.js';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TARGET_MS = 150;
const WARMUP_RUNS = 3;

interface Measurement {
  label: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  runs: number;
  tool: 'hyperfine' | 'spawn loop';
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function hasHyperfine(): boolean {
  return spawnSync('hyperfine', ['--version'], { stdio: 'ignore' }).status === 0;
}

function withHyperfine(label: string, argv: readonly string[], runs: number): Measurement {
  const directory = mkdtempSync(join(tmpdir(), 'dbgate-startup-'));
  try {
    const exported = join(directory, 'result.json');
    const command = argv.map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`).join(' ');
    execFileSync('hyperfine', ['--runs', String(runs), '--warmup', String(WARMUP_RUNS), '--shell=none', '--style', 'none',
      '--export-json', exported, command], { cwd: PROJECT_ROOT, stdio: 'ignore' });
    const result = (JSON.parse(readFileSync(exported, 'utf8')) as { results: Array<{ times: number[] }> }).results[0]!;
    const times = result.times.map((seconds) => seconds * 1000);
    return { label, medianMs: median(times), minMs: Math.min(...times), maxMs: Math.max(...times), runs, tool: 'hyperfine' };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

function withSpawnLoop(label: string, argv: readonly string[], runs: number): Measurement {
  const [file, ...args] = argv as [string, ...string[]];
  const times: number[] = [];
  for (let run = 0; run < WARMUP_RUNS + runs; run += 1) {
    const started = performance.now();
    const result = spawnSync(file, args, { cwd: PROJECT_ROOT, stdio: 'ignore' });
    const elapsed = performance.now() - started;
    if (result.status !== 0) throw new Error(`${argv.join(' ')} exited with ${result.status ?? result.signal}`);
    if (run >= WARMUP_RUNS) times.push(elapsed);
  }
  return { label, medianMs: median(times), minMs: Math.min(...times), maxMs: Math.max(...times), runs, tool: 'spawn loop' };
}

function main(): void {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '20' }, 'no-write': { type: 'boolean', default: false } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: not a positive integer: ${values.runs}`);
  const measure = hasHyperfine() ? withHyperfine : withSpawnLoop;
  const help = measure('dbgate --help', [process.execPath, 'bin/dbgate', '--help'], runs);
  const floor = measure("node -e ''", [process.execPath, '-e', ''], runs);
  for (const m of [help, floor]) {
    console.log(`${m.label.padEnd(16)} median ${m.medianMs.toFixed(0).padStart(4)} ms  (min ${m.minMs.toFixed(0)}, max ${m.maxMs.toFixed(0)}; ${m.runs} runs, ${m.tool})`);
  }
  const verdict = help.medianMs <= TARGET_MS ? 'meets' : 'MISSES';
  console.log(`dbgate --help ${verdict} the target of ≤ ${TARGET_MS} ms (${(help.medianMs - floor.medianMs).toFixed(0)} ms above bare node)`);
  if (values['no-write']) return;
  const file = join(PROJECT_ROOT, 'BENCHMARKS.md');
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: PROJECT_ROOT, encoding: 'utf8' }).stdout.trim();
  const body = [
    `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC at commit ${commit || 'unknown'} with \`npm run bench:startup\``,
    `(\`bench/startup.ts\`): wall time of \`node bin/dbgate --help\`, median of ${runs} runs after ${WARMUP_RUNS} warm-up runs`,
    `(${help.tool}), next to bare \`node -e ''\` as the floor. \`dbgate --help\` imports no command module, so neither`,
    'ink/React, the SQL parser, the OIDC client nor node-postgres load (test/unit/cli-help.test.ts checks that).',
    '',
    '| command | median | min | max |',
    '| :-- | --: | --: | --: |',
    ...[help, floor].map((m) => `| \`${m.label}\` | ${m.medianMs.toFixed(0)} ms | ${m.minMs.toFixed(0)} ms | ${m.maxMs.toFixed(0)} ms |`),
    '',
    `- **${help.medianMs <= TARGET_MS ? 'PASS' : 'MISS'}** — \`dbgate --help\` ≤ ${TARGET_MS} ms: median ${help.medianMs.toFixed(0)} ms ` +
      `(${(help.medianMs - floor.medianMs).toFixed(0)} ms above bare node)`,
  ].join('\n');
  writeFileSync(file, upsertSection(existsSync(file) ? readFileSync(file, 'utf8') : undefined, 'CLI start: dbgate --help', body));
  console.log(`wrote "CLI start: dbgate --help" in ${file}`);
}

main();
