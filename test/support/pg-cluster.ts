/**
 * Throwaway PostgreSQL (and PgBouncer) instances for integration tests.
 *
 * Every cluster lives in its own mkdtemp directory with a random TCP port, so
 * test files can run in parallel without sharing state, and nothing depends on
 * the distribution's auto-created cluster or its systemd unit.
 */
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A running throwaway PostgreSQL cluster. */
export interface PgCluster {
  /** Always the IPv4 loopback: the server listens nowhere else over TCP. */
  host: string;
  /** Randomly chosen free TCP port. */
  port: number;
  /** Directory holding the server's unix socket (`.s.PGSQL.<port>`); local connections are `trust`. */
  socketDir: string;
  /** The cluster's data directory (PGDATA). */
  dataDir: string;
  /** Name of the bootstrap superuser. */
  superuser: 'postgres';
  /** Random password of the superuser (stored as a SCRAM verifier). */
  superuserPassword: string;
  /** `postgres://postgres:<pw>@127.0.0.1:<port>/postgres` — a SCRAM login over TCP. */
  adminUrl: string;
  /** Stops the server immediately and deletes its directories. Idempotent. */
  stop(): Promise<void>;
}

/** Options for {@link startPgCluster}. */
export interface StartPgClusterOptions {
  /** `max_connections` of the server; default 300. */
  maxConnections?: number;
  /** pg_hba.conf lines inserted after `local all all trust` and before the default host rules. */
  extraHba?: string[];
}

/** A running PgBouncer in front of a {@link PgCluster}. */
export interface PgBouncerInstance {
  /** Always `127.0.0.1`. */
  host: string;
  /** Randomly chosen free TCP port. */
  port: number;
  /** Terminates PgBouncer (SIGTERM, SIGKILL after 3 s) and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** Options for {@link startPgBouncer}. */
export interface StartPgBouncerOptions {
  /** The cluster PgBouncer forwards to (over TCP, SCRAM). */
  upstream: PgCluster;
  /** Database name, used both as the PgBouncer alias and the upstream dbname. */
  database: string;
  /** The only user in PgBouncer's auth_file. */
  user: string;
  /** That user's password, written in plain text so PgBouncer can do SCRAM in both directions. */
  password: string;
  /** Default `session`. */
  poolMode?: 'session' | 'transaction';
  /** `max_client_conn`; default 200. */
  maxClientConn?: number;
  /** `default_pool_size`; default 20. */
  poolSize?: number;
}

const PG_ROOT = '/usr/lib/postgresql';
/** The major the project targets; preferred when several are installed. */
const PREFERRED_MAJOR = '15';
const START_ATTEMPTS = 3;

let cachedBinDir: string | undefined;

/**
 * Locates the PostgreSQL server binaries (initdb, pg_ctl, postgres, ...).
 *
 * Order: `$PG_BIN_DIR` if set, `/usr/lib/postgresql/15/bin`, the newest other
 * major under `/usr/lib/postgresql`, then `pg_config --bindir` (non-Debian
 * layouts). Debian does not put initdb/pg_ctl on PATH, hence the search.
 *
 * @throws Error naming the places searched when no usable directory exists.
 */
export function pgBinDir(): string {
  if (cachedBinDir !== undefined) return cachedBinDir;
  const hasInitdb = (dir: string): boolean => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'));
  const candidates: string[] = [];
  const fromEnv = process.env['PG_BIN_DIR'];
  if (fromEnv) candidates.push(fromEnv);
  candidates.push(join(PG_ROOT, PREFERRED_MAJOR, 'bin'));
  if (existsSync(PG_ROOT)) {
    const majors = readdirSync(PG_ROOT)
      .filter((name) => /^\d+$/.test(name))
      .sort((a, b) => Number(b) - Number(a));
    for (const major of majors) candidates.push(join(PG_ROOT, major, 'bin'));
  }
  for (const dir of candidates) {
    if (hasInitdb(dir)) return (cachedBinDir = dir);
  }
  const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (pgConfig.status === 0) {
    const dir = pgConfig.stdout.trim();
    if (hasInitdb(dir)) return (cachedBinDir = dir);
    candidates.push(dir);
  }
  throw new Error(
    `No PostgreSQL server binaries (initdb + pg_ctl) found. Looked in: ${candidates.join(', ')} and pg_config. ` +
      `Install them (Debian: apt-get install postgresql) or set PG_BIN_DIR.`,
  );
}

/** True when we must drop to the `postgres` OS user: initdb, postgres and pgbouncer all refuse to run as root. */
function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

let cachedPostgresIds: { uid: number; gid: number } | undefined;

function postgresIds(): { uid: number; gid: number } {
  if (cachedPostgresIds) return cachedPostgresIds;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    cachedPostgresIds = { uid, gid };
    return cachedPostgresIds;
  } catch (err) {
    throw new Error(
      'Running as root, so PostgreSQL must run as the "postgres" OS user, but it does not exist ' +
        '(installing the postgresql package creates it).',
      { cause: err },
    );
  }
}

