/**
 * Local CLI: the same job code as the Lambdas, against any Postgres, or against an embedded one
 * (kept in .housekeeper-db/) when no --database-url is given.
 *
 *   housekeeper demo                                   seed demo tables and run the partition job
 *   housekeeper run partition --config FILE [--database-url URL] [--dry-run]
 *   housekeeper run partition --deployed [--database-url URL] [--dry-run]   the policy cdk deploy ships
 *   housekeeper run partition --database ID [--database-url URL] [--dry-run]   that database's, of the fleet the config file lists
 *   housekeeper status [--database-url URL]
 *   housekeeper restore --config FILE --from DAY --to DAY --into TABLE [--target SOURCE]   rows back from S3
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { JOB_NAMES, type JobName } from '../functions/registry';
import { ENV } from '../shared/environment';
import { ConfigError, HousekeeperError } from '../shared/errors';
import { humanSummary, printStatus, readConfigFile, restoreFromCli, runFromCli, USAGE, withDatabase } from './cli';
import { seedDemo } from './demo';
import { deployedPolicy } from './deployed';

const isJobName = (name: string | undefined): name is JobName => JOB_NAMES.includes(name as JobName);

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      deployed: { type: 'boolean', default: false },
      database: { type: 'string' },
      'database-url': { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      from: { type: 'string' },
      to: { type: 'string' },
      into: { type: 'string' },
      target: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  const [command, job] = positionals;
  const databaseUrl = values['database-url'] ?? process.env[ENV.databaseUrl];
  if (values.help || !command) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  if (command === 'status') {
    await withDatabase(databaseUrl, printStatus);
    return 0;
  }
  if (command === 'demo') {
    const payload = readConfigFile(resolve(import.meta.dirname, '..', 'examples', 'partition.json'));
    return withDatabase(databaseUrl, async (url) => {
      await seedDemo(url);
      const summary = await runFromCli('partition', payload, url, values['dry-run']);
      console.log(`\n${humanSummary(summary)}`);
      console.log(
        '\nRun the same policy again (a second run changes nothing): npm run housekeeper -- run partition --config examples/partition.json\nSee the ledger: npm run housekeeper -- status',
      );
      return summary.failed.length > 0 ? 1 : 0;
    });
  }
  if (command === 'restore') {
    const sources = [values.config !== undefined, values.deployed, values.database !== undefined].filter(Boolean).length;
    if (sources !== 1) {
      throw new ConfigError(
        '--config',
        'restore needs exactly one of --config FILE (an archive policy), --deployed or --database ID: the policy whose S3 destination holds the rows',
      );
    }
    if (!values.from || !values.to || !values.into)
      throw new ConfigError('restore', 'needs --from YYYY-MM-DD, --to YYYY-MM-DD and --into schema.table');
    const payload = values.config ? readConfigFile(values.config) : await deployedPolicy('archive', values.database);
    const restore = { from: values.from, to: values.to, into: values.into, ...(values.target ? { target: values.target } : {}) };
    return withDatabase(databaseUrl, async (url) => {
      const summary = await restoreFromCli(payload, url, restore);
      console.log(
        `restored ${summary.rowsInserted} row(s) of ${summary.objects} object(s) of ${summary.source} into ${summary.into} (${summary.rowsAlreadyPresent} already there)`,
      );
      return 0;
    });
  }
  if (command === 'run') {
    if (!isJobName(job)) throw new ConfigError('job', `expected one of ${JOB_NAMES.join(', ')} (got ${job ?? 'nothing'})`);
    if (values.config && values.deployed) throw new ConfigError('--deployed', 'runs the policy in infra/housekeeping.config.ts; leave out --config');
    if (values.config && values.database !== undefined) {
      throw new ConfigError('--database', "runs that database's policy from infra/housekeeping.config.ts; leave out --config");
    }
    const database = values.database;
    if (!values.config && !values.deployed && database === undefined) {
      throw new ConfigError(
        '--config',
        'is required (a JSON policy, as an ad-hoc Lambda event), or --deployed for the policy infra/housekeeping.config.ts deploys, or --database ID for one database of its fleet',
      );
    }
    const payload = values.config ? readConfigFile(values.config) : await deployedPolicy(job, database);
    return withDatabase(databaseUrl, async (url) => {
      const summary = await runFromCli(job, payload, url, values['dry-run'], database);
      console.log(`\n${humanSummary(summary)}`);
      return summary.failed.length > 0 ? 1 : 0;
    });
  }
  throw new ConfigError('command', `unknown command ${JSON.stringify(command)}\n${USAGE}`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error instanceof HousekeeperError ? `${error.name}: ${error.message}` : error);
    process.exit(error instanceof ConfigError ? 2 : 1);
  },
);
