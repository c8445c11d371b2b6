import { databaseSourceFromEnvironment, openSession } from '../../shared/db';
import { createJobLogger } from '../../shared/logger';
import { seedDemo } from './seed';

const logger = createJobLogger('demo-seed');

/** Runs once after a sandbox deploy (-c demo=true): creates the demo tables the three jobs maintain. */
export const handler = async (): Promise<{ seeded: true }> => {
  const client = await openSession(databaseSourceFromEnvironment(), { job: 'demo-seed', lockTimeoutMs: 10_000, statementTimeoutMs: 120_000 });
  try {
    await seedDemo(client);
    logger.info('demo tables created');
    return { seeded: true };
  } finally {
    await client.end();
  }
};
