/**
 * What `dbgate connect`'s live view shows about a running tunnel, kept apart from the rendering: the tunnel's events
 * go in, immutable snapshots come out (a new object on every change, as React's useSyncExternalStore expects).
 */
import type { StatementOutcome, TunnelEvent } from '../tunnel/local-tunnel.js';

export interface TunnelActivitySnapshot {
  /** Relayed connections open right now. */
  open: number;
  /** Connections relayed since the tunnel started. */
  relayed: number;
  /** Local clients turned away (wrong password, wrong database, gateway unreachable, login expired). */
  refused: number;
  /** Why the most recent refusal happened. */
  lastRefusal: string | undefined;
  statements: Record<StatementOutcome, number>;
  /** When the credential that new connections present expires (moves forward when it is renewed). */
  credentialExpiresAt: number;
}

export class TunnelActivity {
  private current: TunnelActivitySnapshot;
  private readonly listeners = new Set<() => void>();

  constructor(credentialExpiresAt: number) {
    this.current = {
      open: 0,
      relayed: 0,
      refused: 0,
      lastRefusal: undefined,
      statements: { allowed: 0, denied: 0, held: 0 },
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
        this.update({ statements: { ...now.statements, [event.outcome]: now.statements[event.outcome] + 1 } });
        break;
    }
  };

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
