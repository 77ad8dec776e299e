/** A CommandContext that captures output, for running commands in-process. */
import { Writable } from 'node:stream';
import type { CommandContext } from '../../src/shared/cli-runtime.js';

export function captureContext(
  env: NodeJS.ProcessEnv = {},
  signal = new AbortController().signal,
): CommandContext & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: new Writable({ write(chunk, _encoding, done) { out += String(chunk); done(); } }),
    stderr: new Writable({ write(chunk, _encoding, done) { err += String(chunk); done(); } }),
    stdoutIsTTY: false,
    env: { ...env },
    signal,
    onSignal: () => () => {},
    now: Date.now,
    out: () => out,
    err: () => err,
  };
}
