/**
 * One refresh at a time per profile, across processes. IdPs rotate refresh tokens (RFC 9700 §4.14.2): two CLIs
 * refreshing at once would present the same token twice, and the IdP treats the second use as theft and revokes
 * the whole login. So a refresh holds `<config dir>/<profile>.refresh.lock` (created exclusively) and re-reads the
 * stored secrets once it has it: another process may have refreshed in the meantime.
 */
import { open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DbgateError } from '../../shared/errors.js';
import { ensureConfigDirectory } from './cli-config.js';

/** A lock older than this is left over from a crashed process (a refresh takes seconds). */
const STALE_AFTER_MS = 60_000;
const WAIT_AT_MOST_MS = 45_000;
const RETRY_EVERY_MS = 100;

export async function withRefreshLock<T>(configDir: string, profile: string, work: () => Promise<T>): Promise<T> {
  await ensureConfigDirectory(configDir);
  const path = join(configDir, `${profile}.refresh.lock`);
  const deadline = Date.now() + WAIT_AT_MOST_MS;
  for (;;) {
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > STALE_AFTER_MS) {
        await rm(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new DbgateError('IO', `another dbgate process has been refreshing this login for too long (${path})`, {
          hint: `if no other dbgate is running, delete ${path}`,
        });
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_EVERY_MS));
    }
  }
  try {
    return await work();
  } finally {
    await rm(path, { force: true });
  }
}
