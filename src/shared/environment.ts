/**
 * Every environment variable dbgate reads, in one place. The README's table is generated from the same words.
 */
export const ENVIRONMENT_VARIABLES = {
  DBGATE_GATEWAY: 'URL of the gateway API (e.g. https://dbgate.example.com); overrides the stored login',
  DBGATE_CREDENTIAL: 'a dbgate credential to use instead of the stored login (automation, break-glass)',
  DBGATE_CONFIG_DIR: 'directory for CLI config and file-stored secrets (default $XDG_CONFIG_HOME/dbgate)',
} as const;

export type EnvironmentVariable = keyof typeof ENVIRONMENT_VARIABLES;