/** Wraps a command in `runuser -u postgres --` when we are root. */
function asServerUser(cmd: string, args: string[]): [string, string[]] {
  return isRoot() ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

/** Hands a path we created to the postgres user, so the server (running as that user) can write it. */
async function giveToServerUser(path: string): Promise<void> {
  if (!isRoot()) return;
  const { uid, gid } = postgresIds();
  await chown(path, uid, gid);
}

interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; the error carries its output because initdb/pg_ctl explain failures there. */
function run(cmd: string, args: string[], cwd: string): Promise<RunResult> {
  const [file, argv] = asServerUser(cmd, args);
  return new Promise((resolve, reject) => {
    execFile(file, argv, { cwd, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const output = `${stdout}\n${stderr}`.trim();
        reject(new Error(`${[file, ...argv].join(' ')} failed: ${err.message}\n${output}`, { cause: err }));
      } else {
        resolve({ stdout, stderr });
      }
    });
  });
}

/**
 * Asks the kernel for a free port. There is an unavoidable window before the
 * server binds it, so callers retry on "address in use".
 */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('could not determine a free port'));
        return;
      }
      const { port } = address;
      server.close(() => resolve(port));
    });
  });
}

async function tail(path: string, lines = 40): Promise<string> {
  try {
    const text = await readFile(path, 'utf8');
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '(log file not readable)';
  }
}

/** URL-safe, so it can go into a connection URL and a config file without escaping. */
function randomPassword(): string {
  return randomBytes(18).toString('base64url');
}

/**
 * Vitest ends fork workers with SIGTERM (then SIGKILL), so neither afterAll nor an
 * 'exit' handler runs when a test file is aborted or times out, and a server it
 * started would outlive the run. A detached shell therefore polls our pid and runs
 * `cleanup` (with `args` as "$@") once we are gone. Returns a function that disarms it.
 */
function startWatchdog(cleanup: string, args: string[]): () => void {
  const script = `parent=$1; shift; while kill -0 "$parent" 2>/dev/null; do sleep 1; done; ${cleanup}`;
  const child = spawn('sh', ['-c', script, 'dbgate-test-watchdog', String(process.pid), ...args], {
    detached: true,
    stdio: 'ignore',
  });
  child.on('error', () => undefined); // Losing the watchdog only loses leak protection.
  child.unref();
  // Own process group (detached), so this also ends its pending `sleep`.
  return () => killGroup(child, 'SIGKILL');
}

/**
 * Creates and starts a fresh PostgreSQL cluster in a temp directory.
 *
 * Layout: `<tmp>/dbgate-pg-XXXXXX/{data,sock,postgres.log}`. Auth: unix socket
 * is `trust`, TCP is `scram-sha-256`; the superuser `postgres` gets a random
 * password. Durability is switched off (fsync, synchronous_commit,
 * full_page_writes) because the data is thrown away.
 *
 * When running as root, the server runs as the `postgres` OS user via `runuser`.
 *
 * @throws Error with the server log tail when the server does not come up.
 */
