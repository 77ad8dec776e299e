/**
 * Reads a V8 `.cpuprofile` (written by `node --cpu-prof`) and ranks where the process spent its CPU time itself
 * (self time), by function and by source file, leaving idle time out.
 *
 * @see https://chromedevtools.github.io/devtools-protocol/tot/Profiler/#type-Profile
 */
import { readFile } from 'node:fs/promises';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTimeEntry {
  name: string;
  selfMs: number;
  /** Share of the busy (non-idle) time. */
  share: number;
}

export interface SelfTimeReport {
  busyMs: number;
  idleMs: number;
  byFunction: SelfTimeEntry[];
  byFile: SelfTimeEntry[];
}

/** Shortens a script URL to what identifies it: the package for dependencies, the path below the project otherwise. */
function shortFile(url: string, projectRoot: string): string {
  if (url === '') return '(native / V8)';
  if (url.startsWith('node:')) return url;
  const path = url.replace(/^file:\/\//, '');
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(path);
  if (inModules) return `${inModules[1]}/${inModules[2]}`;
  return path.startsWith(`${projectRoot}/`) ? path.slice(projectRoot.length + 1) : path;
}

function rank(totals: Map<string, number>, busyMs: number, limit: number): SelfTimeEntry[] {
  return [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([name, selfMs]) => ({ name, selfMs, share: busyMs > 0 ? selfMs / busyMs : 0 }));
}

/** Self time per function and per file of one profile. */
export async function readSelfTime(profilePath: string, projectRoot: string, limit = 25): Promise<SelfTimeReport> {
  const profile = JSON.parse(await readFile(profilePath, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let idleMs = 0;
  let busyMs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = nodes.get(profile.samples[i] ?? -1);
    // timeDeltas[i] is the time since the previous sample (µs); charge it to this sample's function.
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    busyMs += ms;
    const file = shortFile(url, projectRoot);
    const name = url === '' ? functionName || '(anonymous)' : `${functionName || '(anonymous)'}  ${file}:${lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + ms);
    byFile.set(file, (byFile.get(file) ?? 0) + ms);
  }
  return { busyMs, idleMs, byFunction: rank(byFunction, busyMs, limit), byFile: rank(byFile, busyMs, limit) };
}

/** The report as plain text for the terminal. */
export function renderSelfTime(report: SelfTimeReport): string {
  const line = (e: SelfTimeEntry): string =>
    `${e.selfMs.toFixed(0).padStart(8)} ms  ${(e.share * 100).toFixed(1).padStart(5)} %  ${e.name}`;
  return [
    `busy ${report.busyMs.toFixed(0)} ms, idle ${report.idleMs.toFixed(0)} ms`,
    '',
    'top self time by function:',
    ...report.byFunction.map(line),
    '',
    'self time by file:',
    ...report.byFile.map(line),
  ].join('\n');
}
