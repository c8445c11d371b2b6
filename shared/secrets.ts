import type { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfigError, errorMessage } from './errors';

/** The JSON shape RDS and Aurora write into a managed database secret. */
export interface DatabaseSecret {
  host: string;
  port: number;
  username: string;
  password: string;
  dbname: string;
}

/** The two pieces of the SDK we use; the Lambda entry hands them over, anyone else loads them on first use. */
export interface SecretsManagerSdk {
  SecretsManagerClient: typeof SecretsManagerClient;
  GetSecretValueCommand: typeof GetSecretValueCommand;
}

/**
 * Without a NAT gateway or an endpoint the SDK's default is to wait until the Lambda timeout.
 * Two attempts of three seconds each fail a run within seconds, naming the missing route.
 */
const SECRETS_MANAGER_TIMEOUTS = { connectionTimeoutMs: 3_000, requestTimeoutMs: 3_000, maxAttempts: 2 };

let sdk: SecretsManagerSdk | undefined;
// Module scope: survives warm Lambda invocations, so a schedule does not pay a Secrets Manager call per run.
let secretsClient: SecretsManagerClient | undefined;
const cache = new Map<string, DatabaseSecret>();

function newClient(module: SecretsManagerSdk): SecretsManagerClient {
  return new module.SecretsManagerClient({
    maxAttempts: SECRETS_MANAGER_TIMEOUTS.maxAttempts,
    // Without throwOnRequestTimeout the SDK only warns at requestTimeout and keeps waiting.
    requestHandler: {
      connectionTimeout: SECRETS_MANAGER_TIMEOUTS.connectionTimeoutMs,
      requestTimeout: SECRETS_MANAGER_TIMEOUTS.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  });
}

/**
 * Builds the client now. The Lambda entry calls this at import, so the init phase (not the first
 * invocation) pays for the SDK; the CLI never does, so a local command never loads the SDK.
 */
export function useSecretsManager(module: SecretsManagerSdk): void {
  sdk = module;
  secretsClient = newClient(module);
}

async function client(): Promise<{ module: SecretsManagerSdk; client: SecretsManagerClient }> {
  sdk ??= await import('@aws-sdk/client-secrets-manager');
  secretsClient ??= newClient(sdk);
  return { module: sdk, client: secretsClient };
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

const UNREACHABLE = new Set(['ETIMEDOUT', 'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);

/** A timeout or a socket error: the request never got an answer from Secrets Manager. */
function isUnreachable(error: unknown): boolean {
  const e = error as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'TimeoutError' || (e?.code !== undefined && UNREACHABLE.has(e.code));
}

/** The secret, from cache unless `refresh` (after Postgres rejected the cached password). */
export async function getDatabaseSecret(secretId: string, options: { refresh?: boolean } = {}): Promise<DatabaseSecret> {
  const cached = cache.get(secretId);
  if (cached && !options.refresh) return cached;
  const { module, client: secrets } = await client();
  const started = Date.now();
  let text: string | undefined;
  try {
    text = (await secrets.send(new module.GetSecretValueCommand({ SecretId: secretId }))).SecretString;
  } catch (error) {
    if (!isUnreachable(error)) throw error;
    const region = process.env.AWS_REGION ?? 'REGION';
    throw new ConfigError(
      'Secrets Manager',
      `cannot reach Secrets Manager within ${Math.ceil((Date.now() - started) / 1000)} s (${errorMessage(error)}): ` +
        `the function's subnets need a NAT gateway or a com.amazonaws.${region}.secretsmanager VPC endpoint (private DNS on), ` +
        'and its security group must allow outbound HTTPS (443)',
    );
  }
  const secret = parseSecret(secretId, text);
  cache.set(secretId, secret);
  return secret;
}
