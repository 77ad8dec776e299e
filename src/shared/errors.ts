/**
 * Errors a user can fix are values with a stable code, a one-line message and a hint. Anything that is not a
 * DbgateError is a bug: the entry point prints it with its stack.
 */

/** The process exit codes, documented in the README. Only bin/ turns them into process.exit. */
export const ExitCode = {
  ok: 0,
  error: 1,
  usage: 2,
  notLoggedIn: 4,
  deniedByPolicy: 5,
  pendingApproval: 6,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export type DbgateErrorCode =
  | 'USAGE'
  | 'CONFIG_INVALID'
  | 'NOT_LOGGED_IN'
  | 'CREDENTIAL_EXPIRED'
  | 'CREDENTIAL_INVALID'
  | 'GATEWAY_UNREACHABLE'
  | 'GATEWAY_TLS_MISMATCH'
  | 'UPSTREAM_FAILED'
  | 'STATE_STORE_FAILED'
  | 'DENIED'
  | 'PENDING_APPROVAL'
  | 'AUDIT_CHAIN_BROKEN'
  | 'LOGIN_FAILED'
  | 'QUERY_FAILED'
  | 'SECRET_STORE_UNAVAILABLE'
  | 'IO';

const exitCodeByErrorCode: Partial<Record<DbgateErrorCode, ExitCodeValue>> = {
  USAGE: ExitCode.usage,
  NOT_LOGGED_IN: ExitCode.notLoggedIn,
  CREDENTIAL_EXPIRED: ExitCode.notLoggedIn,
  DENIED: ExitCode.deniedByPolicy,
  PENDING_APPROVAL: ExitCode.pendingApproval,
};

export interface DbgateErrorOptions {
  hint?: string | undefined;
  cause?: unknown;
}

/** A problem the user can act on: printed as one line plus a hint, never with a stack. */
export class DbgateError extends Error {
  readonly code: DbgateErrorCode;
  readonly hint: string | undefined;

  constructor(code: DbgateErrorCode, message: string, options: DbgateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DbgateError';
    this.code = code;
    this.hint = options.hint;
  }

  get exitCode(): ExitCodeValue {
    return exitCodeByErrorCode[this.code] ?? ExitCode.error;
  }
}
