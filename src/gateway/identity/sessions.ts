/**
 * Issuing a credential is always three things at once: sign it, record its session (so it can be revoked and so
 * the gateway accepts it), and audit that it was issued. Every path that hands out credentials goes through here.
 */
import type { AuditWriter } from '../audit/audit-writer.js';
import type { StateStore } from '../store/state-store.js';
import type { CredentialAuthority, CredentialClaims, Identity } from './credentials.js';

export interface SessionIssuer {
  authority: CredentialAuthority;
  store: StateStore;
  audit: AuditWriter;
}

export async function issueSessionCredential(
  issuer: SessionIssuer,
  claims: CredentialClaims,
  /** How the credential came to be: 'login', 'credential-mint', 'demo'… */
  origin: string,
  /** Extra audit detail (never the tokens themselves). */
  detail: Record<string, unknown> = {},
): Promise<{ token: string; identity: Identity }> {
  const { token, identity } = await issuer.authority.issueCredential(claims);
  await issuer.store.recordSession({
    sessionId: identity.sessionId,
    subject: identity.subject,
    kind: identity.kind,
    email: identity.email,
    groups: identity.groups,
    actors: identity.actors,
    expiresAt: new Date(identity.expiresAt),
    origin,
  });
  issuer.audit.append({
    occurredAt: new Date(),
    event: 'credential.issue',
    outcome: 'ok',
    subject: identity.subject,
    actors: identity.actors,
    sessionId: identity.sessionId,
    detail: { origin, groups: identity.groups, kind: identity.kind, expires_at: new Date(identity.expiresAt).toISOString(), ...detail },
  });
  return { token, identity };
}
