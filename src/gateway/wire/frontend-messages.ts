/**
 * Writers for the frontend messages the gateway and the tunnel send as clients. Password and SASL messages come
 * from pg-protocol's serializer; these are the startup-phase packets it either lacks or writes with extra
 * parameters we must not add (it always appends client_encoding).
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import {
  CANCEL_REQUEST_BYTES,
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  PROTOCOL_VERSION_3_0,
  SSL_REQUEST_CODE,
  STARTUP_HEADER_BYTES,
} from './protocol.js';

/** StartupMessage: Int32 length, Int32 196608 (3.0), then name/value C strings, then a terminating zero byte. */
export function startupMessage(parameters: ReadonlyMap<string, string> | Record<string, string>): Buffer {
  const entries = parameters instanceof Map ? [...parameters] : Object.entries(parameters);
  const text = entries.map(([name, value]) => `${name}\0${value}\0`).join('');
  const pairs = Buffer.from(`${text}\0`, 'utf8');
  const out = Buffer.allocUnsafe(STARTUP_HEADER_BYTES + pairs.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(PROTOCOL_VERSION_3_0, 4);
  pairs.copy(out, STARTUP_HEADER_BYTES);
  return out;
}

function requestPacket(code: number): Buffer {
  const out = Buffer.allocUnsafe(STARTUP_HEADER_BYTES);
  out.writeInt32BE(STARTUP_HEADER_BYTES, 0);
  out.writeInt32BE(code, 4);
  return out;
}

/** SSLRequest: Int32 8, Int32 80877103. The server answers one byte, 'S' or 'N'. */
export function sslRequest(): Buffer {
  return requestPacket(SSL_REQUEST_CODE);
}

/** GSSENCRequest: Int32 8, Int32 80877104. */
export function gssEncRequest(): Buffer {
  return requestPacket(GSSENC_REQUEST_CODE);
}

/** CancelRequest: Int32 16, Int32 80877102, Int32 process id, Int32 secret key. */
export function cancelRequest(processId: number, secretKey: number): Buffer {
  const out = Buffer.allocUnsafe(CANCEL_REQUEST_BYTES);
  out.writeInt32BE(CANCEL_REQUEST_BYTES, 0);
  out.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeInt32BE(processId, 8);
  out.writeInt32BE(secretKey, 12);
  return out;
}
