/**
 * The demo people and agent of `dbgate-gateway dev`, as data. The embedded IdP (dev-idp.ts) serves them, the demo
 * policy names their groups, and the contract tests and the quickstart log in as them. See DESIGN.md, "Demo fixture".
 */

/** The public client `dbgate login` uses (authorization code + PKCE, device flow, refresh tokens). */
export const DEV_CLI_CLIENT_ID = 'dbgate-cli';
/** The confidential client of the demo agent (client credentials, token exchange). */
export const DEV_AGENT_CLIENT_ID = 'report-bot';
/** The `aud` of access tokens meant for the gateway. */
export const DEV_GATEWAY_AUDIENCE = 'dbgate-gateway';
/**
 * The RFC 8707 resource indicator that names the gateway at the dev IdP. Resource indicators must be absolute URIs
 * (oidc-provider refuses `dbgate-gateway` with invalid_target), so the gateway is `urn:dbgate:gateway` there and its
 * tokens carry `aud: DEV_GATEWAY_AUDIENCE`. Clients need not send it: it is every client's default resource.
 */
export const DEV_GATEWAY_RESOURCE = 'urn:dbgate:gateway';
/** The claim (and scope) that carries group membership in ID tokens and access tokens. */
export const DEV_GROUPS_CLAIM = 'groups';
/** The claim in access tokens that says whether a person or an agent is acting. */
export const DEV_KIND_CLAIM = 'dbgate_kind';

/**
 * The password of every dev person. Dev only: the dev IdP exists for the quickstart and the tests, the password is
 * printed in the docs and on the login page, and nothing outside `dbgate-gateway dev` accepts it.
 */
export const DEV_PASSWORD = 'dbgate-dev';

export type DevIdentityKind = 'human' | 'agent';

export interface DevPerson {
  /** The login and the `sub` of their tokens. */
  id: string;
  email: string;
  name: string;
  groups: readonly string[];
  kind: 'human';
}

export interface DevAgent {
  /** The OAuth client id and the `sub` of its client-credentials tokens. */
  clientId: string;
  name: string;
  groups: readonly string[];
  kind: 'agent';
}

export const DEV_PEOPLE: readonly DevPerson[] = [
  { id: 'alice', email: 'alice@example.com', name: 'Alice Liddell', groups: ['engineering'], kind: 'human' },
  { id: 'bob', email: 'bob@example.com', name: 'Bob Builder', groups: ['dba'], kind: 'human' },
  { id: 'carol', email: 'carol@example.com', name: 'Carol Danvers', groups: ['security'], kind: 'human' },
];

export const DEV_AGENTS: readonly DevAgent[] = [
  { clientId: DEV_AGENT_CLIENT_ID, name: 'report-bot (demo agent)', groups: ['agents'], kind: 'agent' },
];

/** A dev person by login (`alice`) or email (`alice@example.com`), case-insensitive. */
export function findDevPerson(loginOrEmail: string): DevPerson | undefined {
  const wanted = loginOrEmail.trim().toLowerCase();
  return DEV_PEOPLE.find((person) => person.id === wanted || person.email === wanted);
}

export function findDevAgent(clientId: string): DevAgent | undefined {
  return DEV_AGENTS.find((agent) => agent.clientId === clientId);
}
