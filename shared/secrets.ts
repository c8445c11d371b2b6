import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfigError } from './errors';

/** The JSON shape RDS and Aurora write into a managed database secret. */
export interface DatabaseSecret {
  host: string;
  port: number;
  username: string;
  password: string;
  dbname: string;
}

// Module scope: survives warm Lambda invocations, so a schedule does not pay a Secrets Manager call per
// run. Built at import, so Lambda's init phase (not the first invocation) pays for it.
let secretsClient: SecretsManagerClient | undefined = new SecretsManagerClient({});
const cache = new Map<string, DatabaseSecret>();

function client(): SecretsManagerClient {
  secretsClient ??= new SecretsManagerClient({});
  return secretsClient;
}

/** Forget cached secrets and the SDK client (tests, and after the SDK's endpoint is changed). */
export function resetSecretCache(): void {
  cache.clear();
  secretsClient = undefined;
}

function parseSecret(secretId: string, text: string | undefined): DatabaseSecret {
  const where = `secret ${secretId}`;
  if (!text) throw new ConfigError(where, 'has no SecretString (binary secrets are not supported)');
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Never echo the text: it holds the password.
    throw new ConfigError(where, 'is not JSON; expected {"host","port","username","password","dbname"}');
  }
  const missing = ['host', 'username', 'password'].filter((key) => typeof raw[key] !== 'string' || raw[key] === '');
  if (missing.length > 0) throw new ConfigError(where, `is missing ${missing.join(', ')}`);
  const port = Number(raw.port ?? 5432);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new ConfigError(`${where}.port`, 'is not a TCP port');
  return {
    host: raw.host as string,
    port,
    username: raw.username as string,
    password: raw.password as string,
    dbname: typeof raw.dbname === 'string' && raw.dbname ? raw.dbname : 'postgres',
  };
}

/** The secret, from cache unless `refresh` (after Postgres rejected the cached password). */
export async function getDatabaseSecret(secretId: string, options: { refresh?: boolean } = {}): Promise<DatabaseSecret> {
  const cached = cache.get(secretId);
  if (cached && !options.refresh) return cached;
  const response = await client().send(new GetSecretValueCommand({ SecretId: secretId }));
  const secret = parseSecret(secretId, response.SecretString);
  cache.set(secretId, secret);
  return secret;
}
