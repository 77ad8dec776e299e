/**
 * Several gateways behind a load balancer share one state store (DESIGN.md). A CancelRequest comes on a connection of
 * its own, which the balancer may hand to another gateway than the one running the query: that gateway finds the key
 * in the store and cancels the right upstream backend. Keys nobody issued still cancel nothing, and a gateway's keys
 * leave the store with its connections.
 *
 * Two in-process gateways of this file's own (A and B) with the shared cluster's state store and one target each.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import { silentLogger } from '../../src/gateway/log.js';
import { cancelRequest } from '../../src/gateway/wire/frontend-messages.js';
import { gatewayConfigDir, issueTestCredential, type GatewayConfigDir } from '../support/in-process-gateway.js';
import { directClient, eventually, scratchStateStore } from '../support/stack.js';

const TARGET = `shared-cancel-${randomBytes(4).toString('hex')}`;
const GROUP = 'cancel-testers';

/** Sends a CancelRequest to `gateway` on a connection of its own, as libpq does, and waits for the gateway to close it. */
function sendCancel(gateway: RunningGateway, processId: number, secretKey: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(gateway.pg.port, gateway.pg.host, () => socket.write(cancelRequest(processId, secretKey)));
    socket.on('error', reject);
    socket.on('close', () => resolve());
    socket.resume();
  });
}

