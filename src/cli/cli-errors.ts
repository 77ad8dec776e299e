/**
 * The CLI's own failures, built in one place so their codes and wording stay consistent.
 */
import { DbgateError } from '../shared/errors.js';

/** A login that did not complete: the IdP refused, the browser answered wrongly, the user took too long. Exit 1. */
export function loginFailed(message: string, options: { hint?: string; cause?: unknown } = {}): DbgateError {
  return new DbgateError('LOGIN_FAILED', `login failed: ${message}`, {
    hint: options.hint ?? 'run: dbgate login   (again)',
    cause: options.cause,
  });
}

/** The store that holds (or should hold) the login's secrets cannot be used. Exit 1; never a silent fallback. */
export function secretStoreUnavailable(message: string, hint: string, cause?: unknown): DbgateError {
  return new DbgateError('SECRET_STORE_UNAVAILABLE', message, { hint, cause });
}

/** The stored login cannot be used any more and cannot be refreshed. Exit 4. */
export function loginExpired(reason?: string): DbgateError {
  return new DbgateError('CREDENTIAL_EXPIRED', 'your dbgate login expired - run: dbgate login', {
    ...(reason ? { hint: reason } : {}),
  });
}
