/**
 * Preload for `node --import ./test/support/record-module-loads.mjs …`: appends every module the process loads — ESM
 * through a resolve hook, CommonJS from the require cache at exit — one URL or path a line, to the file named by
 * DBGATE_TEST_MODULE_LOG. Lets a test assert what a command did not load (dbgate --help must not load pg, ink…).
 */
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const log = process.env.DBGATE_TEST_MODULE_LOG;

/** Runs in the loader thread (module.register runs hooks off the main thread in Node 20). */
export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  if (log) appendFileSync(log, `${resolved.url}\n`);
  return resolved;
}

if (isMainThread && log) {
  register(import.meta.url);
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => appendFileSync(log, Object.keys(cache).map((path) => `${path}\n`).join('')));
}
