/**
 * A TLS connection from the tunnel to the gateway's PostgreSQL port, with the gateway's certificate pinned: by
 * SHA-256 fingerprint (from discovery, or configured), or by a CA file. A mismatch ends the connection before a
 * single byte of the credential is sent.
 */
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import { DbgateError } from '../../shared/errors.js';
import { sslRequest } from '../../gateway/wire/frontend-messages.js';
import { HandshakeReader } from '../../gateway/wire/handshake-reader.js';

export interface GatewayEndpoint {
  host: string;
  port: number;
  /** Pin: SHA-256 fingerprint of the gateway certificate, "AB:CD:…" (case and colons ignored). */
  fingerprint256?: string | undefined;
  /** Or: trust anchors for normal verification (host name checked). */
  ca?: Buffer | undefined;
}

function normalizeFingerprint(text: string): string {
  return text.replace(/:/g, '').toUpperCase();
}

export async function openGatewayConnection(endpoint: GatewayEndpoint, timeoutMs = 10_000): Promise<TLSSocket> {
  const tcp = await new Promise<Socket>((resolve, reject) => {
    const socket = connectTcp({ host: endpoint.host, port: endpoint.port });
    socket.setNoDelay(true);
    const timer = setTimeout(() => socket.destroy(new Error('timed out')), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(new DbgateError('GATEWAY_UNREACHABLE', `cannot reach the gateway at ${endpoint.host}:${endpoint.port}: ${error.message}`, {
        hint: 'check that the gateway is running and reachable',
      }));
    });
  });
  const reader = new HandshakeReader(tcp);
  tcp.write(sslRequest());
  let answer: number;
  try {
    answer = await reader.readByte();
  } catch (error) {
    tcp.destroy();
    throw new DbgateError('GATEWAY_UNREACHABLE', `the gateway closed the connection during TLS negotiation`, { cause: error });
  } finally {
    reader.detach();
  }
  if (answer !== 0x53 /* 'S' */) {
    tcp.destroy();
    // Fail closed: the credential never travels in clear text.
    throw new DbgateError('GATEWAY_TLS_MISMATCH', `the gateway at ${endpoint.host}:${endpoint.port} does not offer TLS`, {
      hint: 'the tunnel only sends credentials over TLS; check the gateway address',
    });
  }
  const pinned = endpoint.fingerprint256 !== undefined;
  const tls = await new Promise<TLSSocket>((resolve, reject) => {
    const socket = connectTls({
      socket: tcp,
      // SNI carries host names only (RFC 6066); an IP address is verified against the certificate's IP SANs.
      ...(isIP(endpoint.host) ? {} : { servername: endpoint.host }),
      ...(endpoint.ca ? { ca: endpoint.ca } : {}),
      // With a pin, the fingerprint is the trust decision (checked below before anything is sent).
      rejectUnauthorized: !pinned,
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', (error) => reject(new DbgateError('GATEWAY_TLS_MISMATCH', `TLS with the gateway failed: ${error.message}`, {
      hint: 'the gateway certificate is not trusted; check --ca or the pinned fingerprint',
    })));
  });
  tls.setNoDelay(true);
  if (pinned) {
    const actual = tls.getPeerCertificate().fingerprint256 ?? '';
    if (normalizeFingerprint(actual) !== normalizeFingerprint(endpoint.fingerprint256!)) {
      tls.destroy();
      throw new DbgateError('GATEWAY_TLS_MISMATCH',
        `the gateway's certificate (SHA-256 ${actual}) does not match the pinned fingerprint ${endpoint.fingerprint256}`,
        { hint: 'someone may be intercepting the connection, or the gateway certificate changed: ask the gateway operator' });
    }
  }
  return tls;
}
