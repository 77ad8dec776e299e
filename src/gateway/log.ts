/**
 * Structured, one-line-per-event logging for the gateway. Fields are chosen at the call site; nothing here ever
 * receives a credential or a result value (Secret prints as a placeholder if one slips through).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** JSON lines on a stream (stderr by default), at or above `minimum`. */
export function createJsonLogger(stream: NodeJS.WritableStream = process.stderr, minimum: LogLevel = 'info'): Logger {
  return {
    log(level, event, fields = {}) {
      if (rank[level] < rank[minimum]) return;
      stream.write(`${JSON.stringify({ time: new Date().toISOString(), level, event, ...fields })}\n`);
    },
  };
}

export const silentLogger: Logger = { log() {} };
