/**
 * The one place every statement passes through. The proxy calls `decideStatement` for each Query, Parse, Bind,
 * Execute and FunctionCall before forwarding it, and `recordStatement` when the server has answered. Policy,
 * masking and approvals plug in here; today it enforces that the audit trail is writable (fail closed) and records
 * every statement.
 */
import type { TargetConfig } from '../config/load.js';
import type { AuditWriter } from '../audit/audit-writer.js';
import type { Identity } from '../identity/credentials.js';
import type { ErrorFields } from '../wire/backend-messages.js';
import { SqlState } from '../wire/protocol.js';

/** Everything known about the connection a statement arrives on. */
export interface ConnectionContext {
  connectionId: string;
  identity: Identity;
  target: TargetConfig;
  clientAddress: string;
}

export type ProtocolStep = 'query' | 'parse' | 'bind' | 'execute' | 'function-call';

export interface StatementEvent {
  step: ProtocolStep;
  /** SQL text; for bind/execute, the text of the prepared statement they refer to. */
  text: string;
}

export type StatementDecision =
  | { action: 'allow' }
  | { action: 'deny'; rule: string; error: ErrorFields };

export interface CompletedStatement {
  step: ProtocolStep;
  text: string;
  startedAt: number;
  finishedAt: number;
  /** cancelled: the client went away while it ran (it was cancelled upstream). */
  outcome: 'ok' | 'error' | 'denied' | 'skipped' | 'cancelled';
  sqlState: string | undefined;
  rows: number | undefined;
  rule: string | undefined;
}

export interface StatementHook {
  decideStatement(connection: ConnectionContext, event: StatementEvent): StatementDecision;
  recordStatement(connection: ConnectionContext, statement: CompletedStatement): void;
}

const ALLOW: StatementDecision = { action: 'allow' };

/** The statement hook of the spine: audit every statement, refuse all when the audit trail cannot be written. */
export function createAuditingStatementHook(audit: AuditWriter): StatementHook {
  return {
    decideStatement() {
      if (!audit.healthy) {
        // Fail closed: a statement that cannot be audited does not run.
        return {
          action: 'deny',
          rule: 'audit-unavailable',
          error: {
            severity: 'ERROR',
            code: SqlState.insufficientPrivilege,
            message: 'dbgate: the audit trail cannot be written right now, so no statement may run',
            detail: 'rule: audit-unavailable',
            hint: 'retry shortly; if it persists, ask the gateway operator to check the state store',
          },
        };
      }
      return ALLOW;
    },
    recordStatement(connection, statement) {
      audit.append({
        occurredAt: new Date(statement.startedAt),
        event: 'statement',
        subject: connection.identity.subject,
        actors: connection.identity.actors,
        sessionId: connection.identity.sessionId,
        connectionId: connection.connectionId,
        clientAddress: connection.clientAddress,
        target: connection.target.name,
        statement: statement.text,
        protocolStep: statement.step,
        outcome: statement.outcome,
        sqlState: statement.sqlState,
        rows: statement.rows,
        durationMs: statement.finishedAt - statement.startedAt,
        detail: statement.rule ? { rule: statement.rule } : {},
      });
    },
  };
}
