/**
 * Maps the BackendKeyData the gateway gives clients to the upstream backend behind it. Clients never learn upstream
 * process ids or cancel secrets; a CancelRequest with a key the gateway did not issue does nothing, as in PostgreSQL.
 */
import { randomInt } from 'node:crypto';
import type { TargetConfig } from '../config/load.js';

export interface UpstreamBackend {
  target: TargetConfig;
  processId: number;
  secretKey: number;
}

/** Int32 range for both halves of the key; process ids stay positive as clients expect. */
const INT32_MAX = 0x7fffffff;

export class CancelKeyRegistry {
  private readonly backends = new Map<string, UpstreamBackend>();

  /** Issues a fresh client-facing key for `backend`. */
  register(backend: UpstreamBackend): { processId: number; secretKey: number } {
    for (;;) {
      const processId = randomInt(1, INT32_MAX);
      // The secret is the whole authentication of a cancel: cryptographically random, full 32 bits.
      const secretKey = randomInt(0, 0x100000000) | 0;
      const key = `${processId}:${secretKey}`;
      if (!this.backends.has(key)) {
        this.backends.set(key, backend);
        return { processId, secretKey };
      }
    }
  }

  lookup(processId: number, secretKey: number): UpstreamBackend | undefined {
    return this.backends.get(`${processId}:${secretKey}`);
  }

  unregister(processId: number, secretKey: number): void {
    this.backends.delete(`${processId}:${secretKey}`);
  }
}
