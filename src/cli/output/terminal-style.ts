/**
 * Whether the CLI colours what it prints. Decided from the command context rather than the process, so that a test's
 * captured output and a pipe behave alike:
 *
 * 1. `FORCE_COLOR` wins: `0` / `false` never colour, anything else always does (chalk's reading of it).
 * 2. `NO_COLOR` set to anything but the empty string: never (https://no-color.org).
 * 3. Otherwise colour only when stdout is a terminal, and not `TERM=dumb`.
 */
import { Chalk, supportsColor, type ChalkInstance } from 'chalk';
import type { CommandContext } from '../../shared/cli-runtime.js';

export type ColorLevel = 0 | 1 | 2 | 3;

/** chalk's colour levels: 0 none, 1 basic 16 colours, 2 256 colours, 3 truecolor. */
export function colorLevel(context: Pick<CommandContext, 'env' | 'stdoutIsTTY'>): ColorLevel {
  const { env } = context;
  const force = env['FORCE_COLOR'];
  if (force !== undefined) {
    if (force === 'false' || force === '0') return 0;
    const level = force === '' || force === 'true' ? 1 : Number.parseInt(force, 10);
    return Number.isInteger(level) && level > 0 ? (Math.min(level, 3) as ColorLevel) : 1;
  }
  if (env['NO_COLOR']) return 0;
  if (!context.stdoutIsTTY || env['TERM'] === 'dumb') return 0;
  // The terminal's own depth when the process's stdout is that terminal; basic colours otherwise.
  return supportsColor ? (Math.max(1, supportsColor.level) as ColorLevel) : 1;
}

/** A chalk instance that colours exactly when `colorLevel` says so. */
export function terminalStyle(context: Pick<CommandContext, 'env' | 'stdoutIsTTY'>): ChalkInstance {
  return new Chalk({ level: colorLevel(context) });
}
