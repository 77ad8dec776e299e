/**
 * What the shared dev gateway does with clients that are wrong, broken or hostile: each one gets a clear error (or a
 * closed socket for garbage), nothing it started keeps running on the target, and the gateway goes on serving
 * everybody else (checked after every case).
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { DatabaseError, parse, serialize } from 'pg-protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayConfig } from '../../src/gateway/config/load.js';
import { CredentialAuthority, generateSigningKeyJwk } from '../../src/gateway/identity/credentials.js';
import { activeServiceBackends, directClient, eventually, mintCredential, openTunnel, sharedStack } from '../support/stack.js';

type BackendMessage = Parameters<Parameters<typeof parse>[1]>[0];

const TARGET = 'prod-orders';
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const unique = (prefix: string): string => `${prefix}-${randomBytes(4).toString('hex')}`;

function gatewayConfig(user: string, password: string, options: { database?: string; applicationName?: string } = {}): pg.ClientConfig {
  const { pgHost, pgPort } = sharedStack().gateway;
  return {
    host: pgHost,
    port: pgPort,
    user,
    password,
    database: options.database ?? TARGET,
    application_name: options.applicationName ?? 'dbgate-bad-input',
    ssl: false,
    connectionTimeoutMillis: 10_000,
  };
}

/** Connects expecting to be refused; returns the server's error. */
async function refusal(config: pg.ClientConfig): Promise<DatabaseError> {
  const client = new pg.Client(config);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    if (error instanceof DatabaseError) return error;
    throw error;
  }
  await client.end();
  throw new Error(`expected the login as ${config.user} to ${config.host}:${config.port}/${config.database} to be refused`);
}

/** The `sid` claim of a credential (its payload is plain base64url JSON). */
function sessionIdOf(credential: string): string {
  const payload = JSON.parse(Buffer.from(credential.split('.')[1]!, 'base64url').toString('utf8')) as { sid: string };
  return payload.sid;
}

/**
 * How many times the target's server authorized a login carrying `applicationName` (the gateway forwards the
 * client's application_name upstream). Read from the shared cluster's server log with log_connections on, so even
 * an upstream connection that was opened and dropped again at once is counted; pg_stat_activity would miss it.
 * The log sits next to the socket directory (the layout documented on startPgCluster).
 */
async function upstreamLogins(applicationName: string): Promise<number> {
  const log = await readFile(join(dirname(sharedStack().cluster.socketDir), 'postgres.log'), 'utf8');
  return log.split('\n').filter((line) => line.includes('connection authorized:') && line.includes(`application_name=${applicationName}`)).length;
}

/** Sends `bytes` on a fresh connection to the gateway and collects everything it answers until it closes. */
async function sendRaw(bytes: Buffer, timeoutMs = 3_000): Promise<{ closed: boolean; received: Buffer }> {
  const { pgHost, pgPort } = sharedStack().gateway;
  const socket = connect({ host: pgHost, port: pgPort });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(bytes);
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  socket.destroy();
  return { closed, received: Buffer.concat(chunks) };
}

/** Decodes a byte stream of backend messages with node-postgres's parser (independent of the gateway's writers). */
async function decode(bytes: Buffer): Promise<BackendMessage[]> {
  const stream = new PassThrough();
  const messages: BackendMessage[] = [];
  const done = parse(stream, (message) => messages.push(message));
  stream.end(bytes);
  await done;
  return messages;
}

/**
 * A hand-driven protocol client, for what no well-behaved driver would send: it logs in with a cleartext password
 * message (the loopback dev gateway allows plaintext), then sends whatever the case needs.
 */
