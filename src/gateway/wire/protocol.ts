/**
 * PostgreSQL frontend/backend protocol 3.0 constants.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** Every message after the startup packet: 1 byte type + Int32 length (which counts itself, not the type byte). */
export const MESSAGE_HEADER_BYTES = 5;
/** The startup-phase packets have no type byte: Int32 length + Int32 code. */
export const STARTUP_HEADER_BYTES = 8;

/** Protocol 3.0 as the StartupMessage encodes it: major 3 in the high 16 bits, minor 0. */
export const PROTOCOL_VERSION_3_0 = 196608;
/** Magic "protocol versions" of the special startup-phase requests. */
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** A CancelRequest is exactly: Int32 16, Int32 code, Int32 process id, Int32 secret key. */
export const CANCEL_REQUEST_BYTES = 16;

/**
 * PostgreSQL refuses startup packets over 10,000 bytes (MAX_STARTUP_PACKET_LENGTH); we do the same so a client
 * cannot make us buffer an arbitrary amount before it has authenticated.
 */
export const MAX_STARTUP_PACKET_BYTES = 10_000;
/**
 * PostgreSQL's own ceiling for one message (PQ_LARGE_MESSAGE_LIMIT = MaxAllocSize - 1). Anything larger can only be
 * garbage or an attack, and is refused before a single byte of it is buffered.
 */
export const MAX_MESSAGE_BYTES = 0x3fffffff - 1;

/** Message type bytes sent by the client. */
export const enum FrontendCode {
  Bind = 0x42, // 'B'
  Close = 0x43, // 'C'
  Describe = 0x44, // 'D'
  Execute = 0x45, // 'E'
  FunctionCall = 0x46, // 'F'
  Flush = 0x48, // 'H'
  Parse = 0x50, // 'P'
  Query = 0x51, // 'Q'
  Sync = 0x53, // 'S'
  Terminate = 0x58, // 'X'
  CopyFail = 0x66, // 'f'
  CopyDone = 0x63, // 'c'
  CopyData = 0x64, // 'd'
  /** PasswordMessage, SASLInitialResponse and SASLResponse all share 'p'. */
  Password = 0x70, // 'p'
}

/** Message type bytes sent by the server. */
export const enum BackendCode {
  ParseComplete = 0x31, // '1'
  BindComplete = 0x32, // '2'
  CloseComplete = 0x33, // '3'
  NotificationResponse = 0x41, // 'A'
  CommandComplete = 0x43, // 'C'
  DataRow = 0x44, // 'D'
  ErrorResponse = 0x45, // 'E'
  CopyInResponse = 0x47, // 'G'
  CopyOutResponse = 0x48, // 'H'
  EmptyQueryResponse = 0x49, // 'I'
  BackendKeyData = 0x4b, // 'K'
  NoticeResponse = 0x4e, // 'N'
  Authentication = 0x52, // 'R'
  ParameterStatus = 0x53, // 'S'
  RowDescription = 0x54, // 'T'
  FunctionCallResponse = 0x56, // 'V'
  CopyBothResponse = 0x57, // 'W'
  ReadyForQuery = 0x5a, // 'Z'
  CopyDone = 0x63, // 'c'
  CopyData = 0x64, // 'd'
  NoData = 0x6e, // 'n'
  PortalSuspended = 0x73, // 's'
  ParameterDescription = 0x74, // 't'
  NegotiateProtocolVersion = 0x76, // 'v'
}

/** The Int32 that follows 'R' and says which authentication step this is. */
export const enum AuthenticationKind {
  Ok = 0,
  CleartextPassword = 3,
  MD5Password = 5,
  SASL = 10,
  SASLContinue = 11,
  SASLFinal = 12,
}

/** Transaction status byte of ReadyForQuery. */
export const enum TransactionStatus {
  Idle = 0x49, // 'I'
  InTransaction = 0x54, // 'T'
  Failed = 0x45, // 'E'
}

/** SQLSTATE codes the gateway itself raises. @see https://www.postgresql.org/docs/current/errcodes-appendix.html */
export const SqlState = {
  protocolViolation: '08P01',
  connectionFailure: '08006',
  sqlclientUnableToEstablishSqlconnection: '08001',
  invalidAuthorizationSpecification: '28000',
  invalidPassword: '28P01',
  invalidCatalogName: '3D000',
  insufficientPrivilege: '42501',
  featureNotSupported: '0A000',
  tooManyConnections: '53300',
  adminShutdown: '57P01',
  queryCanceled: '57014',
  internalError: 'XX000',
} as const;
export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];
