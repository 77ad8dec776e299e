/**
 * What `dbgate connect`'s live view shows about a running tunnel, kept apart from the rendering: the tunnel's events
 * and the gateway's counts go in, immutable snapshots come out (a new object on every change, as React's
 * useSyncExternalStore expects).
 */
import type { TunnelActivityResponse } from '../../shared/api.js';
import type { StatementOutcome, TunnelEvent } from '../tunnel/local-tunnel.js';

/** Statements counted by what the gateway decided and how they ended (see TunnelActivityResponse). */
export interface StatementCounts {
  allowed: number;
  /** Undefined while the tunnel counts on its own: masking does not show in the bytes it relays. */
  masked: number | undefined;
  denied: number;
  held: number;
  failed: number;
}

export interface TunnelActivitySnapshot {
  /** Relayed connections open right now. */
  open: number;
  /** Connections relayed since the tunnel started. */
  relayed: number;
  /** Local clients turned away (wrong password, wrong database, gateway unreachable, login expired). */
  refused: number;
  /** Why the most recent refusal happened. */
  lastRefusal: string | undefined;
  /**
   * The gateway's counts from its audit trail once it has answered (they lag a little behind the wire); the
   * tunnel's own before that and whenever the gateway stops answering.
   */
  statements: StatementCounts;
  /** Where `statements` come from. */
  countedBy: 'gateway' | 'tunnel';
  /** Why the gateway's counts are not shown, when it was asked and did not answer. */
  gatewayUnavailable: string | undefined;
  /** When the credential that new connections present expires (moves forward when it is renewed). */
  credentialExpiresAt: number;
}

export class TunnelActivity {
  private current: TunnelActivitySnapshot;
  /** What the tunnel saw on the wire, kept apart so that it is at hand when the gateway stops answering. */
  private wire: Record<StatementOutcome, number> = { allowed: 0, denied: 0, held: 0, failed: 0 };
  private readonly listeners = new Set<() => void>();

  constructor(credentialExpiresAt: number) {
    this.current = {
      open: 0,
      relayed: 0,
      refused: 0,
      lastRefusal: undefined,
      statements: wireCounts(this.wire),
      countedBy: 'tunnel',
      gatewayUnavailable: undefined,
      credentialExpiresAt,
    };
  }

  /** Feeds one tunnel event (pass this as the tunnel's `onEvent`). */
  readonly record = (event: TunnelEvent): void => {
    const now = this.current;
    switch (event.type) {
      case 'open':
        this.update({ open: event.open, relayed: now.relayed + 1 });
        break;
      case 'close':
        this.update({ open: event.open });
        break;
      case 'refused':
        this.update({ refused: now.refused + 1, lastRefusal: event.reason });
        break;
      case 'statement':
        this.wire = { ...this.wire, [event.outcome]: this.wire[event.outcome] + 1 };
        // Once the gateway counts, its next answer includes this statement; until then the view shows its last one.
        if (now.countedBy === 'tunnel') this.update({ statements: wireCounts(this.wire) });
        break;
    }
  };

  /** The gateway's counts of this tunnel's statements (from its audit trail); shown from now on. */
  gatewayCounted(counts: Pick<TunnelActivityResponse, 'allowed' | 'masked' | 'denied' | 'held' | 'failed'>): void {
    this.update({
      statements: { allowed: counts.allowed, masked: counts.masked, denied: counts.denied, held: counts.held, failed: counts.failed },
      countedBy: 'gateway',
      gatewayUnavailable: undefined,
    });
  }

  /** The gateway could not be asked: back to the tunnel's own counts, which are current but cannot see masking. */
  gatewayUnavailable(reason: string): void {
    this.update({ statements: wireCounts(this.wire), countedBy: 'tunnel', gatewayUnavailable: reason });
  }

  /** The credential was renewed (or re-read) for a new connection. */
  credentialRenewed(expiresAt: number): void {
    if (expiresAt !== this.current.credentialExpiresAt) this.update({ credentialExpiresAt: expiresAt });
  }

  readonly snapshot = (): TunnelActivitySnapshot => this.current;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private update(change: Partial<TunnelActivitySnapshot>): void {
    this.current = { ...this.current, ...change };
    for (const listener of this.listeners) listener();
  }
}

function wireCounts(wire: Record<StatementOutcome, number>): StatementCounts {
  return { ...wire, masked: undefined };
}
