import type { JobRegistry } from '../shared/job';
import { archiveJob } from './archive/job';
import { partitionJob } from './partition/job';
import { rollupJob } from './rollup/job';

/**
 * Every job, by name: the Lambdas, the CLI, the template and the ledger's migrations take the
 * list from here. A new job is its folder (functions/<name>/, with handler.ts) and one line here.
 */
export const JOBS = {
  partition: partitionJob,
  archive: archiveJob,
  rollup: rollupJob,
} satisfies JobRegistry;

export type JobName = keyof typeof JOBS;

/** The registry's names, in its order. */
export const JOB_NAMES = Object.keys(JOBS) as JobName[];
