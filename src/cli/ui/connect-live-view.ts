/**
 * `dbgate connect`'s live view in a terminal (ink): where to connect, as whom and for how long, what the tunnel is
 * carrying and what the gateway decided. Loaded only by the connect command when stdout is a TTY, so ink and React
 * never slow down other commands (this module must only ever be imported dynamically).
 */
import { Box, render, Text, type TextProps } from 'ink';
import { createElement as h, useEffect, useState, useSyncExternalStore, type ReactElement, type ReactNode } from 'react';
import type { CommandContext } from '../../shared/cli-runtime.js';
import { formatDuration } from '../../shared/duration.js';
import { colorLevel } from '../output/terminal-style.js';
import type { TunnelActivity, TunnelActivitySnapshot } from './tunnel-activity.js';

export interface ConnectLiveViewProps {
  target: string;
  gateway: string;
  /** The local URI, password included: it is the user's own loopback tunnel, and the plain mode prints it too. */
  uri: string;
  identity: { subject: string; groups: string[] };
  /** Whether the credential is renewed without the user (stored login) or fixed (DBGATE_CREDENTIAL). */
  renewable: boolean;
  activity: TunnelActivity;
  now: () => number;
  /** See `colorWanted`. */
  color: boolean;
}

export interface RunningLiveView {
  /** Draws the final frame ("tunnel closed") and gives the terminal back. */
  close(): Promise<void>;
}

/** Renders the view on `stdout` (a TTY) until `close`. Input is not read: Ctrl-C reaches the process as SIGINT. */
export function startConnectLiveView(props: ConnectLiveViewProps, stdout: NodeJS.WriteStream): RunningLiveView {
  const instance = render(h(ConnectLiveView, { ...props, closed: false }), { stdout, patchConsole: false, exitOnCtrlC: false });
  return {
    async close() {
      instance.rerender(h(ConnectLiveView, { ...props, closed: true }));
      instance.unmount();
      await instance.waitUntilExit();
    },
  };
}

/** Whether the view colours its text: the CLI's one rule (NO_COLOR, FORCE_COLOR, TERM=dumb). */
export function colorWanted(context: Pick<CommandContext, 'env' | 'stdoutIsTTY'>): boolean {
  return colorLevel(context) > 0;
}

const LABEL_WIDTH = 13;
/** Below this, a credential that cannot renew itself is shown as a warning. */
const EXPIRY_WARNING_MS = 5 * 60_000;

type TextColor = NonNullable<TextProps['color']>;

export function ConnectLiveView(props: ConnectLiveViewProps & { closed: boolean }): ReactElement {
  const activity = useSyncExternalStore(props.activity.subscribe, props.activity.snapshot);
  const now = useTicker(props.now, props.closed);
  const paint = (color: TextColor): Pick<TextProps, 'color'> => (props.color ? { color } : {});
  const groups = props.identity.groups.length > 0 ? ` (${props.identity.groups.join(', ')})` : '';

  return h(Box, { flexDirection: 'column', paddingX: 1 },
    h(Text, { bold: true }, 'dbgate connect ', h(Text, paint('cyan'), props.target),
      props.closed ? h(Text, paint('gray'), '  (tunnel closed)') : null),
    h(Text, null, ' '),
    row('local URI', h(Text, paint('green'), props.uri)),
    row('gateway', props.gateway),
    row('identity', `${props.identity.subject}${groups}`, ' · ', expiry(activity, props.renewable, now, paint)),
    row('connections', connections(activity, paint)),
    row('statements', statements(activity, paint)),
    row('approvals', h(Text, { dimColor: true }, 'no pending approvals')),
    h(Text, null, ' '),
    h(Text, { dimColor: true }, countedBy(activity)),
    h(Text, { dimColor: true }, props.closed ? 'Tunnel closed.' : 'Ctrl-C to close'),
  );
}

function row(label: string, ...value: ReactNode[]): ReactElement {
  return h(Box, null,
    h(Box, { width: LABEL_WIDTH, flexShrink: 0 }, h(Text, { dimColor: true }, label)),
    h(Text, null, ...value));
}

function expiry(activity: TunnelActivitySnapshot, renewable: boolean, now: number, paint: (color: TextColor) => Pick<TextProps, 'color'>): ReactNode {
  const left = activity.credentialExpiresAt - now;
  if (left <= 0) {
    return renewable
      ? h(Text, paint('yellow'), 'credential expired; renewed for the next connection')
      : h(Text, paint('red'), `credential expired ${formatDuration(-left)} ago; new connections will be refused`);
  }
  const text = `credential valid for ${formatDuration(left)}${renewable ? ', renewed automatically' : ''}`;
  return !renewable && left < EXPIRY_WARNING_MS ? h(Text, paint('yellow'), text) : text;
}

function statements(activity: TunnelActivitySnapshot, paint: (color: TextColor) => Pick<TextProps, 'color'>): ReactNode {
  const { allowed, masked, denied, held, failed } = activity.statements;
  return h(Text, null,
    h(Text, paint('green'), `allowed ${allowed}`), ' · ',
    h(Text, masked ? paint('cyan') : {}, `masked ${masked ?? '—'}`), ' · ',
    h(Text, denied > 0 ? paint('red') : {}, `denied ${denied}`), ' · ',
    h(Text, held > 0 ? paint('yellow') : {}, `held ${held}`),
    // Statements that failed in the database are no decision of the gateway's: named only when there are some.
    failed > 0 ? ` · failed ${failed}` : null);
}

/** Where the counts come from, and why masked shows "—" when it does. */
function countedBy(activity: TunnelActivitySnapshot): string {
  if (activity.countedBy === 'gateway') return 'Counted by the gateway from its audit trail, a moment behind the tunnel.';
  if (activity.gatewayUnavailable !== undefined) {
    return `masked —: no counts from the gateway (${activity.gatewayUnavailable}); the tunnel counts, masked results as allowed.`;
  }
  return 'masked —: the tunnel counts, masked results as allowed, until the gateway answers with its audit trail.';
}

function connections(activity: TunnelActivitySnapshot, paint: (color: TextColor) => Pick<TextProps, 'color'>): ReactNode {
  const parts: ReactNode[] = [`${activity.open} open · ${activity.relayed} since start`];
  if (activity.refused > 0) {
    parts.push(' · ', h(Text, paint('red'), `${activity.refused} refused (last: ${activity.lastRefusal ?? 'unknown'})`));
  }
  return h(Text, null, ...parts);
}

/** The clock, re-read every second so that "valid for" counts down; stops once the view is closed. */
function useTicker(now: () => number, stopped: boolean): number {
  const [time, setTime] = useState(now);
  useEffect(() => {
    if (stopped) return undefined;
    const timer = setInterval(() => setTime(now()), 1_000);
    return () => clearInterval(timer);
  }, [now, stopped]);
  return stopped ? now() : time;
}
