/**
 * The CLI's view of the context seams: each optional seam of CommandContext resolved to the test's fake or, when
 * absent, to the real thing. Heavy modules (`open`, the native keyring) load only when a command first uses them.
 */
import type { CommandContext, SecretStore, SecretStorageKind } from '../shared/cli-runtime.js';
import { FileSecretStore, KeychainSecretStore } from './profile/secret-store.js';

export function openUrlOf(context: CommandContext): (url: string) => Promise<void> {
  return context.openUrl ?? (async (url: string) => {
    const { default: open } = await import('open');
    const child = await open(url);
    // A missing opener (no xdg-open, no display) must not crash the login: the URL is printed anyway.
    child.on('error', () => {});
  });
}

export function fetchOf(context: CommandContext): typeof fetch {
  return context.fetch ?? fetch;
}

export function sleepOf(context: CommandContext): (ms: number, signal: AbortSignal) => Promise<void> {
  return context.sleep ?? ((ms, signal) => new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  }));
}

export function secretStoreOf(context: CommandContext, kind: SecretStorageKind, profile: string, configDir: string): SecretStore {
  if (context.secretStore) return context.secretStore(kind, profile, configDir);
  return kind === 'keychain' ? new KeychainSecretStore(profile, configDir) : new FileSecretStore(profile, configDir);
}
