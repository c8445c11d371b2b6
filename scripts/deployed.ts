import type { JobName } from '../functions/registry';
import { ConfigError } from '../shared/errors';

/**
 * The policy `cdk deploy` ships for a job (infra/housekeeping.config.ts), exactly as it reaches
 * the function's policy.json: through JSON, so the CLI runs the same targets and options a
 * "run now" of the deployed function does. With `database`, that database's entry of the fleet
 * (`--database ID`); without, the jobs a one-database deploy (`-c secretArn=…`) runs. Loaded only
 * for --deployed and --database: the config file pulls in aws-cdk-lib, which no other command needs.
 */
export async function deployedPolicy(job: JobName, database?: string): Promise<unknown> {
  const { housekeeping, databases } = await import('../infra/housekeeping.config');
  const { checkDatabases } = await import('../infra/fleet');
  // The file as `cdk synth` reads it: a bad entry fails here too, named the same way.
  checkDatabases(databases);
  let jobs = housekeeping;
  if (database !== undefined) {
    const entry = databases.find((candidate) => candidate.id === database);
    if (!entry)
      throw new ConfigError(
        '--database',
        `infra/housekeeping.config.ts lists no database "${database}" (it lists ${databases.map((d) => d.id).join(', ') || 'none'})`,
      );
    jobs = entry.jobs;
  } else {
    const listed = databases.filter((entry) => !entry.sandbox).map((entry) => entry.id);
    if (listed.length > 0)
      throw new ConfigError('--deployed', `infra/housekeeping.config.ts lists databases (${listed.join(', ')}): name one with --database ID`);
  }
  const scheduled = jobs[job];
  if (!scheduled)
    throw new ConfigError(
      database !== undefined ? '--database' : '--deployed',
      `infra/housekeeping.config.ts deploys no ${job} job${database !== undefined ? ` for database ${database}` : ''}`,
    );
  return JSON.parse(JSON.stringify(scheduled.policy)) as unknown;
}