describe('CancelRequest through another gateway sharing the store', () => {
  const dirs: GatewayConfigDir[] = [];
  let gatewayA: RunningGateway | undefined;
  let gatewayB: RunningGateway | undefined;
  let store: pg.Client;
  const clients: pg.Client[] = [];

  async function startGateway(name: string): Promise<RunningGateway> {
    const dir = await gatewayConfigDir(name);
    dirs.push(dir);
    return dir.start({
      ...dir.base,
      targets: {
        [TARGET]: await dir.clusterTarget('postgres'),
      },
      policy: { grants: [{ groups: [GROUP], targets: [TARGET], access: 'admin' }] },
    }, silentLogger);
  }

  async function connectTo(gateway: RunningGateway): Promise<pg.Client> {
    const subject = `canceller-${randomBytes(3).toString('hex')}`;
    const client = new pg.Client({
      host: gateway.pg.host, port: gateway.pg.port, user: subject, database: TARGET, ssl: false,
      password: await issueTestCredential(gateway, subject, [GROUP], 'cancel-across-gateways-test'),
    });
    client.on('error', () => {});
    await client.connect();
    clients.push(client);
    return client;
  }

  /** The key `client` got, as the state store holds it (undefined once withdrawn). */
  async function storedKey(client: pg.Client): Promise<{ target: string } | undefined> {
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const { rows } = await store.query<{ target: string }>(
      'select target from dbgate_cancel_keys where process_id = $1 and secret_key = $2', [processID, secretKey]);
    return rows[0];
  }

  /** Waits until the upstream backend behind `client`'s key (as the store has it) runs `pg_sleep`. */
  async function sleepingUpstream(client: pg.Client): Promise<void> {
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const { rows } = await store.query<{ pid: number }>(
      'select upstream_process_id as pid from dbgate_cancel_keys where process_id = $1 and secret_key = $2', [processID, secretKey]);
    expect(await eventually(async () => {
      const activity = await store.query<{ state: string; query: string }>('select state, query from pg_stat_activity where pid = $1', [rows[0]!.pid]);
      return activity.rows[0]?.state === 'active' && activity.rows[0].query.includes('pg_sleep');
    })).toBe(true);
  }

  beforeAll(async () => {
    gatewayA = await startGateway('cancel-a');
    gatewayB = await startGateway('cancel-b');
    store = await directClient('dbgate_state');
  });

  afterAll(async () => {
    await Promise.allSettled(clients.map((client) => client.end()));
    await Promise.allSettled([gatewayA?.close(), gatewayB?.close()]);
    await Promise.allSettled(dirs.map((dir) => dir.remove()));
    await store?.end();
  });

  it('cancels a query running on gateway A when the CancelRequest reaches gateway B', async () => {
    const client = await connectTo(gatewayA!);
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    expect(await eventually(async () => (await storedKey(client)) !== undefined)).toBe(true);
    expect(await storedKey(client)).toEqual({ target: TARGET });

    const started = Date.now();
    const sleeping = client.query('select pg_sleep(10)').then(() => undefined, (error: pg.DatabaseError) => error);
    await sleepingUpstream(client);
    await sendCancel(gatewayB!, processID, secretKey);
    const error = await sleeping;
    expect(error?.code).toBe('57014');
    expect(Date.now() - started).toBeLessThan(5_000);
    // The connection goes on.
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('cancels nothing for a key no gateway issued', async () => {
    const client = await connectTo(gatewayA!);
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    expect(await eventually(async () => (await storedKey(client)) !== undefined)).toBe(true);
    const sleeping = client.query('select pg_sleep(1.5) as slept');
    await sleepingUpstream(client);
    // The right process id with a wrong secret, on both gateways.
    await sendCancel(gatewayB!, processID, secretKey ^ 1);
    await sendCancel(gatewayA!, processID, secretKey ^ 1);
    expect((await sleeping).rows).toEqual([{ slept: '' }]);
  });

  it('withdraws a key when its connection closes, and all of a gateway\'s keys when it stops', async () => {
    const closing = await connectTo(gatewayA!);
    const staying = await connectTo(gatewayA!);
    expect(await eventually(async () => (await storedKey(closing)) !== undefined && (await storedKey(staying)) !== undefined)).toBe(true);

    await closing.end();
    expect(await eventually(async () => (await storedKey(closing)) === undefined)).toBe(true);
    expect(await storedKey(staying)).toEqual({ target: TARGET });

    await gatewayA!.close();
    gatewayA = undefined;
    expect(await storedKey(staying)).toBeUndefined();
  });
});

describe('cancel keys in the state store', () => {
  const A = '00000000-0000-4000-8000-00000000000a';
  const B = '00000000-0000-4000-8000-00000000000b';
  const key = (processId: number, target = 'orders') => ({ processId, secretKey: -processId, target, upstreamProcessId: 4000 + processId, upstreamSecretKey: 7 });

  it('are renewed, withdrawn per gateway, swept once nobody renews them, and never taken over by another gateway', async () => {
    const { store, drop } = await scratchStateStore('dbgate_cancel_keys');
    try {
      await store.shareCancelKeys(A, [key(1), key(2)], []);
      await store.shareCancelKeys(B, [key(3)], []);
      expect(await store.findCancelKey(1, -1)).toEqual(key(1));

      // Another gateway sharing a key that exists (a 62-bit collision) does not redirect it.
      await store.shareCancelKeys(B, [key(1, 'billing')], []);
      expect(await store.findCancelKey(1, -1)).toEqual(key(1));

      // A withdrawal and a new key in one write.
      await store.shareCancelKeys(A, [key(4)], [{ processId: 2, secretKey: -2 }]);
      expect(await store.findCancelKey(2, -2)).toBeUndefined();

      // Nobody renewed A's keys for ten minutes (A died); B renews its own.
      await store.pool.query(`update dbgate_cancel_keys set seen_at = now() - interval '10 minutes'`);
      await store.shareCancelKeys(B, [key(3)], []);
      expect(await store.sweepCancelKeys(5 * 60_000)).toBe(2);
      expect(await store.findCancelKey(1, -1)).toBeUndefined();
      expect(await store.findCancelKey(3, -3)).toEqual(key(3));

      // B stops: its keys go with it.
      await store.withdrawCancelKeys(B);
      expect(await store.findCancelKey(3, -3)).toBeUndefined();
    } finally {
      await drop();
    }
  });
});
