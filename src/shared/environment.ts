/**
 * Every environment variable dbgate reads, in one place. The README's table is generated from the same words.
 */
export const ENVIRONMENT_VARIABLES = {
  DBGATE_GATEWAY: 'URL of the gateway API (e.g. https://dbgate.example.com); overrides the stored login',
  DBGATE_CREDENTIAL: 'a dbgate credential to use instead of the stored login (automation, break-glass)',
  DBGATE_CONFIG_DIR: 'directory for CLI config and file-stored secrets (default $XDG_CONFIG_HOME/dbgate, else ~/.config/dbgate)',
  DBGATE_PROFILE: 'the stored login to use when --profile is not given (default "default")',
  DBGATE_CLIENT_ID: 'agents: OAuth client id for dbgate login --client-credentials',
  DBGATE_CLIENT_SECRET: 'agents: OAuth client secret for dbgate login --client-credentials',
  DBGATE_SUBJECT_TOKEN: "agents: the person's IdP access token to act for (dbgate login --client-credentials --on-behalf-of)",
} as const;

export type EnvironmentVariable = keyof typeof ENVIRONMENT_VARIABLES;
