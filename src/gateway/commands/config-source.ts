import { join } from 'node:path';
import { DbgateError } from '../../shared/errors.js';

/** `--state <dir>` (a dev stack's directory) or `--config <file>`: exactly one, resolved to a config file path. */
export function configFileFrom(options: { state?: string | undefined; config?: string | undefined }): string {
  if (options.state && options.config) {
    throw new DbgateError('USAGE', 'pass --state or --config, not both');
  }
  if (options.config) return options.config;
  if (options.state) return join(options.state, 'gateway.yaml');
  throw new DbgateError('USAGE', 'pass --state <dir> (a dev stack) or --config <file> (a gateway config)');
}