export async function startPgCluster(opts: StartPgClusterOptions = {}): Promise<PgCluster> {
  const binDir = pgBinDir();
  const maxConnections = opts.maxConnections ?? 300;
  const rootDir = await mkdtemp(join(tmpdir(), 'dbgate-pg-'));
  const dataDir = join(rootDir, 'data');
  const socketDir = join(rootDir, 'sock');
  const logFile = join(rootDir, 'postgres.log');
  const pwFile = join(rootDir, 'pwfile');
  const password = randomPassword();

  try {
    await mkdir(dataDir, { mode: 0o700 });
    await mkdir(socketDir, { mode: 0o700 });
    await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
    for (const p of [rootDir, dataDir, socketDir, pwFile]) await giveToServerUser(p);

    // --no-sync: the cluster is disposable, and fsyncing initdb's files is most of its runtime.
    await run(
      join(binDir, 'initdb'),
      [
        '-D', dataDir,
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '-U', 'postgres',
        `--pwfile=${pwFile}`,
        '-E', 'UTF8',
        '--locale=C',
        '--no-sync',
      ],
      rootDir,
    );
    await rm(pwFile, { force: true });

    const hba = [
      '# Written by test/support/pg-cluster.ts',
      'local all all trust',
      ...(opts.extraHba ?? []),
      'host all all 127.0.0.1/32 scram-sha-256',
      'host all all ::1/128 scram-sha-256',
      '',
    ].join('\n');
    await writeFile(join(dataDir, 'pg_hba.conf'), hba);
    await giveToServerUser(join(dataDir, 'pg_hba.conf'));

    let port = 0;
    let lastError: Error | undefined;
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      port = await freePort();
      // Appended settings win over earlier ones, so retries just append a new port.
      await appendFile(
        join(dataDir, 'postgresql.conf'),
        [
          '',
          '# test/support/pg-cluster.ts',
          `port = ${port}`,
          "listen_addresses = '127.0.0.1'",
          `unix_socket_directories = '${socketDir}'`,
          `max_connections = ${maxConnections}`,
          'password_encryption = scram-sha-256',
          'fsync = off',
          'synchronous_commit = off',
          'full_page_writes = off',
          '',
        ].join('\n'),
      );
      try {
        await run(join(binDir, 'pg_ctl'), ['-w', '-t', '60', '-D', dataDir, '-l', logFile, 'start'], rootDir);
        lastError = undefined;
        break;
      } catch (err) {
        const log = await tail(logFile);
        lastError = new Error(
          `PostgreSQL failed to start (port ${port}, attempt ${attempt}): ${(err as Error).message}\n--- server log tail ---\n${log}`,
          { cause: err },
        );
        // Only a lost race for the port is worth retrying; anything else is a real failure.
        if (!/could not bind|already in use/i.test(log)) break;
        // pg_ctl may not have left a server behind, but make sure before retrying.
        await run(join(binDir, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', 'stop'], rootDir).catch(() => undefined);
      }
    }
    if (lastError) throw lastError;

    const pgCtl = join(binDir, 'pg_ctl');
    const [ctlFile, ctlArgv] = asServerUser(pgCtl, []);
    const disarmWatchdog = startWatchdog(
      'data=$1; root=$2; shift 2; "$@" -D "$data" -m immediate stop >/dev/null 2>&1; rm -rf "$root"',
      [dataDir, rootDir, ctlFile, ...ctlArgv],
    );

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        disarmWatchdog();
        try {
          await run(pgCtl, ['-D', dataDir, '-m', 'immediate', 'stop'], rootDir);
        } catch (err) {
          // A test may have killed the server on purpose; only complain if it is still there.
          if (existsSync(join(dataDir, 'postmaster.pid'))) throw err;
        } finally {
          await rm(rootDir, { recursive: true, force: true });
        }
      })();
      return stopping;
    };

    return {
      host: '127.0.0.1',
      port,
      socketDir,
      dataDir,
      superuser: 'postgres',
      superuserPassword: password,
      adminUrl: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
      stop,
    };
  } catch (err) {
    await run(join(binDir, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', 'stop'], rootDir).catch(() => undefined);
    await rm(rootDir, { recursive: true, force: true });
    throw err;
  }
}

/** Finds the pgbouncer binary; Debian installs it in /usr/sbin, which is not on every PATH. */
function pgBouncerBin(): string {
  for (const candidate of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer']) {
    if (existsSync(candidate)) return candidate;
  }
  const which = spawnSync('which', ['pgbouncer'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  throw new Error('pgbouncer not found (Debian: apt-get install pgbouncer)');
}

/** Quotes a value for PgBouncer's userlist.txt, where `"` is escaped by doubling it. */
function userlistQuote(value: string): string {
  return `"${value.replaceAll('"', '""')}"`;
}

/** Sends a signal to the whole process group (runuser + pgbouncer), ignoring "no such process". */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(path, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts PgBouncer in front of `upstream`, with SCRAM both from the client and to
 * the server (the auth_file holds the plain-text password, which PgBouncer needs
 * to act as a SCRAM client upstream).
 *
 * PgBouncer refuses to run as root, so as root it runs as `postgres` via
 * `runuser`; it is started in its own process group so stop() can kill
 * runuser and pgbouncer together.
 *
 * @throws Error with the PgBouncer log tail if it does not accept TCP connections within 10 s.
 */
export async function startPgBouncer(opts: StartPgBouncerOptions): Promise<PgBouncerInstance> {
  const bin = pgBouncerBin();
  const dir = await mkdtemp(join(tmpdir(), 'dbgate-pgbouncer-'));
  const iniFile = join(dir, 'pgbouncer.ini');
  const authFile = join(dir, 'userlist.txt');
  const logFile = join(dir, 'pgbouncer.log');
  const pidFile = join(dir, 'pgbouncer.pid');
  const host = '127.0.0.1';

  const startOnce = async (port: number): Promise<{ child: ChildProcess } | { error: string; retry: boolean }> => {
    const ini = [
      '[databases]',
      `${opts.database} = host=${opts.upstream.host} port=${opts.upstream.port} dbname=${opts.database}`,
      '',
      '[pgbouncer]',
      `listen_addr = ${host}`,
      `listen_port = ${port}`,
      // Keep the unix socket inside our dir instead of the shared default /tmp.
      `unix_socket_dir = ${dir}`,
      `auth_type = scram-sha-256`,
      `auth_file = ${authFile}`,
      `logfile = ${logFile}`,
      // stop() signals pgbouncer itself rather than runuser (see there), so it needs the real pid.
      `pidfile = ${pidFile}`,
      `pool_mode = ${opts.poolMode ?? 'session'}`,
      `max_client_conn = ${opts.maxClientConn ?? 200}`,
      `default_pool_size = ${opts.poolSize ?? 20}`,
      // node-postgres and JDBC send these; PgBouncer rejects unknown startup parameters otherwise.
      'ignore_startup_parameters = extra_float_digits,options',
      '',
    ].join('\n');
    await writeFile(iniFile, ini, { mode: 0o600 });
    await writeFile(authFile, `${userlistQuote(opts.user)} ${userlistQuote(opts.password)}\n`, { mode: 0o600 });
    for (const p of [dir, iniFile, authFile]) await giveToServerUser(p);
    if (isRoot()) await chmod(dir, 0o700);

    const [file, argv] = asServerUser(bin, [iniFile]);
    const child = spawn(file, argv, { cwd: dir, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr += chunk;
    });
    let exited: string | undefined;
    child.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? `code ${String(code)}`}`;
    });
    child.once('error', (err) => {
      exited = `failed to spawn: ${err.message}`;
    });

    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (exited !== undefined) break;
      if (await canConnect(host, port)) return { child };
      await sleep(50);
    }
    killGroup(child, 'SIGKILL');
    const log = `${await tail(logFile)}\n${stderr}`.trim();
    return {
      error: `pgbouncer on ${host}:${port} ${exited ?? 'did not accept connections within 10 s'}\n--- pgbouncer log tail ---\n${log}`,
      retry: exited !== undefined && /already in use|bind/i.test(log),
    };
  };

  try {
    let child: ChildProcess | undefined;
    let port = 0;
    let lastError = '';
    for (let attempt = 1; attempt <= START_ATTEMPTS && child === undefined; attempt++) {
      port = await freePort();
      const result = await startOnce(port);
      if ('child' in result) child = result.child;
      else {
        lastError = result.error;
        if (!result.retry) break;
      }
    }
    if (child === undefined) throw new Error(lastError);
    const running = child;

    const disarmWatchdog = startWatchdog('kill -KILL "-$1" 2>/dev/null; rm -rf "$2"', [
      String(running.pid),
      dir,
    ]);

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        disarmWatchdog();
        if (running.exitCode === null && running.signalCode === null) {
          const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
          // SIGTERM to runuser makes it forward the signal and then sleep 2 s unconditionally
          // before exiting, so signal pgbouncer directly: runuser then exits as soon as its child does.
          const pid = await readPid(pidFile);
          if (pid === undefined || running.pid === pid) killGroup(running, 'SIGTERM');
          else {
            try {
              process.kill(pid, 'SIGTERM');
            } catch {
              killGroup(running, 'SIGTERM');
            }
          }
          const timer = setTimeout(() => killGroup(running, 'SIGKILL'), 3_000);
          await exited;
          clearTimeout(timer);
        }
        // runuser may have exited before pgbouncer; make sure nothing of the group survives.
        killGroup(running, 'SIGKILL');
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    };

    return { host, port, stop };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
