import { existsSync, readFileSync } from 'node:fs';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { describe, expect, it } from 'vitest';
import { JOB_NAMES, JOBS } from '../../functions/registry';
import { PgHousekeeping } from '../../infra/pg-housekeeping';
import { USAGE } from '../../scripts/cli';
import type { Job } from '../../shared/job';
import { ledgerMigrations } from '../../shared/migrate';
import { CDK_CONTEXT, ENV } from './synth';

/**
 * functions/registry.ts is the one list of jobs: a new job is its folder and one line there. The
 * template, the CLI and the ledger must take every job from it, and nothing else.
 */
const file = (path: string) => new URL(`../../${path}`, import.meta.url);
const example = (job: string) => JSON.parse(readFileSync(file(`examples/${job}.json`), 'utf8')) as unknown;

describe('one registry of jobs', () => {
  it('names each job for its folder, which holds its Lambda entry, beside an example policy', () => {
    for (const name of JOB_NAMES) {
      expect(JOBS[name].job).toBe(name);
      expect(existsSync(file(`functions/${name}/handler.ts`)), `functions/${name}/handler.ts`).toBe(true);
      expect(readFileSync(file(`functions/${name}/handler.ts`), 'utf8')).toContain(`lambdaHandler(JOBS, '${name}')`);
      expect(existsSync(file(`examples/${name}.json`)), `examples/${name}.json`).toBe(true);
    }
  });

  it('the template deploys exactly the registry’s jobs', () => {
    // Bundling skipped: which functions exist is the question, not their code.
    const app = new App({ context: { ...CDK_CONTEXT, 'aws:cdk:bundling-stacks': [] } });
    const stack = new Stack(app, 'Registry', { env: ENV });
    const databaseSecret = Secret.fromSecretCompleteArn(stack, 'Secret', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf');
    const jobs = Object.fromEntries(JOB_NAMES.map((name) => [name, { schedule: { rate: Duration.hours(1) }, policy: example(name) }]));
    const housekeeping = new PgHousekeeping(stack, 'Housekeeping', { databaseSecret, ...jobs });
    expect(Object.keys(housekeeping.jobs)).toEqual(JOB_NAMES);
    expect(Object.keys(housekeeping.schedules)).toEqual(JOB_NAMES);
  });

  it('the CLI runs exactly the registry’s jobs', () => {
    expect(USAGE).toContain(`housekeeper run <${JOB_NAMES.join('|')}> --config`);
  });

  it('the ledger takes every job’s migrations, in one sequence of numbers used once each', () => {
    const versions = ledgerMigrations(JOBS).map((m) => m.version);
    expect(versions).toEqual([...new Set(versions)].sort((a, b) => a - b));
    for (const job of Object.values(JOBS) as Job[]) {
      for (const owned of job.migrations ?? []) expect(versions).toContain(owned.version);
    }
    // Databases have run these numbers under these names: moving where the SQL lives changed neither.
    expect(ledgerMigrations(JOBS).map((m) => `${m.version} ${m.name}`)).toEqual([
      '1 ledger',
      '2 settings',
      '3 rollup_state',
      '4 partition_retirements',
      '5 chains',
      '6 archive_objects',
      '7 archive_checksum_kind',
    ]);
  });
});
