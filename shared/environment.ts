/**
 * The names the functions and their template agree on. The template (infra/job-function.ts) sets
 * these variables and the functions read them; the alarms watch metrics under this service and
 * namespace. Renaming one here renames it on both sides.
 */

/** Powertools' service (every log line, the metrics' `service` dimension) and the prefix of every `application_name`. */
export const SERVICE_NAME = 'pg-housekeeper';

/** The CloudWatch namespace of every metric the jobs publish. */
export const METRICS_NAMESPACE = 'PgHousekeeper';

/** What a session calls itself in `pg_stat_activity`: `pg-housekeeper/partition`, `pg-housekeeper/status`. */
export function applicationName(job: string): string {
  return `${SERVICE_NAME}/${job}`;
}

/** The policy the template ships inside each function's bundle, beside its code: an empty event runs it. */
export const DEPLOYED_POLICY_FILE = 'policy.json';

/**
 * The RDS certificate authorities (every region's, the G1 roots included) the template ships
 * beside each function's code: the functions trust them in addition to Node's roots and
 * NODE_EXTRA_CA_CERTS, whose Lambda runtime file has been found without the newer RDS CAs.
 */
export const SHIPPED_CA_BUNDLE_FILE = 'rds-ca-bundle.pem';

/** Environment variables a deployed function reads (README, "Running in Lambda"). */
export const ENV = {
  /** The database secret's ARN (RDS JSON shape). */
  dbSecretArn: 'PGHK_DB_SECRET_ARN',
  /** The id of the fleet database the function serves: on its log lines, metric dimensions and summaries. */
  databaseId: 'PGHK_DATABASE_ID',
  /** A role every session switches to with SET ROLE. */
  dbRole: 'PGHK_DB_ROLE',
  /** One more PEM bundle to trust, added to Node's roots and NODE_EXTRA_CA_CERTS. */
  dbCaBundle: 'PGHK_DB_CA_BUNDLE',
  /** `verify` (the default for non-loopback hosts) or `disable`. */
  dbTls: 'PGHK_DB_TLS',
  /** Continuations a chain may have; 0 or unset: none. */
  maxContinuations: 'PGHK_MAX_CONTINUATIONS',
  /** Hours outside which no archive batch or rollup slice starts, `01:00-05:00 Asia/Seoul`. */
  maintenanceWindow: 'PGHK_MAINTENANCE_WINDOW',
  /** A postgres:// URL instead of a secret (the CLI, tests). */
  databaseUrl: 'DATABASE_URL',
} as const;