class WireClient {
  private readonly messages: BackendMessage[] = [];
  private cursor = 0;
  private notify: (() => void) | undefined;
  dataRows = 0;
  closed = false;
  readonly whenClosed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('error', () => {});
    this.whenClosed = new Promise((resolve) => socket.once('close', () => {
      this.closed = true;
      this.notify?.();
      resolve();
    }));
    void parse(socket, (message) => {
      // Rows are only counted: a large result must not pile up in the test process.
      if (message.name === 'dataRow') this.dataRows += 1;
      else this.messages.push(message);
      this.notify?.();
    });
  }

  static async open(): Promise<WireClient> {
    const { pgHost, pgPort } = sharedStack().gateway;
    const socket = connect({ host: pgHost, port: pgPort });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new WireClient(socket);
  }

  /** Startup + cleartext password, up to the first ReadyForQuery. */
  static async login(user: string, credential: string, applicationName: string): Promise<WireClient> {
    const client = await WireClient.open();
    client.socket.write(serialize.startup({ user, database: TARGET, application_name: applicationName }));
    await client.next('authenticationCleartextPassword');
    client.socket.write(serialize.password(credential));
    await client.next('readyForQuery');
    return client;
  }

  /** The next message called `name`; fails on an ErrorResponse first (unless that is what is awaited), close, or timeout. */
  async next(name: BackendMessage['name'], timeoutMs = 5_000): Promise<BackendMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.messages.length) {
        const message = this.messages[this.cursor++]!;
        if (message.name === name) return message;
        if (message.name === 'error') throw message as DatabaseError;
      }
      if (this.closed) throw new Error(`connection closed while waiting for ${name}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${name} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.notify = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.notify = undefined;
    }
  }

  async waitForRows(count: number, timeoutMs = 5_000): Promise<boolean> {
    return eventually(async () => this.dataRows >= count, timeoutMs, 5);
  }
}

describe('gateway with bad input', () => {
  let admin: pg.Client;
  let state: pg.Client;
  let probeUser: string;
  let probeCredential: string;

  /** Audit events of one subject (the writer flushes every ~50 ms, so callers poll). */
  async function auditEvents(subject: string): Promise<Array<{ event: string; outcome: string; target: string | null; detail: { reason?: string } }>> {
    const { rows } = await state.query(
      'select event, outcome, target, detail from dbgate_audit_events where subject = $1 order by id',
      [subject],
    );
    return rows;
  }

  /** The refusal is in the audit trail, and no connection of `subject` opened beyond the `opensBefore` it had. */
  async function refusalIsAudited(subject: string, reason: RegExp, opensBefore = 0): Promise<void> {
    const refused = (events: Awaited<ReturnType<typeof auditEvents>>) =>
      events.some((e) => e.event === 'connection.refused' && e.outcome === 'denied' && reason.test(e.detail.reason ?? ''));
    expect(await eventually(async () => refused(await auditEvents(subject)))).toBe(true);
    expect((await auditEvents(subject)).filter((e) => e.event === 'connection.open')).toHaveLength(opensBefore);
  }

  beforeAll(async () => {
    admin = await directClient();
    state = await directClient('dbgate_state');
    // Every upstream login gets a line in the server log (see upstreamLogins); new backends pick this up on reload.
    await admin.query('alter system set log_connections = on');
    await admin.query('select pg_reload_conf()');
    const enabled = async (): Promise<boolean> => {
      const fresh = await directClient();
      try {
        return (await fresh.query<{ log_connections: string }>('show log_connections')).rows[0]?.log_connections === 'on';
      } finally {
        await fresh.end();
      }
    };
    if (!(await eventually(enabled))) throw new Error('log_connections did not take effect on the shared cluster');
    probeUser = unique('probe');
    probeCredential = await mintCredential(probeUser, { groups: ['engineering'] });
  });

  afterAll(async () => {
    await admin?.query('alter system reset log_connections');
    await admin?.query('select pg_reload_conf()');
    await admin?.end();
    await state?.end();
  });

  afterEach(async () => {
    // The gateway process is still there and a well-behaved client still gets answers.
    expect(() => process.kill(sharedStack().gateway.pid, 0)).not.toThrow();
    const client = new pg.Client(gatewayConfig(probeUser, probeCredential, { applicationName: 'dbgate-bad-input-probe' }));
    await client.connect();
    try {
      const { rows } = await client.query('select 1 as one');
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
  });

  describe('credentials', () => {
    it('refuses an expired credential with 28P01, "expired" and a hint to run dbgate login', async () => {
      const user = unique('expired');
      const credential = await mintCredential(user, { groups: ['engineering'], ttl: '1s' });
      await sleep(1_500);
      const application = unique('app');
      const error = await refusal(gatewayConfig(user, credential, { applicationName: application }));
      expect(await upstreamLogins(application)).toBe(0);
      expect(error.severity).toBe('FATAL');
      expect(error.code).toBe('28P01');
      expect(error.message).toMatch(/^dbgate: .*expired/);
      expect(error.hint).toContain('dbgate login');
      // Refused for its age, not for an unknown session: the mint recorded it.
      const { rows } = await state.query('select revoked_at from dbgate_sessions where session_id = $1', [sessionIdOf(credential)]);
      expect(rows).toEqual([{ revoked_at: null }]);
      await refusalIsAudited(user, /expired/);
    });

    it('refuses a credential signed with another key for the same audience with 28P01', async () => {
      const user = unique('forged');
      const { audience } = await loadGatewayConfig(join(sharedStack().gateway.stateDir, 'gateway.yaml'));
      const forger = new CredentialAuthority(await generateSigningKeyJwk(), audience);
      const { token, identity } = await forger.issueCredential({ subject: user, groups: ['dba'], ttlMs: 10 * 60_000 });
      // Even with its session on record, the signature alone must sink it.
      await state.query(
        `insert into dbgate_sessions (session_id, subject, kind, expires_at, origin) values ($1, $2, 'human', $3, 'test-forged')`,
        [identity.sessionId, user, new Date(identity.expiresAt)],
      );
      const application = unique('app');
      const error = await refusal(gatewayConfig(user, token, { applicationName: application }));
      expect(await upstreamLogins(application)).toBe(0);
      expect(error.code).toBe('28P01');
      expect(error.message).toMatch(/^dbgate: /);
      expect(error.message).not.toMatch(/revoked|expired/);
      await refusalIsAudited(user, /invalid/);
    });

    it('refuses a credential whose session was revoked in the state store with 28P01 "revoked"', async () => {
      const user = unique('revoked');
      const credential = await mintCredential(user, { groups: ['engineering'] });
      const before = new pg.Client(gatewayConfig(user, credential));
      await before.connect(); // accepted while the session stands
      await before.end();

      await state.query(`update dbgate_sessions set revoked_at = now(), revoked_by = 'bad-input test' where session_id = $1`, [sessionIdOf(credential)]);
      const application = unique('app');
      const error = await refusal(gatewayConfig(user, credential, { applicationName: application }));
      expect(await upstreamLogins(application)).toBe(0);
      expect(error.code).toBe('28P01');
      expect(error.message).toMatch(/^dbgate: .*revoked/);
      await refusalIsAudited(user, /revoked/, 1);
    });
  });

  it('refuses a credential presented under another user name with 28000 naming its owner', async () => {
    const owner = unique('owner');
    const impostor = unique('impostor');
    const credential = await mintCredential(owner, { groups: ['engineering'] });
    const application = unique('app');
    const error = await refusal(gatewayConfig(impostor, credential, { applicationName: application }));
    expect(await upstreamLogins(application)).toBe(0);
    expect(error.code).toBe('28000');
    expect(error.message).toMatch(/^dbgate: .*"/);
    expect(error.message).toContain(owner);
    expect(error.hint).toContain(`user=${owner}`);
    await refusalIsAudited(owner, /mismatch/);
  });

  it('refuses an unknown target with 3D000 and opens no upstream connection', async () => {
    const user = unique('nope');
    const credential = await mintCredential(user, { groups: ['engineering'] });
    const application = unique('app');
    // The same client on a real target is one upstream login under this application_name…
    const known = new pg.Client(gatewayConfig(user, credential, { applicationName: application }));
    await known.connect();
    await known.end();
    const before = await upstreamLogins(application);
    expect(before).toBe(1);

    // …and on a target that does not exist, none.
    const error = await refusal(gatewayConfig(user, credential, { database: 'nope', applicationName: application }));
    expect(await upstreamLogins(application)).toBe(before);
    expect(error.severity).toBe('FATAL');
    expect(error.code).toBe('3D000');
    expect(error.message).toMatch(/^dbgate: .*"nope"/);
    await refusalIsAudited(user, /target/, 1);
  });

  it('refuses replication connections with 0A000 and opens no upstream connection; replication=off is a normal session', async () => {
    const user = unique('walsender');
    const credential = await mintCredential(user, { groups: ['engineering'] });
    const application = unique('app');
    // node-postgres sends `replication` as a startup parameter, as pg_recvlogical ("database") and pg_basebackup
    // ("true") do.
    for (const replication of ['database', 'true', 'on', 'bogus']) {
      const error = await refusal({ ...gatewayConfig(user, credential, { applicationName: application }), replication } as pg.ClientConfig);
      expect(error.severity).toBe('FATAL');
      expect(error.code).toBe('0A000');
      expect(error.message).toBe('dbgate: replication connections are not supported through the gateway');
      expect(error.hint).toContain('past policy, masking and audit');
    }
    expect(await upstreamLogins(application)).toBe(0);
    await refusalIsAudited(user, /replication/);

    const normal = new pg.Client({ ...gatewayConfig(user, credential, { applicationName: application }), replication: 'off' } as pg.ClientConfig);
    await normal.connect();
    try {
      expect((await normal.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await normal.end();
    }
  });

  it('refuses local clients without or with a wrong tunnel password before anything reaches the gateway', async () => {
    const user = unique('tunnel');
    const tunnel = await openTunnel(user);
    try {
      const application = unique('app');
      const lastChanged = `${tunnel.password.slice(0, -1)}${tunnel.password.endsWith('x') ? 'y' : 'x'}`;
      for (const password of ['', 'not-the-tunnel-password', lastChanged]) {
        const error = await refusal({ ...tunnel.pgConfig, password, application_name: application });
        expect(error.code).toBe('28P01');
        expect(error.message).toContain('wrong tunnel password');
      }

      // The same client with the right password does get through, upstream and into the audit trail. The tunnel
      // always logs in at the gateway with the credential, so a gateway connection it had opened for a refused
      // client would show up in both places too; the audit writer keeps order, so once this open is visible any
      // from the refused attempts would be as well.
      const client = new pg.Client({ ...tunnel.pgConfig, application_name: application });
      await client.connect();
      await client.query('select 1');
      await client.end();
      expect(await upstreamLogins(application)).toBe(1);
      expect(await eventually(async () => (await auditEvents(user)).some((e) => e.event === 'connection.open'))).toBe(true);
      expect((await auditEvents(user)).filter((e) => e.event === 'connection.open')).toHaveLength(1);
    } finally {
      await tunnel.close();
    }
  });

  describe('garbage on the wire', () => {
    it('closes a connection that starts with an HTTP request instead of a startup packet', async () => {
      const { closed, received } = await sendRaw(Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
      expect(closed).toBe(true);
      expect(received.toString('latin1')).not.toContain('HTTP/');
      // If the gateway says anything before closing, it is one well-formed protocol error.
      for (const message of await decode(received)) {
        expect(message.name).toBe('error');
        expect((message as DatabaseError).code).toBe('08P01');
      }
    });

    it('closes a connection whose SSLRequest is followed by garbage instead of a TLS handshake', async () => {
      const sslRequest = Buffer.alloc(8);
      sslRequest.writeInt32BE(8, 0);
      sslRequest.writeInt32BE(80877103, 4);
      const { pgHost, pgPort } = sharedStack().gateway;
      const socket = connect({ host: pgHost, port: pgPort });
      socket.on('error', () => {});
      const answer = await new Promise<Buffer>((resolve) => {
        socket.once('connect', () => socket.write(sslRequest));
        socket.once('data', resolve);
      });
      expect(answer.toString('latin1')).toBe('S');
      const closed = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 3_000);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      socket.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
      expect(await closed).toBe(true);
    });

    it('answers a first packet claiming 0x7fffffff bytes with 08P01 and closes, without waiting for them', async () => {
      const header = Buffer.alloc(8);
      header.writeInt32BE(0x7fffffff, 0);
      header.writeInt32BE(196608, 4); // looks like protocol 3.0 after the absurd length
      const { closed, received } = await sendRaw(header);
      expect(closed).toBe(true);
      const messages = await decode(received);
      expect(messages.map((m) => m.name)).toEqual(['error']);
      expect((messages[0] as DatabaseError).code).toBe('08P01');
    });

    it('refuses a password message far longer than any credential before buffering it', async () => {
      // PostgreSQL caps a password packet at 64 kB before authentication (PG_MAX_AUTH_TOKEN_LENGTH); a credential
      // is at most 8 kB. An unauthenticated client must not make the gateway hold up to a gigabyte for it.
      const client = await WireClient.open();
      try {
        client.socket.write(serialize.startup({ user: unique('bulky'), database: TARGET }));
        await client.next('authenticationCleartextPassword');
        const frame = Buffer.alloc(5 + 1024, 0x41);
        frame[0] = 0x70; // 'p'
        frame.writeInt32BE(256 * 1024 * 1024, 1); // announces a 256 MB password, sends 1 kB of it
        client.socket.write(frame);
        const error = (await client.next('error', 3_000)) as DatabaseError;
        await client.whenClosed;
        expect(error.severity).toBe('FATAL');
        expect(['08P01', '28P01']).toContain(error.code);
      } finally {
        client.socket.destroy();
      }
    });

    it('answers a message claiming 0x7fffffff bytes after login with 08P01, closes, and ends the upstream session', async () => {
      const user = unique('huge');
      const application = unique('app');
      const client = await WireClient.login(user, await mintCredential(user, { groups: ['engineering'] }), application);
      expect(await activeServiceBackends(admin, application)).toHaveLength(1);

      const frame = Buffer.alloc(5 + 64, 0x20);
      frame[0] = 0x51; // 'Q'
      frame.writeInt32BE(0x7fffffff, 1);
      client.socket.write(frame);
      const error = (await client.next('error')) as DatabaseError;
      await client.whenClosed;
      expect(error.severity).toBe('FATAL');
      expect(error.code).toBe('08P01');
      expect(error.message).toMatch(/^dbgate: /);
      expect(await eventually(async () => (await activeServiceBackends(admin, application)).length === 0)).toBe(true);
    });
  });

  describe('clients that disappear', () => {
    it('stops the upstream query when the client disconnects in the middle of a large result', async () => {
      const user = unique('midresult');
      const application = unique('app');
      const sql = `select g, repeat('x', 1000) from generate_series(1, 5000000) g`;
      // security: read access on prod-orders without masking, so the rows stream as fast as the server sends them
      // (results for engineering and agents are scanned for personal data on the way, which is slower).
      const client = await WireClient.login(user, await mintCredential(user, { groups: ['security'] }), application);
      client.socket.write(serialize.query(sql));
      expect(await client.waitForRows(100)).toBe(true);
      // Stop reading: backpressure keeps the server busy sending, so the query is visibly still running.
      client.socket.pause();
      const running = async (): Promise<boolean> =>
        (await activeServiceBackends(admin, application)).some((b) => b.state === 'active' && b.query === sql);
      expect(await running()).toBe(true);

      client.socket.destroy();
      expect(await eventually(async () => !(await running()), 5_000)).toBe(true);
      expect(await eventually(async () => (await activeServiceBackends(admin, application)).length === 0, 5_000)).toBe(true);
    });

    it('cancels an upstream pg_sleep(30) when the client disconnects while it runs', async () => {
      const user = unique('sleeper');
      const application = unique('app');
      const sql = 'select pg_sleep(30)';
      const client = await WireClient.login(user, await mintCredential(user, { groups: ['engineering'] }), application);
      client.socket.write(serialize.query(sql));
      const running = async (): Promise<boolean> =>
        (await activeServiceBackends(admin, application)).some((b) => b.state === 'active' && b.query === sql);
      expect(await eventually(running, 5_000)).toBe(true);

      client.socket.destroy();
      // PostgreSQL does not notice a vanished client during pg_sleep; only a cancel ends it this soon.
      expect(await eventually(async () => !(await running()), 5_000)).toBe(true);
      expect(await eventually(async () => (await activeServiceBackends(admin, application)).length === 0, 5_000)).toBe(true);
      // The statement the client walked away from is still in the audit trail, and not as a success.
      let audited: Array<{ outcome: string }> = [];
      expect(await eventually(async () => {
        ({ rows: audited } = await state.query(
          `select outcome from dbgate_audit_events where subject = $1 and event = 'statement' and statement = $2`, [user, sql]));
        return audited.length > 0;
      })).toBe(true);
      expect(audited).toHaveLength(1);
      expect(['error', 'cancelled']).toContain(audited[0]!.outcome);
    });
  });
});
