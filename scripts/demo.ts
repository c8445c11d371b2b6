import { DEMO_SEED_SESSION, seedDemo as seedDemoTables } from '../functions/demo-seed/seed';
import { openSession } from '../shared/db';

/** Recreates the demo schema in the database at `url` (see functions/demo-seed/seed.ts). */
export async function seedDemo(url: string): Promise<void> {
  // Opened like a job's session (TLS for non-loopback hosts, application_name, timeouts).
  const client = await openSession({ kind: 'url', url }, DEMO_SEED_SESSION);
  try {
    await seedDemoTables(client);
  } finally {
    await client.end();
  }
}
