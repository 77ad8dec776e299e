/**
 * How a client tells the gateway's policy refusals apart from the database's own errors. Both use SQLSTATE 42501
 * (insufficient_privilege); only the gateway's messages start with "dbgate:", and a hold says "held for approval".
 * The tunnel's statement counts and `dbgate query`'s exit codes (5 denied, 6 held) both rest on this one rule.
 */
export type GatewayRefusal = 'denied' | 'held';

export function gatewayRefusal(sqlState: string | undefined, message: string | undefined): GatewayRefusal | undefined {
  if (sqlState !== '42501' || !message?.startsWith('dbgate:')) return undefined;
  return message.includes('held for approval') ? 'held' : 'denied';
}
