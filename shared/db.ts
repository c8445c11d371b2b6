import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import pg from 'pg';
import { applicationName, ENV, SHIPPED_CA_BUNDLE_FILE } from './environment';
import { ConfigError, errorMessage } from './errors';
import { SQLSTATE, sqlState } from './postgres';
import { type DatabaseSecret, getDatabaseSecret } from './secrets';

/** Where the connection comes from: a URL (CLI, tests) or a Secrets Manager secret (Lambda). */
export type DatabaseSource =
  | { kind: 'url'; url: string; caBundlePath?: string }
  | {
      kind: 'secret';
      secretId: string;
      /** One more PEM bundle to trust (PGHK_DB_CA_BUNDLE). */
      caBundlePath?: string;
      /** The RDS CA bundle the template ships beside the function's code. */
      shippedCaBundlePath?: string;
      tls?: 'verify' | 'disable';
    };

export interface SessionSettings {
  job: string;
  statementTimeoutMs: number;
  lockTimeoutMs: number;
}

function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return true; // a Unix socket
  return host === 'localhost' || host === '::1' || host === '[::1]' || host.startsWith('127.') || host.startsWith('/');
}

/**
 * A `ca` option replaces every root Node trusts. So extra bundles are added to what is trusted
 * anyway: Node's public roots (RDS Proxy's certificates chain to Amazon's public roots) and the
 * file in NODE_EXTRA_CA_CERTS (on Lambda, /var/runtime/ca-cert.pem: Amazon's CAs).
 */
function trustedCas(caBundlePaths: string[]): string {
  const cas = [...rootCertificates];
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      cas.push(readFileSync(extra, 'utf8'));
    } catch {
      // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS; so do we, by not adding it.
    }
  }
  for (const path of caBundlePaths) cas.push(readFileSync(path, 'utf8'));
  return cas.join('\n');
}

function tlsOptions(host: string | undefined, caBundlePaths: Array<string | undefined>, mode: 'verify' | 'disable' = 'verify') {
  if (mode === 'disable' || isLoopbackHost(host)) return false;
  const paths = caBundlePaths.filter((path): path is string => Boolean(path));
  return { rejectUnauthorized: true, ...(paths.length > 0 ? { ca: trustedCas(paths) } : {}) };
}

const TLS_VERIFY_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Node's verification errors name a code, not TLS or the server: say both, and where trust comes from. */
function explainTlsFailure(error: unknown, config: pg.ClientConfig, trusted: string[] = []): unknown {
  const code = (error as { code?: string })?.code;
  if (!config.ssl || !code || !TLS_VERIFY_CODES.has(code)) return error;
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  const server = config.host ? `${config.host}:${config.port ?? 5432}` : 'the database';
  return new ConfigError(
    'database TLS',
    `certificate verification failed for ${server} (${code}: ${errorMessage(error)}). ` +
      `Trusted: Node's public roots${extra ? ` and NODE_EXTRA_CA_CERTS (${extra})` : ' (NODE_EXTRA_CA_CERTS is not set: on Lambda set it to /var/runtime/ca-cert.pem for RDS and Aurora)'}` +
      `${trusted.length > 0 ? ` and ${trusted.join(' and ')}` : ''}; the server's certificate must chain to one of them and name the host.`,
  );
}

export function configFromUrl(url: string, job: string, caBundlePath?: string): pg.ClientConfig {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // The URL may hold a password: never repeat it.
    throw new ConfigError('database URL', 'is not a valid postgres:// URL');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new ConfigError('database URL', `must start with postgres:// (got ${parsed.protocol}//)`);
  }
  const base: pg.ClientConfig = { connectionString: url, application_name: applicationName(job) };
  // An explicit sslmode in the URL wins; otherwise verify TLS for anything that is not loopback.
  if (parsed.searchParams.has('sslmode')) return base;
  return { ...base, ssl: tlsOptions(parsed.hostname, [caBundlePath]) };
}

