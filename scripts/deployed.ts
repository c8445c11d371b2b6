import type { JobName } from '../functions/registry';
import { ConfigError } from '../shared/errors';

/**
 * The policy `cdk deploy` ships for a job (infra/housekeeping.config.ts), exactly as it reaches
 * the function's policy.json: through JSON, so the CLI runs the same targets and options a
 * "run now" of the deployed function does. Loaded only for --deployed: the config file pulls in
 * aws-cdk-lib, which no other command needs.
 */
export async function deployedPolicy(job: JobName): Promise<unknown> {
  const { housekeeping } = await import('../infra/housekeeping.config');
  const scheduled = housekeeping[job];
  if (!scheduled) throw new ConfigError('--deployed', `infra/housekeeping.config.ts deploys no ${job} job`);
  return JSON.parse(JSON.stringify(scheduled.policy)) as unknown;
}
