/**
 * How a `dbgate connect` tunnel names itself to the gateway. Each `dbgate connect` process picks a random UUID, its
 * tunnel id, and sends it in this startup parameter on every connection it relays. The gateway checks it, records it
 * with every statement in the audit trail and consumes it (PostgreSQL never sees it), so that the tunnel can ask for
 * its own statement counts: GET /v1/me/activity?tunnel=<id>.
 *
 * The name has a dot, like a PostgreSQL custom setting, so it can never clash with a core startup parameter.
 */
export const TUNNEL_ID_PARAMETER = 'dbgate.tunnel';
