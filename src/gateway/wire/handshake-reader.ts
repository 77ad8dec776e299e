/**
 * Promise-style reading of a socket during a short handshake (upstream login, tunnel-to-gateway login), where
 * code reads more naturally as "await the next message" than as event handlers. Once the handshake is done,
 * `detach()` hands the unread bytes to whatever takes over the socket.
 */
import type { Duplex } from 'node:stream';
import { PgMessageReader, type PgMessage } from './message-reader.js';

export class HandshakeReader {
  private readonly reader = new PgMessageReader();
  private waiter: (() => void) | null = null;
  private failure: Error | null = null;
  private readonly onData = (chunk: Buffer): void => {
    this.reader.push(chunk);
    this.wake();
  };
  private readonly onEnd = (): void => this.fail(new Error('connection closed by peer'));
  private readonly onError = (error: Error): void => this.fail(error);

  constructor(private readonly socket: Duplex) {
    this.reader.expectStartupPacket = false;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  /** One raw byte: the answer to SSLRequest / GSSENCRequest. */
  async readByte(): Promise<number> {
    for (;;) {
      const buffered = this.reader.drain();
      if (buffered.length > 0) {
        const first = buffered[0]!;
        const byte = first[0]!;
        // A server must not send anything after 'S' before the TLS handshake: bytes here would be injected plaintext.
        if (first.length > 1 || buffered.length > 1) throw new Error('unexpected data after SSL response');
        return byte;
      }
      await this.wait();
    }
  }

  async readMessage(): Promise<PgMessage> {
    for (;;) {
      const message = this.reader.next();
      if (message) return message;
      await this.wait();
    }
  }

  /** Stops listening and returns the bytes received but not read. */
  detach(): Buffer[] {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    return this.reader.drain();
  }

  private wait(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = () => (this.failure ? reject(this.failure) : resolve());
    });
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.wake();
  }
}
