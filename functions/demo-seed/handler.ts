import { databaseSourceFromEnvironment, openSession } from '../../shared/db';
import { createJobLogger } from '../../shared/logger';
import { DEMO_SEED_SESSION, seedDemo } from './seed';

const logger = createJobLogger('demo-seed');

/** Runs once after a sandbox deploy (-c demo=true): creates the demo tables the three jobs maintain. */
export const handler = async (): Promise<{ seeded: true }> => {
  const client = await openSession(databaseSourceFromEnvironment(), DEMO_SEED_SESSION);
  try {
    await seedDemo(client);
    logger.info('demo tables created');
    return { seeded: true };
  } finally {
    await client.end();
  }
};
