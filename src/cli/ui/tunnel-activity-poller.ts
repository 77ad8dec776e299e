/**
 * Asks the gateway how it decided this tunnel's statements (GET /v1/me/activity), for the live view: the audit trail
 * knows what the bytes on the wire do not — which results were masked — and is shared by every gateway behind a load
 * balancer. Asked only while the tunnel carries statements, and once more after them, since the audit trail is
 * written in batches a few tens of milliseconds after a statement ends. A failed request changes what the view
 * shows, nothing else: the tunnel never waits for it.
 */
import { GatewayApiError, type GatewayApi } from '../gateway-api.js';
import type { TunnelEvent } from '../tunnel/local-tunnel.js';
import type { TunnelActivity } from './tunnel-activity.js';

export interface TunnelActivityPollerOptions {
  api: GatewayApi;
  /** The tunnel's id, as it sends it to the gateway (LocalTunnel.tunnelId). */
  tunnelId: string;
  /** The credential to ask with: the tunnel's current one (renewed as for new connections). */
  credential: () => Promise<string>;
  activity: TunnelActivity;
  /** Between two requests. Default 2 s. */
  intervalMs?: number;
}

const DEFAULT_INTERVAL_MS = 2_000;

export class TunnelActivityPoller {
  /** Statements were relayed since the gateway was last asked. */
  private unasked = false;
  /** Ask once more: the last answer may have come before the audit records of the last statements were written. */
  private followUp = false;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly stopped = new AbortController();

  constructor(private readonly options: TunnelActivityPollerOptions) {}

  /** Feeds one tunnel event (alongside TunnelActivity.record). */
  readonly record = (event: TunnelEvent): void => {
    if (event.type === 'statement') this.unasked = true;
  };

  /** Asks every `intervalMs` from now on, when there is something to ask about, until `stop`. */
  start(): void {
    if (this.running || this.stopped.signal.aborted) return;
    this.running = true;
    const next = (): void => {
      this.timer = setTimeout(() => void this.poll().then(() => {
        if (!this.stopped.signal.aborted) next();
      }), this.options.intervalMs ?? DEFAULT_INTERVAL_MS);
    };
    next();
  }

  /** Stops asking and abandons a request on its way. */
  stop(): void {
    this.stopped.abort();
    clearTimeout(this.timer);
  }

  /** One round: asks the gateway if statements were relayed since the last answer, or for the follow-up after them. */
  async poll(): Promise<void> {
    if (this.stopped.signal.aborted || (!this.unasked && !this.followUp)) return;
    const asking = this.unasked;
    this.unasked = false;
    const { api, tunnelId, activity } = this.options;
    try {
      const counts = await api.tunnelActivity(await this.options.credential(), tunnelId, this.stopped.signal);
      if (this.stopped.signal.aborted) return;
      this.followUp = asking;
      activity.gatewayCounted(counts);
    } catch (error) {
      if (this.stopped.signal.aborted) return;
      // Ask again next round: the statements are still uncounted.
      this.unasked ||= asking;
      if (error instanceof GatewayApiError && error.status === 404) {
        // A gateway from before GET /v1/me/activity: it will not learn it by being asked again.
        this.stop();
        activity.gatewayUnavailable('this gateway does not count statements per tunnel');
        return;
      }
      activity.gatewayUnavailable(reasonOf(error));
    }
  }
}

/** One line for the view: the gateway's or the CLI's message (a DbgateError's says what happened), no stack. */
function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