export function configFromSecret(secret: DatabaseSecret, job: string, source: Extract<DatabaseSource, { kind: 'secret' }>): pg.ClientConfig {
  return {
    host: secret.host,
    port: secret.port,
    user: secret.username,
    password: secret.password,
    database: secret.dbname,
    application_name: applicationName(job),
    ssl: tlsOptions(secret.host, [source.shippedCaBundlePath, source.caBundlePath], source.tls),
    connectionTimeoutMillis: 10_000,
  };
}

/** What a TLS failure names as trusted besides Node's roots and NODE_EXTRA_CA_CERTS. */
function extraTrust(source: DatabaseSource): string[] {
  return [
    ...(source.kind === 'secret' && source.shippedCaBundlePath ? [`the RDS CAs shipped with the function (${source.shippedCaBundlePath})`] : []),
    ...(source.caBundlePath ? [`${ENV.dbCaBundle} (${source.caBundlePath})`] : []),
  ];
}

async function connectWith(config: pg.ClientConfig, settings: SessionSettings, trusted: string[] = []): Promise<pg.Client> {
  const client = zoneIndependentClient(config);
  // An idle socket broken under us must surface as a query error, not crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
    // One round trip; UTC and ISO make catalog text (partition bounds) parse the same everywhere.
    await client.query(
      `SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $2, false),
              set_config('TimeZone', 'UTC', false), set_config('DateStyle', 'ISO, YMD', false)`,
      [`${settings.statementTimeoutMs}ms`, `${settings.lockTimeoutMs}ms`],
    );
    return client;
  } catch (error) {
    await client.end().catch(() => {});
    throw explainTlsFailure(error, config, trusted);
  }
}

/**
 * Opens one session for a job run. With a secret, a rejected password (the secret was rotated
 * since we cached it) triggers exactly one fresh fetch and retry.
 */
export async function openSession(source: DatabaseSource, settings: SessionSettings): Promise<pg.Client> {
  const trusted = extraTrust(source);
  if (source.kind === 'url') return connectWith(configFromUrl(source.url, settings.job, source.caBundlePath), settings, trusted);
  const secret = await getDatabaseSecret(source.secretId);
  try {
    return await connectWith(configFromSecret(secret, settings.job, source), settings, trusted);
  } catch (error) {
    if (sqlState(error) !== SQLSTATE.invalidPassword) throw error;
    const rotated = await getDatabaseSecret(source.secretId, { refresh: true });
    return connectWith(configFromSecret(rotated, settings.job, source), settings, trusted);
  }
}

/** Whether a table or view exists: `housekeeping` relations only do once migrations ran. */
export async function relationExists(client: pg.ClientBase, name: string): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [name]);
  return rows[0]?.ok === true;
}

