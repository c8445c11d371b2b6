import { archiveJob } from '../functions/archive/job';
import { archiveEventSchema } from '../functions/archive/policy';
import { partitionJob } from '../functions/partition/job';
import { partitionEventSchema } from '../functions/partition/policy';

/** Jobs the CLI can run, with the event schema their Lambda validates. */
export const JOBS = {
  partition: { definition: partitionJob, eventSchema: partitionEventSchema },
  archive: { definition: archiveJob, eventSchema: archiveEventSchema },
} as const;

export type CliJobName = keyof typeof JOBS;
