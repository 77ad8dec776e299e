/**
 * Request and response bodies of the gateway's HTTP API (/v1), shared by the gateway and the CLI so both sides
 * change together.
 */
export type IdentityKindName = 'human' | 'agent' | 'service';

export interface IdentitySummary {
  subject: string;
  email: string | null;
  name: string | null;
  groups: string[];
  kind: IdentityKindName;
  /** RFC 8693 actor chain: who acts on behalf of `subject`, current actor first. */
  actors: string[];
}

/** POST /v1/credentials: exchange an IdP token (ID token or JWT access token) for a dbgate credential. */
export interface CredentialRequest {
  subject_token: string;
  /** The nonce `dbgate login` sent in the authorization request, checked against an ID token's `nonce`. */
  nonce?: string;
}

export interface CredentialResponse {
  credential: string;
  /** ISO 8601. */
  expires_at: string;
  session_id: string;
  identity: IdentitySummary;
}

/** GET /v1/me */
export interface WhoAmIResponse {
  identity: IdentitySummary;
  session_id: string;
  expires_at: string;
  gateway: string;
}

/**
 * GET /v1/me/activity?tunnel=<uuid>: the caller's own statements that one `dbgate connect` tunnel relayed, counted
 * from the audit trail (shared by every gateway behind a load balancer). "Own" is the caller's identity (subject, and
 * the agent acting for them if any), whichever of its sessions ran them: a tunnel outlives its credentials. Records
 * are written in batches within ~50 ms of a statement ending, so the counts lag that much. A simple-query message
 * with several statements is one statement here, as in the audit trail.
 */
export interface TunnelActivityResponse {
  /** The tunnel id asked about. */
  tunnel: string;
  /** Ran, and no value was masked in its result (also when the policy decided `mask` but nothing masked showed). */
  allowed: number;
  /** Ran, and values were masked in its result. */
  masked: number;
  /** Refused by the policy. */
  denied: number;
  /** Held for an approval; it did not run. */
  held: number;
  /** Allowed by the policy, but failed in the database (an SQL error). */
  failed: number;
  /** ISO 8601: when the state store counted. */
  as_of: string;
}

/** A target's access level for the caller: the highest any of their groups is granted by the policy. */
export type TargetAccess = 'read' | 'write' | 'admin';

/** One target the caller may reach. */
export interface TargetSummary {
  name: string;
  access: TargetAccess;
  /** The operator's description from the gateway config, or null. */
  description: string | null;
}

/** GET /v1/targets: the targets the caller's groups are granted, sorted by name. */
export interface TargetsResponse {
  targets: TargetSummary[];
}

/** Every non-2xx answer. `error` is a stable code; `message` says what happened and `hint` what to do. */
export interface ApiErrorBody {
  error: 'invalid_request' | 'invalid_token' | 'login_disabled' | 'revoked' | 'not_found' | 'internal_error';
  message: string;
  hint?: string;
}
