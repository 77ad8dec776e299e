/**
 * A minimal PostgreSQL client that keeps every byte it receives, for tests that must prove what did or did not
 * reach the client (masking), and that speak the extended protocol message by message.
 */
import { connect, type Socket } from 'node:net';
import { serialize } from 'pg-protocol';
import { startupMessage } from '../../src/gateway/wire/frontend-messages.js';

export interface ServerMessage {
  type: string;
  body: Buffer;
}

export interface Exchange {
  /** Everything the server sent for this exchange, as received. */
  bytes: Buffer;
  messages: ServerMessage[];
  /** Fields of each ErrorResponse ('C' SQLSTATE, 'M' message, 'D' detail, 'H' hint). */
  errors: Array<Record<string, string>>;
  /** DataRow values as text (null for SQL NULL). */
  rows: Array<Array<string | null>>;
}

export class RawClient {
  private buffer = Buffer.alloc(0);
  private readonly received: Buffer[] = [];
  private waiter: (() => void) | null = null;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.received.push(chunk);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  /**
   * Connects and logs in with a cleartext password (the tunnel's, or a credential on the plaintext loopback dev
   * gateway), returning once ReadyForQuery arrives. `parameters` go into the startup message too. A refused login
   * throws an Error whose `fields` are the server's ErrorResponse fields.
   */
  static async login(
    options: { host: string; port: number; user: string; database: string; password: string },
    parameters: Record<string, string> = {},
  ): Promise<RawClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(options.port, options.host, () => resolve(s));
      s.once('error', reject);
    });
    const client = new RawClient(socket);
    socket.write(startupMessage({ ...parameters, user: options.user, database: options.database }));
    const refused = (exchange: Exchange): Error =>
      Object.assign(new Error(`login failed: ${exchange.errors[0]!['M']}`), { fields: exchange.errors[0]! });
    const startup = await client.until((m) => m.type === 'R' || m.type === 'E');
    if (startup.errors.length > 0) throw refused(startup);
    socket.write(serialize.password(options.password));
    const login = await client.until((m) => m.type === 'Z' || m.type === 'E');
    if (login.errors.length > 0) throw refused(login);
    return client;
  }

  /** Sends a simple Query and collects everything up to ReadyForQuery. */
  query(sql: string): Promise<Exchange> {
    this.socket.write(serialize.query(sql));
    return this.until((m) => m.type === 'Z');
  }

  /** Sends raw frontend messages (e.g. Parse/Bind/Execute/Sync) and collects up to `readyCount` ReadyForQuery. */
  send(messages: Buffer[], readyCount = 1): Promise<Exchange> {
    this.socket.write(Buffer.concat(messages));
    let seen = 0;
    return this.until((m) => m.type === 'Z' && ++seen === readyCount);
  }

  close(): void {
    this.socket.end(serialize.end());
  }

  private async until(done: (message: ServerMessage) => boolean): Promise<Exchange> {
    const exchange: Exchange = { bytes: Buffer.alloc(0), messages: [], errors: [], rows: [] };
    const start = this.received.length;
    for (;;) {
      while (this.buffer.length >= 5 && this.buffer.length >= 1 + this.buffer.readInt32BE(1)) {
        const length = this.buffer.readInt32BE(1);
        const message = { type: String.fromCharCode(this.buffer[0]!), body: this.buffer.subarray(5, 1 + length) };
        this.buffer = this.buffer.subarray(1 + length);
        exchange.messages.push(message);
        if (message.type === 'E') exchange.errors.push(parseFields(message.body));
        if (message.type === 'D') exchange.rows.push(parseRow(message.body));
        if (done(message)) {
          exchange.bytes = Buffer.concat(this.received.slice(start));
          return exchange;
        }
      }
      if (this.closed) {
        exchange.bytes = Buffer.concat(this.received.slice(start));
        exchange.messages.push({ type: 'closed', body: Buffer.alloc(0) });
        return exchange;
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = null;
    }
  }
}

function parseFields(body: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const end = body.indexOf(0, offset + 1);
    fields[String.fromCharCode(body[offset]!)] = body.toString('utf8', offset + 1, end);
    offset = end + 1;
  }
  return fields;
}

function parseRow(body: Buffer): Array<string | null> {
  const count = body.readInt16BE(0);
  const values: Array<string | null> = [];
  let offset = 2;
  for (let i = 0; i < count; i += 1) {
    const length = body.readInt32BE(offset);
    offset += 4;
    if (length < 0) values.push(null);
    else {
      values.push(body.toString('utf8', offset, offset + length));
      offset += length;
    }
  }
  return values;
}
