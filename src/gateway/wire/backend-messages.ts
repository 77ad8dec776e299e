/**
 * Writers for the few backend messages the gateway (and the local tunnel) author themselves. Everything else the
 * client sees comes from the upstream server byte for byte.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { AuthenticationKind, BackendCode, type SqlStateCode, TransactionStatus } from './protocol.js';

/** Type byte + Int32 length, then `body`. The length counts itself (4) and the body, not the type byte. */
function message(code: BackendCode, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(1 + 4 + body.length);
  out[0] = code;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** AuthenticationOk / AuthenticationCleartextPassword: 'R', Int32 8, Int32 kind. */
export function authenticationRequest(kind: AuthenticationKind.Ok | AuthenticationKind.CleartextPassword): Buffer {
  const body = Buffer.allocUnsafe(4);
  body.writeInt32BE(kind, 0);
  return message(BackendCode.Authentication, body);
}

/** BackendKeyData: 'K', Int32 12, Int32 process id, Int32 secret key. */
export function backendKeyData(processId: number, secretKey: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeInt32BE(processId, 0);
  body.writeInt32BE(secretKey, 4);
  return message(BackendCode.BackendKeyData, body);
}

/** ReadyForQuery: 'Z', Int32 5, Byte1 transaction status. */
export function readyForQuery(status: TransactionStatus = TransactionStatus.Idle): Buffer {
  return message(BackendCode.ReadyForQuery, Buffer.from([status]));
}

/** ParameterStatus: 'S', then name and value as C strings. */
export function parameterStatus(name: string, value: string): Buffer {
  return message(BackendCode.ParameterStatus, Buffer.from(`${name}\0${value}\0`, 'utf8'));
}

/** The fields of an ErrorResponse or NoticeResponse the gateway fills in. */
export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'WARNING' | 'NOTICE';
  code: SqlStateCode;
  message: string;
  detail?: string | undefined;
  hint?: string | undefined;
}

/**
 * ErrorResponse ('E') or NoticeResponse ('N'): a list of (Byte1 field type, C string) terminated by a zero byte.
 * 'S' is the localized severity, 'V' the non-localized one (clients since PostgreSQL 9.6 prefer it).
 */
function fieldsMessage(code: BackendCode.ErrorResponse | BackendCode.NoticeResponse, fields: ErrorFields): Buffer {
  return serverFieldsMessage(code, { S: fields.severity, V: fields.severity, C: fields.code, M: fields.message, D: fields.detail, H: fields.hint });
}

export function errorResponse(fields: ErrorFields): Buffer {
  return fieldsMessage(BackendCode.ErrorResponse, fields);
}

export function noticeResponse(fields: ErrorFields): Buffer {
  return fieldsMessage(BackendCode.NoticeResponse, fields);
}

/** The parsed fields of a server's ErrorResponse / NoticeResponse, keyed by field type letter. */
export type ServerErrorFields = Partial<Record<string, string>>;

/** An ErrorResponse or NoticeResponse with the given fields in their order (absent ones left out). */
export function serverFieldsMessage(code: BackendCode.ErrorResponse | BackendCode.NoticeResponse, fields: ServerErrorFields): Buffer {
  const parts: string[] = [];
  for (const [type, value] of Object.entries(fields)) {
    // A NUL inside a field would end the C string early and desynchronise the client's parser.
    if (value !== undefined) parts.push(`${type}${value.replaceAll('\0', '')}`);
  }
  return message(code, Buffer.from(`${parts.join('\0')}\0\0`, 'utf8'));
}

/** Reads the body (after the 5-byte header) of an ErrorResponse or NoticeResponse. */
export function parseErrorFields(body: Buffer): ServerErrorFields {
  const fields: ServerErrorFields = {};
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const type = String.fromCharCode(body[offset]!);
    const end = body.indexOf(0, offset + 1);
    if (end < 0) break;
    fields[type] = body.toString('utf8', offset + 1, end);
    offset = end + 1;
  }
  return fields;
}
