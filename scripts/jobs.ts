import { partitionJob } from '../functions/partition/job';
import { partitionEventSchema } from '../functions/partition/policy';

/** Jobs the CLI can run, with the event schema their Lambda validates. */
export const JOBS = {
  partition: { definition: partitionJob, eventSchema: partitionEventSchema },
} as const;

export type CliJobName = keyof typeof JOBS;
