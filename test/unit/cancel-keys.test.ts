/**
 * The cancel-key registry's sharing with the state store (the store faked: a seam of ours). Keys go to the store in
 * one write per event-loop turn, in order, and never for a connection that closed before its key was written; a key
 * this gateway did not issue is looked up in the store and resolved to one of its own targets.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { TargetConfig } from '../../src/gateway/config/load.js';
import { silentLogger } from '../../src/gateway/log.js';
import { CancelKeyRegistry, type CancelKeySharing } from '../../src/gateway/proxy/cancel-keys.js';
import type { SharedCancelKey } from '../../src/gateway/store/state-store.js';

const target = (name: string): TargetConfig => ({
  name, host: '127.0.0.1', port: 5432, database: name, user: 'svc', password: undefined, tls: 'disable', ca: undefined, description: undefined,
});
const ORDERS = target('orders');

type Write = { instance: string; share: SharedCancelKey[]; forget: { processId: number; secretKey: number }[] };

function fakeStore(options: { found?: SharedCancelKey; hold?: Promise<void> } = {}) {
  const writes: Write[] = [];
  const lookups: Array<[number, number]> = [];
  const removed: unknown[] = [];
  let active = 0;
  let overlapped = false;
  const store: CancelKeySharing['store'] = {
    async shareCancelKeys(instance, share, forget) {
      active += 1;
      if (active > 1) overlapped = true;
      writes.push({ instance, share: [...share], forget: [...forget] });
      if (writes.length === 1 && options.hold) await options.hold;
      active -= 1;
    },
    async findCancelKey(processId, secretKey) {
      lookups.push([processId, secretKey]);
      return options.found;
    },
    async withdrawCancelKeys(instance) {
      removed.push(instance);
    },
    async sweepCancelKeys() {
      return 0;
    },
  };
  return { store, writes, lookups, removed, overlapped: () => overlapped };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const registries: CancelKeyRegistry[] = [];
function registry(store: CancelKeySharing['store']): CancelKeyRegistry {
  const created = new CancelKeyRegistry({ store, targets: new Map([[ORDERS.name, ORDERS]]), log: silentLogger });
  registries.push(created);
  return created;
}
afterEach(async () => {
  await Promise.all(registries.splice(0).map((created) => created.close()));
});

describe('CancelKeyRegistry sharing', () => {
  it('writes the keys issued in one turn in one store write', async () => {
    const fake = fakeStore();
    const keys = registry(fake.store);
    const issued = [1, 2, 3].map((n) => keys.register({ target: ORDERS, processId: 100 + n, secretKey: 200 + n }));
    expect(fake.writes).toHaveLength(0);
    await turn();
    expect(fake.writes).toHaveLength(1);
    expect(fake.writes[0]!.share).toEqual(issued.map((key, i) => ({
      processId: key.processId, secretKey: key.secretKey, target: 'orders', upstreamProcessId: 101 + i, upstreamSecretKey: 201 + i,
    })));
    expect(fake.writes[0]!.forget).toEqual([]);
  });

  it('writes nothing for a key withdrawn in the turn it was issued', async () => {
    const fake = fakeStore();
    const keys = registry(fake.store);
    const key = keys.register({ target: ORDERS, processId: 1, secretKey: 2 });
    keys.unregister(key.processId, key.secretKey);
    await turn();
    await turn();
    expect(fake.writes).toHaveLength(0);
  });

  it('withdraws a written key after the write that shared it, never alongside it', async () => {
    let release = (): void => {};
    const fake = fakeStore({ hold: new Promise<void>((resolve) => { release = resolve; }) });
    const keys = registry(fake.store);
    const key = keys.register({ target: ORDERS, processId: 1, secretKey: 2 });
    await turn();
    keys.unregister(key.processId, key.secretKey);
    await turn();
    // The first write has not finished: the withdrawal waits for it.
    expect(fake.writes).toHaveLength(1);
    release();
    await turn();
    expect(fake.writes).toHaveLength(2);
    expect(fake.writes[1]).toMatchObject({ share: [], forget: [key] });
    expect(fake.overlapped()).toBe(false);
  });

  it('answers its own keys without the store, and resolves others\' keys to its targets', async () => {
    const other = { processId: 7, secretKey: 8, target: 'orders', upstreamProcessId: 4242, upstreamSecretKey: -5 };
    const fake = fakeStore({ found: other });
    const keys = registry(fake.store);
    const own = keys.register({ target: ORDERS, processId: 11, secretKey: 12 });
    expect(await keys.find(own.processId, own.secretKey)).toEqual({ target: ORDERS, processId: 11, secretKey: 12 });
    expect(fake.lookups).toEqual([]);
    expect(await keys.find(7, 8)).toEqual({ target: ORDERS, processId: 4242, secretKey: -5 });
    expect(fake.lookups).toEqual([[7, 8]]);
  });

  it('cancels nothing for a shared key of a target this gateway does not have, or no key at all', async () => {
    const elsewhere = fakeStore({ found: { processId: 7, secretKey: 8, target: 'billing', upstreamProcessId: 1, upstreamSecretKey: 2 } });
    expect(await registry(elsewhere.store).find(7, 8)).toBeUndefined();
    const nowhere = fakeStore();
    expect(await registry(nowhere.store).find(7, 8)).toBeUndefined();
  });

  it('looks up at most four unknown keys in the store at once (a flood of made-up keys cannot starve the store)', async () => {
    const pending: Array<() => void> = [];
    let lookups = 0;
    const slow: CancelKeySharing['store'] = {
      ...fakeStore().store,
      findCancelKey: () => {
        lookups += 1;
        return new Promise((resolve) => pending.push(() => resolve(undefined)));
      },
    };
    const keys = registry(slow);
    const finds = Array.from({ length: 10 }, (_, n) => keys.find(1000 + n, n));
    // Beyond the bound, a lookup is skipped at once, as for a key nobody issued.
    expect(await Promise.race([Promise.all(finds.slice(4)), new Promise((resolve) => setTimeout(() => resolve('waiting'), 100))]))
      .toEqual(Array.from({ length: 6 }, () => undefined));
    expect(lookups).toBe(4);
    for (const release of pending) release();
    expect(await Promise.all(finds.slice(0, 4))).toEqual([undefined, undefined, undefined, undefined]);
    // Once they are answered, the store is asked again.
    void keys.find(2000, 1);
    expect(lookups).toBe(5);
  });

  it('withdraws all of its keys from the store when it closes', async () => {
    const fake = fakeStore();
    const keys = new CancelKeyRegistry({ store: fake.store, targets: new Map(), log: silentLogger });
    keys.register({ target: ORDERS, processId: 1, secretKey: 2 });
    await turn();
    await keys.close();
    expect(fake.removed).toEqual([fake.writes[0]!.instance]);
  });
});
