/**
 * The gateway as a child process, the way an operator runs it (`dbgate-gateway dev --upstream …`), credentials minted
 * with its CLI, and what /proc says about a process (CPU time, resident memory, the listener of a port).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const GATEWAY_BIN = join(PROJECT_ROOT, 'bin', 'dbgate-gateway');
const GATEWAY_READY_TIMEOUT_MS = 60_000;
const GATEWAY_STOP_TIMEOUT_MS = 15_000;

export interface GatewayProcess {
  pg: { host: string; port: number };
  /** The gateway's own process (node), whose CPU time and memory are charged to it. */
  pid: number | undefined;
  stop(): Promise<void>;
  /** The last part of what the gateway wrote to stderr, for error messages. */
  logTail(): string;
}

/**
 * What the first line of `bin/dbgate-gateway` (`#!/usr/bin/env -S NAME=value… node --flag…`) sets: the environment
 * and node flags every way of running the executable gets (systemd, npm's bin link, a shell).
 */
export function gatewayLaunchSettings(): { env: Record<string, string>; nodeFlags: string[] } {
  const firstLine = readFileSync(GATEWAY_BIN, 'utf8').split('\n', 1)[0] ?? '';
  const words = /^#!\/usr\/bin\/env -S (.*)$/.exec(firstLine)?.[1]?.trim().split(/\s+/);
  const nodeAt = words?.indexOf('node') ?? -1;
  if (!words || nodeAt === -1) throw new Error(`unexpected first line in ${GATEWAY_BIN}: ${firstLine}`);
  const env = Object.fromEntries(words.slice(0, nodeAt).map((assignment) => {
    const equals = assignment.indexOf('=');
    return [assignment.slice(0, equals), assignment.slice(equals + 1)];
  }));
  return { env, nodeFlags: words.slice(nodeAt + 1) };
}

/** Starts `dbgate-gateway dev` on `upstreamUrl` with its state in `stateDir`; under `node --cpu-prof` if profileDir. */
export async function startGatewayProcess(upstreamUrl: string, stateDir: string, profileDir: string | undefined): Promise<GatewayProcess> {
  // As its executable runs it (the memory tunables of its first line: see there), with the node running the bench;
  // --cpu-prof cannot go through NODE_OPTIONS, hence node started here rather than the file executed.
  const launch = gatewayLaunchSettings();
  const profileFlags = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const child: ChildProcess = spawn(
    process.execPath,
    [...launch.nodeFlags, ...profileFlags, GATEWAY_BIN, 'dev', '--upstream', upstreamUrl, '--state', stateDir, '--pg-port', '0', '--api-port', '0', '--idp-port', '0', '--json'],
    { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...launch.env } },
  );
  // Keep draining both pipes for the whole run: a full pipe would stall the gateway and the measurement with it.
  let log = '';
  const keep = (chunk: string): void => {
    log = (log + chunk).slice(-16_384);
  };
  child.stderr?.setEncoding('utf8').on('data', keep);
  let exit: string | undefined;
  const exited = new Promise<void>((resolveExit) => {
    child.once('exit', (code, signal) => {
      exit = signal ? `killed by ${signal}` : `exited with code ${String(code)}`;
      resolveExit();
    });
  });
  child.once('error', (error) => {
    exit = `failed to start: ${error.message}`;
  });

  // If this process dies without cleaning up (SIGKILL, a crash), a detached shell stops the gateway and removes its
  // state dir, as test/support/pg-cluster.ts does for the cluster and PgBouncer.
  const watchdog = spawn(
    'sh',
    ['-c', 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -TERM "$2" 2>/dev/null; sleep 3; kill -KILL "$2" 2>/dev/null; rm -rf "$3"',
      'dbgate-bench-watchdog', String(process.pid), String(child.pid), stateDir],
    { detached: true, stdio: 'ignore' },
  );
  watchdog.on('error', () => undefined); // Losing the watchdog only loses leak protection.
  watchdog.unref();

  const stop = async (): Promise<void> => {
    if (watchdog.pid !== undefined) {
      try {
        process.kill(-watchdog.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    if (exit !== undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), GATEWAY_STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };

  const ready = await new Promise<{ pg: string }>((resolveReady, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`the gateway printed no ready line within ${GATEWAY_READY_TIMEOUT_MS / 1000} s`)), GATEWAY_READY_TIMEOUT_MS);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const newline = stdout.indexOf('\n');
      if (newline === -1) return;
      clearTimeout(timer);
      try {
        resolveReady(JSON.parse(stdout.slice(0, newline)) as { pg: string });
      } catch {
        reject(new Error(`the gateway's ready line is not JSON: ${stdout.slice(0, newline)}`));
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the gateway ${exit ?? 'exited'} before it was ready`));
    });
  }).catch(async (error: unknown) => {
    await stop();
    throw new Error(`${(error as Error).message}\n--- gateway stderr ---\n${log.trim()}`, { cause: error });
  });

  const match = /^(.+):(\d+)$/.exec(ready.pg);
  if (!match?.[1] || !match[2]) {
    await stop();
    throw new Error(`unexpected pg address in the gateway's ready line: ${ready.pg}`);
  }
  return { pg: { host: match[1], port: Number(match[2]) }, pid: child.pid, stop, logTail: () => log.trim() };
}

/** Who the bench connects through the gateway as: the demo policy grants by group, so the groups matter. */
export interface BenchIdentity {
  user: string;
  groups: readonly string[];
}

/** Mints a credential for `identity` with the gateway's key (`dbgate-gateway credential mint`). */
export function mintCredential(stateDir: string, identity: BenchIdentity, ttl: string): Promise<string> {
  return new Promise((resolveMint, reject) => {
    execFile(
      process.execPath,
      [GATEWAY_BIN, 'credential', 'mint', '--state', stateDir, '--user', identity.user, '--groups', identity.groups.join(','), '--ttl', ttl],
      { cwd: PROJECT_ROOT, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`credential mint --user ${identity.user} failed: ${error.message}\n${stderr}`, { cause: error }));
        else resolveMint(stdout.trim());
      },
    );
  });
}

