/**
 * Reads the claims of a dbgate credential WITHOUT verifying it. Only for the CLI to tell the user about their own
 * credential (who, until when); the gateway verifies every credential it is given.
 */
export interface CredentialSummary {
  subject: string;
  expiresAt: number;
  groups: string[];
}

export function peekCredential(token: string): CredentialSummary | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    if (typeof payload['sub'] !== 'string' || typeof payload['exp'] !== 'number') return null;
    const groups = Array.isArray(payload['groups']) ? payload['groups'].filter((g): g is string => typeof g === 'string') : [];
    return { subject: payload['sub'], expiresAt: payload['exp'] * 1000, groups };
  } catch {
    return null;
  }
}
