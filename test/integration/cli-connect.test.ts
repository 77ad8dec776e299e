/**
 * `dbgate connect` as a user and a script run it: the real executable, the automation contract's JSON line,
 * launching a client, exit codes, and the tunnel's refusals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProcess, type Finished } from '../support/processes.js';
import { LocalTunnel } from '../../src/cli/tunnel/local-tunnel.js';
import { discoverGateway } from '../../src/cli/gateway-discovery.js';
import { mintCredential, sharedStack } from '../support/stack.js';


function dbgate(args: string[], env: NodeJS.ProcessEnv): Promise<Finished> {
  return runProcess(process.execPath, ['bin/dbgate', ...args], env);
}

/** psql against a libpq URI, with no PG* variables leaking in from the test environment. */
function psqlUri(uri: string, sql: string): Promise<Finished> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG')));
  return runProcess('psql', ['-X', '-At', uri, '-c', sql], env);
}

describe('dbgate connect', () => {
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    const credential = await mintCredential('carol', { groups: ['security'] });
    env = { ...process.env, DBGATE_GATEWAY: sharedStack().gateway.apiUrl, DBGATE_CREDENTIAL: credential };
  });

  describe('--json (automation contract)', () => {
    let child: ChildProcess;
    let ready: { host: string; port: number; user: string; password: string; database: string; uri: string };
    const extraStdout: string[] = [];

    beforeAll(async () => {
      child = spawn(process.execPath, ['bin/dbgate', 'connect', 'prod-orders', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      const lines = createInterface({ input: child.stdout! });
      ready = await new Promise((resolve, reject) => {
        lines.once('line', (line) => {
          lines.on('line', (more) => extraStdout.push(more));
          resolve(JSON.parse(line) as typeof ready);
        });
        child.once('exit', (code) => reject(new Error(`dbgate connect exited with ${code}`)));
      });
    });

    afterAll(() => {
      child?.kill('SIGKILL');
    });

    it('prints exactly one JSON line with host, port, user, password, database and uri', () => {
      expect(Object.keys(ready).sort()).toEqual(['database', 'host', 'password', 'port', 'uri', 'user']);
      expect(ready.host).toBe('127.0.0.1');
      expect(ready.user).toBe('carol');
      expect(ready.database).toBe('prod-orders');
      expect(ready.password).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(ready.uri).toBe(`postgres://carol:${ready.password}@127.0.0.1:${ready.port}/prod-orders?sslmode=disable`);
    });

    it('serves psql on the printed URI, as the credential’s identity', async () => {
      const result = await psqlUri(ready.uri, "select current_database() || ' ' || (select count(*) from orders)");
      expect(result.stderr).toBe('');
      expect(result.stdout.trim()).toMatch(/^prod_orders \d+$/);
    });

    it('refuses a local client with the wrong tunnel password, before reaching the gateway', async () => {
      const wrong = ready.uri.replace(ready.password, 'not-the-password');
      const result = await psqlUri(wrong, 'select 1');
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('FATAL:  dbgate: wrong tunnel password');
    });

    it('refuses a database other than its target', async () => {
      const other = ready.uri.replace('/prod-orders?', '/staging?');
      const result = await psqlUri(other, 'select 1');
      expect(result.stderr).toContain('dbgate: this tunnel serves "prod-orders", not "staging"');
    });

    it('closes its port and exits 0 on SIGTERM, having printed nothing else on stdout', async () => {
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(extraStdout).toEqual([]);
      const refused = await new Promise<boolean>((resolve) => {
        const socket = connect(ready.port, '127.0.0.1');
        socket.once('connect', () => { socket.destroy(); resolve(false); });
        socket.once('error', () => resolve(true));
      });
      expect(refused).toBe(true);
    });
  });

  it('launches the command after -- with PG* variables and exits with its exit code', async () => {
    const ok = await dbgate(['connect', 'prod-orders', '--', 'psql', '-X', '-At', '-c', 'select current_database()'], env);
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('prod_orders');
    expect(ok.code).toBe(0);

    const failing = await dbgate(['connect', 'prod-orders', '--', 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-c', 'select 1/0'], env);
    expect(failing.stderr).toContain('ERROR:  division by zero');
    expect(failing.code).toBe(1);
  });

  it('exits 4 with a login hint when there is no credential', async () => {
    const { DBGATE_CREDENTIAL: _omit, ...withoutCredential } = env;
    const result = await dbgate(['connect', 'prod-orders'], withoutCredential);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('dbgate: you are not logged in to a dbgate gateway');
    expect(result.stderr).toContain('hint: run: dbgate login');
  });

  it('exits 4 and says the login expired when the credential has expired', async () => {
    const shortLived = await mintCredential('carol', { ttl: '1s' });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const result = await dbgate(['connect', 'prod-orders'], { ...env, DBGATE_CREDENTIAL: shortLived });
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/your dbgate login expired .* ago - run: dbgate login/);
  });

  it('exits 1 with a clear message when the gateway cannot be reached', async () => {
    const result = await dbgate(['connect', 'prod-orders', '--gateway', 'http://127.0.0.1:9'], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('dbgate: cannot reach the gateway at http://127.0.0.1:9');
    expect(result.stderr).not.toContain('    at '); // no stack trace for a user error
  });

  it('exits 2 on a bad flag value', async () => {
    const result = await dbgate(['connect', 'prod-orders', '--port', 'many'], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('not a port number: many');
  });

  it('refuses to send the credential to a gateway whose certificate does not match the pin', async () => {
    const discovery = await discoverGateway(new URL(sharedStack().gateway.apiUrl));
    const wrongPin = discovery.tls.fingerprint_sha256.replace(/^../, discovery.tls.fingerprint_sha256.startsWith('AA') ? 'BB' : 'AA');
    const tunnel = new LocalTunnel({
      target: 'prod-orders',
      user: 'carol',
      gateway: { host: discovery.pg.host, port: discovery.pg.port, fingerprint256: wrongPin },
      credential: () => {
        throw new Error('the credential must not be requested for an unpinned gateway');
      },
    });
    const { port } = await tunnel.listen();
    try {
      const result = await psqlUri(`postgres://carol:${tunnel.password}@127.0.0.1:${port}/prod-orders?sslmode=disable`, 'select 1');
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("dbgate: the gateway's certificate (SHA-256");
      expect(result.stderr).toContain(`does not match the pinned fingerprint ${wrongPin}`);
    } finally {
      await tunnel.close();
    }
  });
});
