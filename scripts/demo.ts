import { seedDemo as seedDemoTables } from '../functions/demo-seed/seed';
import { openSession } from '../shared/db';

/** The demo-seed Lambda's settings (functions/demo-seed/handler.ts): dropping the old demo schema may wait for locks. */
const DEMO_SEED_SESSION = { job: 'demo-seed', lockTimeoutMs: 10_000, statementTimeoutMs: 120_000 } as const;

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
