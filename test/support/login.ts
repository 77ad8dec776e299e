/**
 * What the login tests share: the CLI run in-process with a context whose streams the test can watch, and a real
 * headless Chromium (Debian `chromium`, driven by playwright-core) that signs people in on the dev IdP's pages.
 * Missing Chromium fails the tests with a clear message; it never skips them.
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { chromium, type Browser, type Page } from 'playwright-core';
import { main } from '../../src/cli/main.js';
import type { CommandContext } from '../../src/shared/cli-runtime.js';
import { sharedStack } from './stack.js';

export const CHROMIUM = '/usr/bin/chromium';
export const DEV_PASSWORD = 'dbgate-dev';

export async function launchChromium(): Promise<Browser> {
  try {
    await access(CHROMIUM);
  } catch {
    throw new Error(`the browser login tests need Chromium at ${CHROMIUM} (Debian package "chromium"; CI installs it)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** The shared dev stack's IdP; a clear failure if the stack does not expose one. */
export function devIdp(): { issuer: string; agentClientId: string; agentClientSecret: string } {
  const { idp } = sharedStack();
  if (!idp?.issuer) throw new Error('the shared dev stack exposes no IdP (sharedStack().idp): is dbgate-gateway dev too old?');
  return idp;
}

/** A CommandContext for `main(argv, context)` whose stdout and stderr a test can read and wait on. */
export interface CliHarness {
  context: CommandContext;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in stdout+stderr so far or to come. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Aborts the context's signal (Ctrl-C). */
  interrupt(): void;
}

export function cliHarness(env: NodeJS.ProcessEnv, seams: Partial<Pick<CommandContext, 'openUrl' | 'now' | 'sleep' | 'fetch'>> = {}): CliHarness {
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const waiter of waiters) waiter();
  };
  const controller = new AbortController();
  const context: CommandContext = {
    stdout: new Writable({ write(chunk, _encoding, done) { out += String(chunk); notify(); done(); } }),
    stderr: new Writable({ write(chunk, _encoding, done) { err += String(chunk); notify(); done(); } }),
    stdoutIsTTY: false,
    env: { ...env },
    signal: controller.signal,
    onSignal: () => () => {},
    now: Date.now,
    ...seams,
  };
  return {
    context,
    stdout: () => out,
    stderr: () => err,
    interrupt: () => controller.abort('SIGINT'),
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const match = pattern.exec(`${out}${err}`);
          if (!match) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(match);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${pattern} did not appear within ${timeoutMs} ms; stdout: ${out}\nstderr: ${err}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}

/** Runs `dbgate …` in-process. */
export async function dbgate(argv: string[], harness: CliHarness): Promise<number> {
  return main(argv, harness.context);
}

/** Fills the dev IdP's login page (inputs `login` and `password`, one submit button) and submits it. */
export async function signInOnIdpPage(page: Page, login: string, password = DEV_PASSWORD): Promise<void> {
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

export { runProcess, type Finished } from './processes.js';


/** The secrets a file-stored login holds (the test reads them the way an attacker with the user's uid could). */
export async function fileSecrets(configDir: string, profile = 'default'): Promise<{ credential: string; refresh_token?: string; superseded?: string[] }> {
  return JSON.parse(await readFile(join(configDir, `secrets-${profile}.json`), 'utf8')) as { credential: string; refresh_token?: string; superseded?: string[] };
}

/** The claims of a dbgate credential (its payload is plain base64url JSON). */
export function claimsOf(credential: string): { sub: string; sid: string; exp: number; act?: unknown } {
  return JSON.parse(Buffer.from(credential.split('.')[1]!, 'base64url').toString('utf8')) as { sub: string; sid: string; exp: number };
}
