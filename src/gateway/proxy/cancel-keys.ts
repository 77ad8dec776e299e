/**
 * Maps the BackendKeyData the gateway gives clients to the upstream backend behind it. Clients never learn upstream
 * process ids or cancel secrets; a CancelRequest with a key no gateway issued does nothing, as in PostgreSQL.
 *
 * A CancelRequest comes on a connection of its own. Behind a load balancer it may reach another gateway than the one
 * holding the query's connection, so with a state store the keys are shared there (`dbgate_cancel_keys`): a gateway
 * that does not know a key looks it up and cancels the upstream backend itself. Sharing is batched per event-loop
 * turn and never delays a login; a cancel sent within milliseconds of connecting may only be known to its gateway.
 */
import { randomInt, randomUUID } from 'node:crypto';
import type { TargetConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import type { SharedCancelKey, StateStore } from '../store/state-store.js';

export interface UpstreamBackend {
  target: TargetConfig;
  processId: number;
  secretKey: number;
}

/** Int32 range for both halves of the key; process ids stay positive as clients expect. */
const INT32_MAX = 0x7fffffff;
/** How often a gateway renews its live keys in the store, and how old a key nobody renewed may get. */
const RENEW_MS = 60_000;
const STALE_MS = 5 * RENEW_MS;
/**
 * Store lookups of keys this gateway did not issue, at most at once. CancelRequests need no login: without a bound,
 * a flood of made-up keys would queue store queries without end and starve the audit trail's writes (the gateway
 * then refuses every statement, failing closed). Beyond it a lookup is skipped, as for a key nobody issued.
 */
const MAX_CONCURRENT_LOOKUPS = 4;

export interface CancelKeySharing {
  store: Pick<StateStore, 'shareCancelKeys' | 'findCancelKey' | 'withdrawCancelKeys' | 'sweepCancelKeys'>;
  /** The targets of this gateway, by name: a shared key names its target. */
  targets: ReadonlyMap<string, TargetConfig>;
  log: Logger;
}

type Key = { processId: number; secretKey: number };

export class CancelKeyRegistry {
  /** By "processId:secretKey" of the client-facing key. */
  private readonly issued = new Map<string, { client: Key; backend: UpstreamBackend }>();
  /** This gateway process in the store: its keys are withdrawn together when it stops. */
  private readonly instance = randomUUID();
  /** Changes not yet written to the store: issued keys to share (map keys of `issued`), and keys to withdraw. */
  private readonly toShare = new Set<string>();
  private readonly toForget = new Map<string, Key>();
  private lookups = 0;
  private writing: Promise<void> = Promise.resolve();
  private writeScheduled = false;
  private readonly renewTimer: NodeJS.Timeout | undefined;

  constructor(private readonly sharing?: CancelKeySharing) {
    if (sharing) {
      this.renewTimer = setInterval(() => this.renew(), RENEW_MS);
      this.renewTimer.unref();
    }
  }

  /** Issues a fresh client-facing key for `backend`. */
  register(backend: UpstreamBackend): Key {
    for (;;) {
      const processId = randomInt(1, INT32_MAX);
      // The secret is the whole authentication of a cancel: cryptographically random, full 32 bits.
      const secretKey = randomInt(0, 0x100000000) | 0;
      const key = `${processId}:${secretKey}`;
      if (!this.issued.has(key)) {
        this.issued.set(key, { client: { processId, secretKey }, backend });
        if (this.sharing) {
          this.toShare.add(key);
          this.scheduleWrite();
        }
        return { processId, secretKey };
      }
    }
  }

  /** The backend behind a key this gateway issued. */
  lookup(processId: number, secretKey: number): UpstreamBackend | undefined {
    return this.issued.get(`${processId}:${secretKey}`)?.backend;
  }

  /** The backend behind a key this gateway or another one sharing the store issued. */
  async find(processId: number, secretKey: number): Promise<UpstreamBackend | undefined> {
    const local = this.lookup(processId, secretKey);
    if (local || !this.sharing || this.lookups >= MAX_CONCURRENT_LOOKUPS) return local;
    this.lookups += 1;
    try {
      const key = await this.sharing.store.findCancelKey(processId, secretKey);
      const target = key && this.sharing.targets.get(key.target);
      return target && { target, processId: key.upstreamProcessId, secretKey: key.upstreamSecretKey };
    } finally {
      this.lookups -= 1;
    }
  }

  unregister(processId: number, secretKey: number): void {
    const key = `${processId}:${secretKey}`;
    if (!this.issued.delete(key) || !this.sharing) return;
    // Never written yet: nothing to withdraw either.
    if (this.toShare.delete(key)) return;
    this.toForget.set(key, { processId, secretKey });
    this.scheduleWrite();
  }

  /** Stops renewing and withdraws this gateway's keys from the store (the gateway is stopping). */
  async close(): Promise<void> {
    if (!this.sharing) return;
    clearInterval(this.renewTimer);
    this.toShare.clear();
    this.toForget.clear();
    await this.writing;
    await this.sharing.store.withdrawCancelKeys(this.instance).catch((error: Error) =>
      this.sharing!.log.log('warn', 'cancel_keys.remove_failed', { reason: error.message }));
  }

  /** One store write per event-loop turn for all the keys issued and withdrawn in it, one write at a time. */
  private scheduleWrite(): void {
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    setImmediate(() => {
      this.writeScheduled = false;
      // Every key in toShare is still issued: unregister takes it out of both.
      const share = [...this.toShare].map((key) => this.shared(key));
      const forget = [...this.toForget.values()];
      this.toShare.clear();
      this.toForget.clear();
      if (share.length > 0 || forget.length > 0) this.write(share, forget);
    });
  }

  private write(share: SharedCancelKey[], forget: Key[]): void {
    const { store, log } = this.sharing!;
    this.writing = this.writing
      .then(() => store.shareCancelKeys(this.instance, share, forget))
      .catch((error: Error) => log.log('warn', 'cancel_keys.share_failed', { keys: share.length, reason: error.message }));
  }

  /** An issued key as the store keeps it. */
  private shared(key: string): SharedCancelKey {
    const { client, backend } = this.issued.get(key)!;
    return {
      processId: client.processId,
      secretKey: client.secretKey,
      target: backend.target.name,
      upstreamProcessId: backend.processId,
      upstreamSecretKey: backend.secretKey,
    };
  }

  /**
   * Renews every live key (also writing again any a store restart lost) and removes the keys of gateways that died
   * without withdrawing theirs.
   */
  private renew(): void {
    if (this.issued.size > 0) this.write([...this.issued.keys()].map((key) => this.shared(key)), []);
    this.sharing!.store.sweepCancelKeys(STALE_MS).catch((error: Error) =>
      this.sharing!.log.log('warn', 'cancel_keys.sweep_failed', { reason: error.message }));
  }
}
