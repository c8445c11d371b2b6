import { archiveJob } from '../functions/archive/job';
import { archiveEventSchema } from '../functions/archive/policy';
import { partitionJob } from '../functions/partition/job';
import { rollupJob } from '../functions/rollup/job';
import { rollupEventSchema } from '../functions/rollup/policy';
import { partitionEventSchema } from '../functions/partition/policy';

/** Jobs the CLI can run, with the event schema their Lambda validates. */
export const JOBS = {
  partition: { definition: partitionJob, eventSchema: partitionEventSchema },
  archive: { definition: archiveJob, eventSchema: archiveEventSchema },
  rollup: { definition: rollupJob, eventSchema: rollupEventSchema },
} as const;

export type CliJobName = keyof typeof JOBS;
