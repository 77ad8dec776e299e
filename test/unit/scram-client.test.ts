/**
 * The gateway's SCRAM-SHA-256 client, checked against the RFC 7677 test vector.
 *
 * PostgreSQL ignores the SCRAM user name, so the client sends "n=*" where the RFC's example sends "n=user"; the
 * client-first-message-bare is part of AuthMessage, so the proof differs from the RFC's. The expected values for "n=*"
 * come from an independent implementation of the RFC 5802 formulas below, which is itself first checked against
 * the RFC's published proof and server signature.
 *
 * @see https://datatracker.ietf.org/doc/html/rfc7677#section-3
 * @see https://datatracker.ietf.org/doc/html/rfc5802#section-3
 */
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { md5PasswordResponse, ScramClientSession, ScramError } from '../../src/gateway/wire/scram-client.js';

// RFC 7677 §3.
const PASSWORD = 'pencil';
const CLIENT_NONCE = 'rOprNGfwEbeRWgbNEkqO';
const SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
const RFC_CLIENT_FIRST_BARE = 'n=user,r=rOprNGfwEbeRWgbNEkqO';
const RFC_CLIENT_FINAL =
  'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
const RFC_SERVER_FINAL = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

const hmac = (key: Buffer, data: Buffer | string): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();
const xor = (a: Buffer, b: Buffer): Buffer => Buffer.from(a.map((byte, i) => byte ^ b[i]!));

/** Hi(str, salt, i) of RFC 5802 §2.2, written out rather than delegated to PBKDF2. */
function hi(password: string, salt: Buffer, iterations: number): Buffer {
  let u = hmac(Buffer.from(password, 'utf8'), Buffer.concat([salt, Buffer.from([0, 0, 0, 1])])); // U1 = HMAC(str, salt + INT(1))
  let result = u;
  for (let i = 2; i <= iterations; i += 1) {
    u = hmac(Buffer.from(password, 'utf8'), u);
    result = xor(result, u);
  }
  return result;
}

