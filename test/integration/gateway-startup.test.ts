/**
 * The gateway's startup phase at the byte level: encryption negotiation and who may log in as whom.
 */
import { connect, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { gssEncRequest, sslRequest, startupMessage } from '../../src/gateway/wire/frontend-messages.js';
import { mintCredential, sharedStack } from '../support/stack.js';

const sockets: Socket[] = [];
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
});

function openRaw(): Promise<Socket> {
  const { pgHost, pgPort } = sharedStack().gateway;
  return new Promise((resolve, reject) => {
    const socket = connect(pgPort, pgHost, () => resolve(socket));
    sockets.push(socket);
    socket.once('error', reject);
  });
}

/** Collects bytes until `count` have arrived or the socket closes. */
function readBytes(socket: Socket, count: number): Promise<{ bytes: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = (closed: boolean): void => {
      socket.off('data', onData);
      resolve({ bytes: Buffer.concat(chunks), closed });
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= count) done(false);
    };
    socket.on('data', onData);
    socket.once('close', () => done(true));
  });
}

async function gatewayClient(user: string, password: string): Promise<pg.Client> {
  const { pgHost, pgPort } = sharedStack().gateway;
  const client = new pg.Client({ host: pgHost, port: pgPort, user, password, database: 'prod-orders', ssl: { rejectUnauthorized: false } });
  await client.connect();
  return client;
}

describe('gateway startup', () => {
  it('answers GSSENCRequest with N and then accepts SSLRequest with S', async () => {
    const socket = await openRaw();
    socket.write(gssEncRequest());
    expect((await readBytes(socket, 1)).bytes.toString()).toBe('N');
    socket.write(sslRequest());
    expect((await readBytes(socket, 1)).bytes.toString()).toBe('S');
  });

  it('closes the connection when plaintext bytes follow an SSLRequest in the same packet (CVE-2021-23214)', async () => {
    const socket = await openRaw();
    socket.write(Buffer.concat([sslRequest(), startupMessage({ user: 'alice', database: 'prod-orders' })]));
    const { bytes, closed } = await readBytes(socket, 1_000_000);
    expect(closed).toBe(true);
    expect(bytes.toString('latin1')).not.toMatch(/^S/);
    expect(bytes.toString('latin1')).toContain('data received after SSLRequest');
  });

  it('serves TLS 1.2+ with the certificate that discovery pins', async () => {
    const socket = await openRaw();
    socket.write(sslRequest());
    await readBytes(socket, 1);
    const tls = connectTls({ socket, rejectUnauthorized: false });
    await new Promise((resolve) => tls.once('secureConnect', resolve));
    const discovery = await (await fetch(`${sharedStack().gateway.apiUrl}/.well-known/dbgate-configuration`)).json() as { tls: { fingerprint_sha256: string } };
    expect(tls.getPeerCertificate().fingerprint256).toBe(discovery.tls.fingerprint_sha256);
    expect(['TLSv1.2', 'TLSv1.3']).toContain(tls.getProtocol());
    tls.destroy();
  });

  it('refuses a credential presented for another user name, naming both', async () => {
    const credential = await mintCredential('alice', { groups: ['engineering'] });
    await expect(gatewayClient('bob', credential)).rejects.toMatchObject({
      code: '28000',
      message: 'dbgate: the credential belongs to "alice", but the connection asked for user "bob"',
    });
  });

  it('logs in with the credential as password and reports the gateway-issued cancel key, not the upstream one', async () => {
    const credential = await mintCredential('alice', { groups: ['engineering'] });
    const client = await gatewayClient('alice', credential);
    try {
      const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
      const processId = (client as unknown as { processID: number }).processID;
      expect(processId).toBeGreaterThan(0);
      expect(processId).not.toBe(rows[0]!.pid);
    } finally {
      await client.end();
    }
  });
});
