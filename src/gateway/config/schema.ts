/**
 * The gateway's configuration file, as a schema. `loadGatewayConfig` validates a YAML file against it once, at the
 * edge; everything past that point works with the typed, resolved `GatewayConfig`.
 */
import { z } from 'zod';
import { policySchema } from './policy-schema.js';

/** "host:port"; IPv6 hosts in brackets ("[::1]:7432"). */
const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected "host:port", e.g. "0.0.0.0:5432"');

/** Durations like "90s", "15m", "1h", "7d". */
export const durationSchema = z
  .string()
  .regex(/^\d+(s|m|h|d)$/, 'expected a duration such as "90s", "15m", "1h" or "7d"');

/**
 * A secret is never written inline: the file names where to read it from, so the config can be committed,
 * printed and logged without leaking anything.
 */
const secretSource = z
  .object({
    password_env: z.string().min(1).optional(),
    password_file: z.string().min(1).optional(),
  })
  .strict();

const targetSchema = z
  .object({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(5432),
    database: z.string().min(1),
    user: z.string().min(1),
    password_env: z.string().min(1).optional(),
    password_file: z.string().min(1).optional(),
    /** disable: plain TCP; require: TLS without verifying the certificate; verify-full: TLS with CA + host name. */
    tls: z.enum(['disable', 'require', 'verify-full']).default('disable'),
    ca_file: z.string().min(1).optional(),
    description: z.string().optional(),
  })
  .strict()
  .refine((t) => t.tls !== 'verify-full' || t.ca_file !== undefined, {
    message: 'tls: verify-full needs ca_file',
    path: ['ca_file'],
  });

const stateStoreSchema = z
  .object({
    /** postgres://user@host:port/database — without a password; see password_env / password_file. */
    url: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL')
      .refine((url) => !/^postgres(ql)?:\/\/[^/@]*:[^/@]*@/.test(url), {
        message: 'put the state store password in password_env or password_file, not in the URL',
      }),
  })
  .extend(secretSource.shape)
  .strict();

export const gatewayConfigSchema = z
  .object({
    /** Names this gateway deployment; credentials are minted for audience "dbgate:<name>". */
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes').default('dbgate'),
    listen: z
      .object({
        pg: listenAddress,
        api: listenAddress,
        /** The host:port clients should use, when it differs from the bind address (load balancer, NAT). */
        public_pg: listenAddress.optional(),
      })
      .strict(),
    tls: z
      .object({
        cert_file: z.string().min(1),
        key_file: z.string().min(1),
        /**
         * Whether clients must use TLS on the PostgreSQL port. `false` is accepted only when `listen.pg` is a loopback
         * address (dev): a credential must never cross a network in clear text.
         */
        require: z.boolean().default(true),
      })
      .strict(),
    credentials: z
      .object({
        /** An Ed25519 private JWK (JSON file). Its public half verifies every credential. */
        signing_key_file: z.string().min(1),
        default_ttl: durationSchema.default('1h'),
        max_ttl: durationSchema.default('12h'),
      })
      .strict(),
    state_store: stateStoreSchema,
    /** The OIDC identity provider whose tokens `POST /v1/credentials` exchanges for dbgate credentials. */
    identity: z
      .object({
        /** Exactly as the IdP's discovery document spells it (https://…; http only for a loopback dev IdP). */
        issuer: z.string().url(),
        /** The public client `dbgate login` uses (authorization code + PKCE, device flow). */
        client_id: z.string().min(1),
        scopes: z.array(z.string().min(1)).default(['openid', 'email', 'profile', 'offline_access']),
        /** RFC 8707 resource indicator that agents request access tokens for (an absolute URI, e.g. urn:dbgate:gateway). */
        resource: z.string().regex(/^[a-z][a-z0-9+.-]*:/i, 'an absolute URI').optional(),
        /** `aud` values accepted on access tokens (agents' client-credentials tokens, token exchange). */
        audiences: z.array(z.string().min(1)).default([]),
        /** The claim that carries group names (Okta: groups, Entra ID: groups or roles, Keycloak: groups). */
        groups_claim: z.string().min(1).default('groups'),
        /** The claim that says "agent" for machine identities; absent means human. */
        kind_claim: z.string().min(1).default('dbgate_kind'),
      })
      .strict()
      .optional(),
    /** Who may reach which target, and the rules every statement is judged by (see src/gateway/policy/policy.ts). */
    policy: policySchema.optional(),
    targets: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'target names: lower-case letters, digits, _ and -'), targetSchema),
    limits: z
      .object({
        max_message_bytes: z.number().int().min(1024).max(0x3fffffff).default(0x3fffffff - 1),
        max_client_connections: z.number().int().min(1).default(1000),
        upstream_connect_timeout: durationSchema.default('10s'),
      })
      .strict()
      .default({ max_message_bytes: 0x3fffffff - 1, max_client_connections: 1000, upstream_connect_timeout: '10s' }),
  })
  .strict();

export type GatewayConfigFile = z.infer<typeof gatewayConfigSchema>;
export type TargetConfigFile = z.infer<typeof targetSchema>;
