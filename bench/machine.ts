/** The machine and the code measured, for the record in BENCHMARKS.md. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { pgBinDir } from '../test/support/pg-cluster.js';
import { PROJECT_ROOT, firstLine } from './gateway-process.js';
import { pgbenchBin } from './pgbench.js';

export interface MachineInfo {
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

export function describeMachine(): MachineInfo {
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
  let dirty: string[] = [];
  try {
    dirty = execFileSync('git', ['-C', PROJECT_ROOT, 'status', '--porcelain', '--', 'src', 'bin'], { encoding: 'utf8' })
      .split('\n').map((line) => line.slice(3).trim()).filter(Boolean);
  } catch {
    // Not a git checkout: the commit already says unknown.
  }
  // dist/ is built from the working tree, so name what differed from the commit.
  const shown = dirty.slice(0, 12).map((path) => `\`${path}\``).join(', ');
  const more = dirty.length > 12 ? ` and ${dirty.length - 12} more` : '';
  return {
    revision: dirty.length === 0 ? commit : `${commit} with uncommitted changes in ${dirty.length} path(s) under src/ or bin/ (${shown}${more})`,
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

export const formatLoad = (): string => loadavg().map((n) => n.toFixed(2)).join(' / ');

/** The machine lines every section repeats. */
export function machineLines(machine: MachineInfo, loadBefore: string, loadAfter: string, when: string): string[] {
  return [
    `- ${machine.nproc} CPUs: ${machine.cpuModel}; ${machine.memory} RAM; ${machine.kernel}`,
    `- Node ${machine.node}; ${machine.postgres}; ${machine.pgbench}; ${machine.pgbouncer}`,
    `- gateway code: ${machine.revision}`,
    `- load average (1/5/15 min): ${loadBefore} before ${when}, ${loadAfter} after`,
  ];
}
