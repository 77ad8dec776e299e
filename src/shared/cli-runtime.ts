/**
 * What both executables share: the context object that carries the outside world into commands, and the single
 * place where errors become messages and exit codes. Only bin/ calls process.exit with the number returned here.
 */
import { Command, CommanderError } from 'commander';
import { DbgateError, ExitCode, type ExitCodeValue } from './errors.js';

/** Everything a command may touch outside its arguments. Tests pass their own. */
export interface CommandContext {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Whether stdout is an interactive terminal (tables and live views) or a pipe (plain lines, JSON). */
  stdoutIsTTY: boolean;
  env: NodeJS.ProcessEnv;
  /** Aborted on the first SIGINT/SIGTERM (reason: the signal name): long-running commands shut down when it fires. */
  signal: AbortSignal;
  /**
   * Every SIGINT/SIGTERM, for commands that supervise a child process: the child gets the terminal's Ctrl-C itself,
   * so such a command ignores SIGINT and forwards SIGTERM. Returns an unsubscribe function.
   */
  onSignal: (listener: (signal: 'SIGINT' | 'SIGTERM') => void) => () => void;
  now: () => number;
  // The seams below are optional so that the gateway's commands (which never log in) need not provide them; the
  // CLI resolves each to its real implementation when a command first needs it (src/cli/context-services.ts).
  /** Opens a URL in the user's browser. Default: the `open` package (which resolves even when nothing opened). */
  openUrl?: (url: string) => Promise<void>;
  /** HTTP for the gateway API and the identity provider. Default: the global fetch. */
  fetch?: typeof fetch;
  /** The store for one profile's secrets. Default: the OS keychain (@napi-rs/keyring) or a 0600 file. */
  secretStore?: SecretStoreFactory;
  /** Waits `ms` (device-flow polling); rejects when `signal` aborts. Default: a timer. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** Where a login's secrets (dbgate credential, IdP refresh token) are kept. */
export type SecretStorageKind = 'keychain' | 'file';

/**
 * One profile's secrets, as one opaque string (the CLI stores JSON). Every method throws a DbgateError that says
 * what to do when the store cannot be used; none falls back to another store.
 */
export interface SecretStore {
  readonly kind: SecretStorageKind;
  /** For people: "OS keychain (service dbgate, account default)" or the file's path. */
  readonly location: string;
  /** The stored value, or null when nothing is stored. */
  read(): Promise<string | null>;
  write(value: string): Promise<void>;
  /** Resolves true when something was deleted. */
  delete(): Promise<boolean>;
}

export type SecretStoreFactory = (kind: SecretStorageKind, profile: string, configDir: string) => SecretStore;

/** The context of a real process: its streams, environment and signals. */
export function processContext(): CommandContext {
  const controller = new AbortController();
  const listeners = new Set<(signal: 'SIGINT' | 'SIGTERM') => void>();
  for (const name of ['SIGINT', 'SIGTERM'] as const) {
    process.on(name, () => {
      // A supervising command (connect -- psql) decides for itself; otherwise the first signal shuts down.
      if (listeners.size > 0) for (const listener of listeners) listener(name);
      else controller.abort(name);
    });
  }
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdoutIsTTY: Boolean(process.stdout.isTTY),
    env: process.env,
    signal: controller.signal,
    onSignal(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    now: Date.now,
  };
}

/** Thrown by a command to end with a specific exit code and no message (e.g. the exit code of a launched psql). */
export class ExitWith extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

/** Writes a line to a stream. */
export function writeLine(stream: NodeJS.WritableStream, text = ''): void {
  stream.write(`${text}\n`);
}

/** Resolves when `signal` aborts (immediately if it already has). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/**
 * Runs a commander program and turns the outcome into an exit code: DbgateError → its message and hint on one
 * line each, commander usage errors → 2, anything else is a bug → stack trace and 1.
 */
export async function runProgram(program: Command, argv: string[], context: CommandContext, name: string): Promise<number> {
  program.exitOverride();
  program.configureOutput({
    writeOut: (text) => context.stdout.write(text),
    writeErr: (text) => context.stderr.write(text),
  });
  for (const command of program.commands) command.exitOverride();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof ExitWith) return error.exitCode;
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') {
        return ExitCode.ok;
      }
      return ExitCode.usage;
    }
    if (error instanceof DbgateError) {
      writeLine(context.stderr, `${name}: ${error.message}`);
      if (error.hint) writeLine(context.stderr, `hint: ${error.hint}`);
      return error.exitCode;
    }
    writeLine(context.stderr, `${name}: internal error (this is a bug; please report it with the text below)`);
    writeLine(context.stderr, error instanceof Error ? (error.stack ?? error.message) : String(error));
    return ExitCode.error;
  }
}

/** Parses a TCP port option: an integer 0-65535 (0 = pick a free one). */
export function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new DbgateError('USAGE', `not a port number: ${value}`, { hint: 'use 1-65535, or 0 for a random port' });
  }
  return port;
}