/** The distinct error events in the gateway's JSON log, e.g. `audit.write_failed: <reason>`. */
export function gatewayErrorSummary(log: string): string | undefined {
  const events = new Set<string>();
  for (const line of log.split('\n')) {
    try {
      const entry = JSON.parse(line) as { level?: string; event?: string; reason?: string };
      if (entry.level === 'error') events.add(`${entry.event ?? 'error'}${entry.reason ? `: ${entry.reason}` : ''}`);
    } catch {
      // Not a log line (a stack trace, say): the tail is printed in full elsewhere.
    }
  }
  return events.size === 0 ? undefined : [...events].join('; ');
}

export function firstLine(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8' }).split('\n')[0]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const CLOCK_TICKS_PER_SECOND = Number(firstLine('getconf', ['CLK_TCK'])) || 100;

/**
 * CPU time (user + system, all threads) a process has used so far, in µs, from /proc/<pid>/stat; undefined when it
 * cannot be read (not Linux, process gone). Resolution is one clock tick (10 ms), negligible over a 5 s run.
 *
 * @see https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html (fields 14 utime and 15 stime)
 */
export function processCpuUs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: count fields from after its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[14 - 3]);
    const stime = Number(fields[15 - 3]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
    return ((utime + stime) * 1e6) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/**
 * Resident set size of a process in KiB (`VmRSS` of /proc/<pid>/status), or undefined when it cannot be read.
 *
 * @see https://man7.org/linux/man-pages/man5/proc_pid_status.5.html
 */
export function processRssKiB(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] === undefined ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS every `intervalMs` until stopped; `stop` returns the largest sample (KiB) and the count. */
export function sampleRss(pid: number, intervalMs = 100): { stop(): { maxKiB: number | undefined; samples: number } } {
  let maxKiB: number | undefined;
  let samples = 0;
  const take = (): void => {
    const kib = processRssKiB(pid);
    if (kib === undefined) return;
    samples++;
    maxKiB = maxKiB === undefined ? kib : Math.max(maxKiB, kib);
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { maxKiB, samples };
    },
  };
}

/** The pid of the process listening on a local TCP port (PgBouncer runs under runuser, so its child pid is not it). */
export function listenerPid(port: number): number | undefined {
  try {
    const out = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' });
    const pid = /pid=(\d+)/.exec(out)?.[1];
    return pid === undefined ? undefined : Number(pid);
  } catch {
    return undefined;
  }
}