/** Runs `work` in one transaction; rolls back on any error. */
export async function inTransaction<T>(client: pg.ClientBase, work: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await work();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** The RDS CA bundle beside a deployed function's code (LAMBDA_TASK_ROOT), if the template shipped one. */
function shippedCaBundle(env: NodeJS.ProcessEnv): string | undefined {
  const root = env.LAMBDA_TASK_ROOT;
  if (!root) return undefined;
  const path = join(root, SHIPPED_CA_BUNDLE_FILE);
  return existsSync(path) ? path : undefined;
}

/** Database source for a Lambda, from its environment. */
export function databaseSourceFromEnvironment(env: NodeJS.ProcessEnv = process.env): DatabaseSource {
  const secretId = env[ENV.dbSecretArn];
  const caBundlePath = env[ENV.dbCaBundle];
  if (secretId) {
    const tls = env[ENV.dbTls] === 'disable' ? 'disable' : 'verify';
    const shippedCaBundlePath = shippedCaBundle(env);
    return { kind: 'secret', secretId, tls, ...(caBundlePath ? { caBundlePath } : {}), ...(shippedCaBundlePath ? { shippedCaBundlePath } : {}) };
  }
  const url = env[ENV.databaseUrl];
  if (url) return { kind: 'url', url };
  throw new ConfigError(ENV.dbSecretArn, 'is not set: the function needs the ARN of the database secret');
}

// ---------------------------------------------------------------------------------------------
// Driver type handling. node-postgres reads `timestamp` and `date` as *local* time and binds a
// Date as local time with an offset, which a `timestamp` or `date` parameter then drops: a
// `timestamp` source rolled up to 30 buckets under TZ=UTC, 21 under Asia/Seoul. The Lambda runs
// in UTC, the CLI wherever its user is, so every value crossing the driver on our sessions is
// read and written as UTC instead (the session's TimeZone is UTC too). Per client, not by
// mutating the pg module, so no other code in the process changes behaviour.

const OID = { date: 1082, timestamp: 1114, timestamptz: 1184, dateArray: 1182, timestampArray: 1115 } as const;
const INFINITE = /^-?infinity$/;

/** `timestamp` text (ISO DateStyle) as the UTC instant of that wall-clock time. */
export function parseUtcTimestamp(text: string): Date | number {
  if (INFINITE.test(text)) return text.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  // The timestamptz parser with an explicit +00 offset, placed before a trailing " BC".
  return pg.types.getTypeParser(OID.timestamptz, 'text')(text.replace(/( BC)?$/, '+00$1')) as Date;
}

/** `date` text as UTC midnight of that day (what a bound Date serializes back to). */
export function parseUtcDate(text: string): Date | number {
  if (INFINITE.test(text)) return text.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  return parseUtcTimestamp(text.replace(/^(\d+-\d\d-\d\d)/, '$1 00:00:00'));
}

type ArrayParserModule = { create(source: string, transform: (entry: string) => unknown): { parse(): unknown[] } };
const parseArrayOf = (element: (text: string) => unknown) => (text: string) =>
  (pg.types.arrayParser as unknown as ArrayParserModule).create(text, element).parse();

const UTC_TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format: 'text' | 'binary' = 'text') => {
    if (format === 'text') {
      if (oid === OID.timestamp) return parseUtcTimestamp;
      if (oid === OID.date) return parseUtcDate;
      if (oid === OID.timestampArray) return parseArrayOf(parseUtcTimestamp);
      if (oid === OID.dateArray) return parseArrayOf(parseUtcDate);
    } else if (oid === OID.timestamp) {
      return pg.types.getTypeParser(OID.timestamptz, 'binary'); // same microseconds, read as UTC
    }
    return pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** A Date as ISO-8601 text in UTC (years before 1 AD in Postgres's BC form); arrays element-wise; anything else unchanged. */
export function utcParameter(value: unknown): unknown {
  if (Array.isArray(value)) {
    // Arrays of a batch's keys hold 100,000 strings: copied only when something in them changes.
    for (const element of value) if (element instanceof Date || Array.isArray(element)) return value.map(utcParameter);
    return value;
  }
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) return value;
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const year = value.getUTCFullYear();
  const bc = year < 1;
  return (
    `${pad(bc ? 1 - year : year, 4)}-${pad(value.getUTCMonth() + 1)}-${pad(value.getUTCDate())}` +
    `T${pad(value.getUTCHours())}:${pad(value.getUTCMinutes())}:${pad(value.getUTCSeconds())}.${pad(value.getUTCMilliseconds(), 3)}+00:00${bc ? ' BC' : ''}`
  );
}

function zoneIndependentClient(config: pg.ClientConfig): pg.Client {
  const client = new pg.Client({ ...config, types: UTC_TYPES });
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  // pg serializes a bound Date in the process zone, with no per-client option: map Dates first.
  client.query = ((first: unknown, values?: unknown, ...rest: unknown[]) => {
    const config = first as { values?: unknown; submit?: unknown } | null;
    if (config && typeof config === 'object' && Array.isArray(config.values)) {
      if (typeof config.submit === 'function') config.values = config.values.map(utcParameter);
      else first = { ...config, values: config.values.map(utcParameter) };
    }
    return query(first, Array.isArray(values) ? values.map(utcParameter) : values, ...rest);
  }) as typeof client.query;
  return client;
}
