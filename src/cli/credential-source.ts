/**
 * Where the CLI's credential comes from. Today: DBGATE_CREDENTIAL. The stored login (OS keychain) plugs in here.
 */
import { peekCredential, type CredentialSummary } from '../shared/credential-peek.js';
import { formatDuration } from '../shared/duration.js';
import { DbgateError } from '../shared/errors.js';

export interface CurrentCredential extends CredentialSummary {
  token: string;
}

/** The credential to use now; exit 4 with a clear message when there is none or it has expired. */
export function currentCredential(env: NodeJS.ProcessEnv, now: number): CurrentCredential {
  const token = env['DBGATE_CREDENTIAL']?.trim();
  if (!token) {
    throw new DbgateError('NOT_LOGGED_IN', 'you are not logged in to a dbgate gateway', {
      hint: 'run: dbgate login   (or set DBGATE_CREDENTIAL for automation)',
    });
  }
  const summary = peekCredential(token);
  if (!summary) {
    throw new DbgateError('CREDENTIAL_INVALID', 'DBGATE_CREDENTIAL does not hold a dbgate credential', {
      hint: 'set it to the output of: dbgate token   (or dbgate-gateway credential mint)',
    });
  }
  if (summary.expiresAt <= now) {
    throw new DbgateError('CREDENTIAL_EXPIRED', `your dbgate login expired ${formatDuration(now - summary.expiresAt)} ago - run: dbgate login`);
  }
  return { ...summary, token };
}