/** RFC 5802 §3: the client-final-message and the server-final-message a correct exchange produces. */
function expectedExchange(clientFirstBare: string, serverFirst: string): { clientFinal: string; serverFinal: string } {
  const attributes = new Map(serverFirst.split(',').map((part) => [part[0]!, part.slice(2)]));
  const saltedPassword = hi(PASSWORD, Buffer.from(attributes.get('s')!, 'base64'), Number(attributes.get('i')));
  const clientKey = hmac(saltedPassword, 'Client Key');
  const storedKey = sha256(clientKey);
  const clientFinalWithoutProof = `c=biws,r=${attributes.get('r')!}`; // biws = base64("n,,")
  const authMessage = `${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
  const clientProof = xor(clientKey, hmac(storedKey, authMessage));
  const serverSignature = hmac(hmac(saltedPassword, 'Server Key'), authMessage);
  return {
    clientFinal: `${clientFinalWithoutProof},p=${clientProof.toString('base64')}`,
    serverFinal: `v=${serverSignature.toString('base64')}`,
  };
}

describe('the independent RFC 5802 implementation used as the oracle', () => {
  it('reproduces the RFC 7677 test vector for n=user', () => {
    expect(expectedExchange(RFC_CLIENT_FIRST_BARE, SERVER_FIRST)).toEqual({
      clientFinal: RFC_CLIENT_FINAL,
      serverFinal: RFC_SERVER_FINAL,
    });
  });
});

describe('ScramClientSession', () => {
  const expected = expectedExchange(`n=*,r=${CLIENT_NONCE}`, SERVER_FIRST);

  it('sends the GS2 header for no channel binding and the user name "*" in its client-first-message', () => {
    const session = new ScramClientSession(PASSWORD, { clientNonce: CLIENT_NONCE });
    expect(session.clientFirstMessage()).toBe(`n,,n=*,r=${CLIENT_NONCE}`);
  });

  it('answers the RFC 7677 server-first-message with the proof for n=*', async () => {
    const session = new ScramClientSession(PASSWORD, { clientNonce: CLIENT_NONCE });
    session.clientFirstMessage();
    expect(await session.clientFinalMessage(SERVER_FIRST)).toBe(expected.clientFinal);
  });

  it('accepts the server signature for its own exchange', async () => {
    const session = new ScramClientSession(PASSWORD, { clientNonce: CLIENT_NONCE });
    await session.clientFinalMessage(SERVER_FIRST);
    expect(() => session.verifyServerFinal(expected.serverFinal)).not.toThrow();
  });

  it('rejects a server signature computed over a different AuthMessage (the RFC one, for n=user)', async () => {
    const session = new ScramClientSession(PASSWORD, { clientNonce: CLIENT_NONCE });
    await session.clientFinalMessage(SERVER_FIRST);
    expect(() => session.verifyServerFinal(RFC_SERVER_FINAL)).toThrow(ScramError);
  });

  it('rejects a server that does not know the password', async () => {
    const session = new ScramClientSession('not-pencil', { clientNonce: CLIENT_NONCE });
    await session.clientFinalMessage(SERVER_FIRST);
    expect(() => session.verifyServerFinal(expected.serverFinal)).toThrow(/server signature does not match/);
  });

  it.each([
    ['missing', ''],
    ['truncated', expected.serverFinal.slice(0, -8)],
    ['not base64 of 32 bytes', 'v=AAAA'],
  ])('rejects a %s server signature', async (_, serverFinal) => {
    const session = new ScramClientSession(PASSWORD, { clientNonce: CLIENT_NONCE });
    await session.clientFinalMessage(SERVER_FIRST);
    expect(() => session.verifyServerFinal(serverFinal)).toThrow(ScramError);
  });

  it('reports a server-final-message with e= as a ScramError naming the server error', async () => {
    const session = new ScramClientSession(PASSWORD, { clientNonce: CLIENT_NONCE });
    await session.clientFinalMessage(SERVER_FIRST);
    expect(() => session.verifyServerFinal('e=invalid-proof')).toThrow(ScramError);
    expect(() => session.verifyServerFinal('e=invalid-proof')).toThrow(/invalid-proof/);
  });

  it('refuses to accept a server-final-message before it has sent its proof', () => {
    const session = new ScramClientSession(PASSWORD, { clientNonce: CLIENT_NONCE });
    expect(() => session.verifyServerFinal(expected.serverFinal)).toThrow(ScramError);
  });

  it.each([
    ['another nonce', SERVER_FIRST.replace(`r=${CLIENT_NONCE}`, 'r=XOprNGfwEbeRWgbNEkqO')],
    ['the client nonce unextended', `r=${CLIENT_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`],
    ['a prefix of the client nonce', `r=${CLIENT_NONCE.slice(0, 10)},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`],
    ['no nonce', 's=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'],
  ])('rejects a server-first-message with %s', async (_, serverFirst) => {
    const session = new ScramClientSession(PASSWORD, { clientNonce: CLIENT_NONCE });
    await expect(session.clientFinalMessage(serverFirst)).rejects.toThrow(
      new ScramError('server nonce does not extend the client nonce'),
    );
  });

  it.each([
    ['no salt', `r=${CLIENT_NONCE}xyz,i=4096`],
    ['no iteration count', `r=${CLIENT_NONCE}xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==`],
    ['an iteration count of 0', `r=${CLIENT_NONCE}xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0`],
    ['a non-numeric iteration count', `r=${CLIENT_NONCE}xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=many`],
  ])('rejects a server-first-message with %s', async (_, serverFirst) => {
    const session = new ScramClientSession(PASSWORD, { clientNonce: CLIENT_NONCE });
    await expect(session.clientFinalMessage(serverFirst)).rejects.toThrow(ScramError);
  });

  it('uses a fresh random nonce of printable characters without commas when none is given', () => {
    const first = new ScramClientSession(PASSWORD).clientFirstMessage();
    const second = new ScramClientSession(PASSWORD).clientFirstMessage();
    // RFC 5802 §7: nonce = printable ASCII except ",".
    expect(first).toMatch(/^n,,n=\*,r=[\x21-\x2b\x2d-\x7e]{18,}$/);
    expect(first).not.toBe(second);
  });
});

describe('md5PasswordResponse', () => {
  // PostgreSQL: concat('md5', md5(concat(md5(concat(password, username)), random-salt))).
  // @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
  const salt = Buffer.from([0x93, 0x7a, 0x1c, 0x05]);

  it('matches a value computed with coreutils md5sum for alice / pencil', () => {
    // inner=$(printf pencilalice | md5sum); { printf "$inner"; printf '\x93\x7a\x1c\x05'; } | md5sum
    expect(md5PasswordResponse('alice', PASSWORD, salt)).toBe('md5a377924306eb2ee2b23518493420c413');
  });

  it('follows the documented formula for any user, password and salt', () => {
    const md5 = (data: Buffer): string => createHash('md5').update(data).digest('hex');
    const user = 'svc_orders';
    const password = 'pässwörd';
    const otherSalt = Buffer.from([0x00, 0xff, 0x10, 0x80]);
    const inner = md5(Buffer.from(password + user, 'utf8'));
    const expected = `md5${md5(Buffer.concat([Buffer.from(inner, 'latin1'), otherSalt]))}`;
    expect(md5PasswordResponse(user, password, otherSalt)).toBe(expected);
  });
});
