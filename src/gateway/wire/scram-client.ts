/**
 * The client side of SCRAM-SHA-256 as PostgreSQL speaks it (no channel binding), used by the gateway to log in to
 * targets with their service credentials.
 *
 * @see https://www.postgresql.org/docs/current/sasl-authentication.html
 * @see https://datatracker.ietf.org/doc/html/rfc5802 (SCRAM) and rfc7677 (SCRAM-SHA-256)
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
/** base64("n,,"): the GS2 header for "no channel binding, no authzid". */
const GS2_HEADER_BASE64 = 'biws';

export class ScramError extends Error {
  readonly code = 'SCRAM_FAILED';
}

/**
 * PBKDF2 with 4096+ iterations is the expensive part of a login. Like pgbouncer, keep the derived keys per
 * (password, salt, iterations) so reconnect storms do not burn CPU; the cache holds derived keys only.
 */
const saltedPasswordCache = new Map<string, Buffer>();
const SALTED_PASSWORD_CACHE_LIMIT = 256;

async function saltedPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  const key = createHash('sha256').update(password).update('\0').update(salt).update(`\0${iterations}`).digest('hex');
  const cached = saltedPasswordCache.get(key);
  if (cached) return cached;
  // PostgreSQL applies SASLprep when the password is valid UTF-8 that prep accepts and uses the raw bytes
  // otherwise; for the ASCII service passwords the gateway generates both are the same.
  const derived = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  if (saltedPasswordCache.size >= SALTED_PASSWORD_CACHE_LIMIT) saltedPasswordCache.clear();
  saltedPasswordCache.set(key, derived);
  return derived;
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

export interface ScramClientOptions {
  /**
   * Test seam: the client nonce to send instead of a fresh random one, so an exchange can be checked against
   * published test vectors. Production code never sets it: a predictable nonce defeats replay protection.
   */
  clientNonce?: string;
}

/** One SCRAM exchange. Call the three steps in order with the server's messages. */
export class ScramClientSession {
  private readonly clientNonce: string;
  private readonly clientFirstBare: string;
  private expectedServerSignature: Buffer | null = null;

  constructor(
    private readonly password: string,
    options: ScramClientOptions = {},
  ) {
    this.clientNonce = options.clientNonce ?? randomBytes(18).toString('base64');
    this.clientFirstBare = `n=*,r=${this.clientNonce}`;
  }

  /** The client-first-message for SASLInitialResponse. PostgreSQL ignores the SCRAM user name, so it is "*". */
  clientFirstMessage(): string {
    return `n,,${this.clientFirstBare}`;
  }

  /** Answers the server-first-message (AuthenticationSASLContinue) with the client-final-message. */
  async clientFinalMessage(serverFirstMessage: string): Promise<string> {
    const attributes = parseAttributes(serverFirstMessage);
    const nonce = attributes.get('r');
    const saltBase64 = attributes.get('s');
    const iterations = Number(attributes.get('i'));
    if (!nonce || !nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) {
      throw new ScramError('server nonce does not extend the client nonce');
    }
    if (!saltBase64 || !Number.isInteger(iterations) || iterations < 1) {
      throw new ScramError('server-first-message lacks salt or iteration count');
    }
    const salted = await saltedPassword(this.password, Buffer.from(saltBase64, 'base64'), iterations);
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const clientFinalWithoutProof = `c=${GS2_HEADER_BASE64},r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirstMessage},${clientFinalWithoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < clientKey.length; i += 1) proof[i] = clientKey[i]! ^ clientSignature[i]!;
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return `${clientFinalWithoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks the server-final-message (AuthenticationSASLFinal): the server must prove it knows the password too. */
  verifyServerFinal(serverFinalMessage: string): void {
    const attributes = parseAttributes(serverFinalMessage);
    const error = attributes.get('e');
    if (error) throw new ScramError(`server rejected SCRAM exchange: ${error}`);
    const signature = Buffer.from(attributes.get('v') ?? '', 'base64');
    const expected = this.expectedServerSignature;
    if (!expected || signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
      throw new ScramError('server signature does not match: the server does not know the password');
    }
  }
}

function parseAttributes(message: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const part of message.split(',')) {
    const equals = part.indexOf('=');
    if (equals === 1) attributes.set(part[0]!, part.slice(2));
  }
  return attributes;
}

/** PostgreSQL's md5 scheme: "md5" + md5(md5(password + user) + salt). */
export function md5PasswordResponse(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user).digest('hex');
  return `md5${createHash('md5').update(inner).update(salt).digest('hex')}`;
}
