/**
 * Starts what the integration tests share, once per run: a throwaway PostgreSQL 15 cluster and a dev gateway
 * (`bin/dbgate-gateway dev --upstream … --json`, a real child process, exactly as a user or CI script runs it).
 * Test files reach it through `inject('stack')`; files that need a gateway of their own start one in-process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestProject } from 'vitest/node';
import { startPgCluster } from './pg-cluster.js';
import type { SharedStack } from './stack.js';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: SharedStack;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = await startPgCluster({ maxConnections: 400 });
  const stateDir = await mkdtemp(join(tmpdir(), 'dbgate-dev-state-'));
  let gateway: ChildProcess | undefined;
  const stderr: string[] = [];
  try {
    gateway = spawn(process.execPath, [
      'bin/dbgate-gateway', 'dev', '--upstream', cluster.adminUrl, '--state', stateDir,
      '--pg-port', '0', '--api-port', '0', '--idp-port', '0', '--json',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    gateway.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
    const ready = await new Promise<{ pg: string; api: string; idp: string; state: string }>((resolve, reject) => {
      const lines = createInterface({ input: gateway!.stdout! });
      lines.once('line', (line) => resolve(JSON.parse(line) as { pg: string; api: string; idp: string; state: string }));
      gateway!.once('exit', (code) => reject(new Error(`dev gateway exited with ${code}: ${stderr.join('')}`)));
      setTimeout(() => reject(new Error(`dev gateway not ready after 60 s: ${stderr.join('')}`)), 60_000).unref();
    });
    const [pgHost, pgPort] = ready.pg.split(':') as [string, string];
    project.provide('stack', {
      cluster: { host: cluster.host, port: cluster.port, adminUrl: cluster.adminUrl, socketDir: cluster.socketDir },
      gateway: { pgHost, pgPort: Number(pgPort), apiUrl: ready.api, stateDir: ready.state, pid: gateway.pid! },
      idp: {
        issuer: ready.idp,
        agentClientId: 'report-bot',
        agentClientSecret: (await readFile(join(ready.state, 'secrets', 'idp-report-bot-secret'), 'utf8')).trim(),
      },
    });
  } catch (error) {
    gateway?.kill('SIGKILL');
    await cluster.stop();
    throw error;
  }
  return async () => {
    const exited = new Promise((resolve) => gateway!.once('exit', resolve));
    gateway!.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    // The shared gateway's errors (an audit flush that failed, say) explain failures no test can see from outside.
    const errors = stderr.join('').split('\n').filter((line) => line.includes('"level":"error"'));
    if (errors.length > 0) process.stderr.write(`shared dev gateway errors:\n${errors.join('\n')}\n`);
    gateway!.kill('SIGKILL');
    await cluster.stop();
    await rm(stateDir, { recursive: true, force: true });
  };
}
