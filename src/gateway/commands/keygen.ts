import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { DbgateError } from '../../shared/errors.js';
import { generateSigningKeyJwk } from '../identity/credentials.js';

/** Writes a new Ed25519 credential-signing key (private JWK, mode 0600). Never overwrites an existing file. */
export async function keygenRun(options: { out: string }, context: CommandContext): Promise<void> {
  const jwk = await generateSigningKeyJwk();
  try {
    await writeFile(options.out, `${JSON.stringify(jwk, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new DbgateError('USAGE', `${options.out} already exists; refusing to overwrite a signing key`, {
        hint: 'rotating the key invalidates every credential; move the old file away first if that is what you want',
      });
    }
    throw error;
  }
  writeLine(context.stdout, `wrote ${options.out} (key id ${String(jwk['kid'])})`);
}

export function registerKeygen(program: Command, context: CommandContext): void {
  program
    .command('keygen')
    .description('create a credential-signing key for credentials.signing_key_file')
    .requiredOption('-o, --out <file>', 'where to write the private JWK')
    .addHelpText('after', '\nExample:\n  dbgate-gateway keygen --out /etc/dbgate/credential-signing.jwk\n')
    .action((options: { out: string }) => keygenRun(options, context));
}
